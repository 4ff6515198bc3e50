//! SMS text encoding: whether a message fits the GSM 03.38 7-bit alphabet or needs UCS-2,
//! and how many segments (billed parts) it takes.
//!
//! GSM-7 carries 160 septets in one message, or 153 per segment once a concatenation
//! header (UDH) is needed; characters of the extension table (`€ [ ] { } \ ^ ~ |` and form
//! feed) take two septets (an escape and the character). Anything else forces UCS-2: 70
//! UTF-16 units in one message, 67 per segment. Providers bill per segment, and the SMPP
//! adapter splits by these same rules.

/// Single-message and per-segment capacity of GSM-7 (septets).
pub const GSM7_SINGLE: usize = 160;
/// Per-segment capacity of GSM-7 once concatenated (a 6-byte UDH takes 7 septets).
pub const GSM7_SEGMENT: usize = 153;
/// Single-message capacity of UCS-2 (UTF-16 units).
pub const UCS2_SINGLE: usize = 70;
/// Per-segment capacity of UCS-2 once concatenated.
pub const UCS2_SEGMENT: usize = 67;

/// The GSM 03.38 basic character set, in code order (0x00–0x7F; 0x1B is the escape).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters of the GSM 03.38 extension table (each sent as escape + character).
const GSM7_EXTENSION: &str = "\u{0c}^{}\\[~]|€";

/// How a text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38 7-bit default alphabet (SMPP `data_coding` 0).
    Gsm7,
    /// UCS-2 / UTF-16BE (SMPP `data_coding` 8).
    Ucs2,
}

/// An SMS text's encoding and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmsInfo {
    /// The encoding it needs.
    pub encoding: Encoding,
    /// Its length in septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// Segments it takes.
    pub segments: usize,
}

/// Septets of one character in GSM-7, or `None` if GSM-7 cannot carry it.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c != '\u{1b}' && GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// `text` in the GSM 03.38 default alphabet, one septet per octet (SMPP `data_coding` 0
/// carries septets unpacked): a basic character is its code, an extension character the
/// escape 0x1B followed by its code. `None` when a character has no GSM-7 form.
pub fn gsm7_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{1b}' {
            return None;
        }
        if let Some(code) = GSM7_BASIC.chars().position(|b| b == c) {
            out.push(code as u8);
        } else {
            let code = GSM7_EXTENSION_CODES.iter().find(|(e, _)| *e == c)?.1;
            out.extend([0x1b, code]);
        }
    }
    Some(out)
}

/// The text of GSM-7 septets, one per octet (the inverse of [`gsm7_encode`]); `None` for a
/// code outside the tables.
pub fn gsm7_decode(septets: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(septets.len());
    let mut bytes = septets.iter();
    while let Some(&b) = bytes.next() {
        if b == 0x1b {
            let code = *bytes.next()?;
            out.push(GSM7_EXTENSION_CODES.iter().find(|(_, c)| *c == code)?.0);
        } else {
            out.push(GSM7_BASIC.chars().nth(usize::from(b))?);
        }
    }
    Some(out)
}

/// The extension table's characters with their codes (after the 0x1B escape).
const GSM7_EXTENSION_CODES: [(char, u8); 10] = [
    ('\u{0c}', 0x0a),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2f),
    ('[', 0x3c),
    ('~', 0x3d),
    (']', 0x3e),
    ('|', 0x40),
    ('€', 0x65),
];

/// The encoding and segment count of `text`.
pub fn analyze(text: &str) -> SmsInfo {
    let septets: Option<usize> = text.chars().map(gsm7_septets).sum();
    let (encoding, units, single, per_segment) = match septets {
        Some(n) => (Encoding::Gsm7, n, GSM7_SINGLE, GSM7_SEGMENT),
        None => (
            Encoding::Ucs2,
            text.encode_utf16().count(),
            UCS2_SINGLE,
            UCS2_SEGMENT,
        ),
    };
    let segments = if units <= single {
        1
    } else {
        units.div_ceil(per_segment)
    };
    SmsInfo {
        encoding,
        units,
        segments,
    }
}

/// Splits `text` into segment texts by the rules of [`analyze`], never cutting an
/// escape pair (GSM-7) or a surrogate pair (UCS-2) in two.
pub fn split(text: &str) -> Vec<String> {
    let info = analyze(text);
    if info.segments <= 1 {
        return vec![text.to_string()];
    }
    let (limit, cost): (usize, fn(char) -> usize) = match info.encoding {
        Encoding::Gsm7 => (GSM7_SEGMENT, |c| gsm7_septets(c).unwrap_or(1)),
        Encoding::Ucs2 => (UCS2_SEGMENT, char::len_utf16),
    };
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for c in text.chars() {
        let n = cost(c);
        if used + n > limit {
            parts.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += n;
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_gsm7_in_one_segment_up_to_160() {
        let info = analyze("Your Acme verification code is 123456.");
        assert_eq!(info.encoding, Encoding::Gsm7);
        assert_eq!(info.segments, 1);
        assert_eq!(analyze(&"a".repeat(160)).segments, 1);
        assert_eq!(analyze(&"a".repeat(161)).segments, 2);
        assert_eq!(analyze(&"a".repeat(306)).segments, 2);
        assert_eq!(analyze(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn accented_latin_of_the_gsm_table_stays_gsm7() {
        let fr = "Votre code est 123456. Il expire dans 10 minutes. Ne le partagez avec personne. é è à ù ñ Ä ß";
        assert_eq!(analyze(fr).encoding, Encoding::Gsm7);
    }

    #[test]
    fn extension_characters_count_twice() {
        let info = analyze("€[]");
        assert_eq!(info.encoding, Encoding::Gsm7);
        assert_eq!(info.units, 6);
        assert_eq!(analyze(&"€".repeat(80)).segments, 1);
        assert_eq!(analyze(&"€".repeat(81)).segments, 2);
    }

    #[test]
    fn other_scripts_need_ucs2_with_70_and_67() {
        for text in ["رمز التحقق 123456", "आपका कोड 123456", "código ç"] {
            // ç (lower case) is not in the GSM table; Ç is.
            assert_eq!(analyze(text).encoding, Encoding::Ucs2, "{text}");
        }
        assert_eq!(analyze(&"ب".repeat(70)).segments, 1);
        assert_eq!(analyze(&"ب".repeat(71)).segments, 2);
        assert_eq!(analyze(&"ب".repeat(134)).segments, 2);
        assert_eq!(analyze(&"ب".repeat(135)).segments, 3);
        // An emoji is a surrogate pair: two units.
        assert_eq!(analyze("😀").units, 2);
    }

    #[test]
    fn gsm7_encoding_uses_the_table_codes_and_escapes() {
        assert_eq!(
            gsm7_encode("@A a0").unwrap(),
            vec![0x00, 0x41, 0x20, 0x61, 0x30]
        );
        assert_eq!(gsm7_encode("£ü").unwrap(), vec![0x01, 0x7e]);
        assert_eq!(gsm7_encode("€[").unwrap(), vec![0x1b, 0x65, 0x1b, 0x3c]);
        assert_eq!(gsm7_encode("\n\r").unwrap(), vec![0x0a, 0x0d]);
        assert_eq!(gsm7_encode("ç"), None);
        assert_eq!(gsm7_encode("\u{1b}"), None);
        // Every GSM-7 text encodes to as many octets as it has septets.
        for text in ["Your code is 123456", "{€}", "Ärger ÆØÅ ¿¡ §"] {
            assert_eq!(
                gsm7_encode(text).unwrap().len(),
                analyze(text).units,
                "{text}"
            );
        }
        for c in GSM7_EXTENSION.chars() {
            assert!(gsm7_encode(&c.to_string()).is_some(), "{c:?}");
        }
        let all: String = GSM7_BASIC
            .chars()
            .filter(|c| *c != '\u{1b}')
            .chain(GSM7_EXTENSION.chars())
            .collect();
        assert_eq!(gsm7_decode(&gsm7_encode(&all).unwrap()).unwrap(), all);
        assert_eq!(gsm7_decode(&[0x80]), None);
        assert_eq!(gsm7_decode(&[0x1b]), None);
    }

    #[test]
    fn split_respects_segment_sizes_and_pairs() {
        let text = "ب".repeat(150);
        let parts = split(&text);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), text);
        assert!(
            parts
                .iter()
                .all(|p| p.encode_utf16().count() <= UCS2_SEGMENT)
        );
        let euros = format!("{}€", "a".repeat(152));
        let parts = split(&format!("{euros}{}", "b".repeat(10)));
        assert_eq!(parts[0], "a".repeat(152), "the escape pair is not cut");
        let emoji = format!("{}😀", "ب".repeat(66));
        let parts = split(&format!("{emoji}{}", "ب".repeat(10)));
        assert_eq!(parts[0], "ب".repeat(66));
        assert_eq!(split("short"), vec!["short".to_string()]);
    }
}
