//! From a rendered SMS text to `submit_sm` payloads: the data coding (GSM 03.38 default
//! alphabet 0x00 when every character fits, UCS-2 0x08 otherwise, as decided by
//! [`crate::sms`]) and, for a text too long for one message, concatenated segments each
//! starting with a user data header (`esm_class` 0x40, UDH `05 00 03 ref total seq`: the
//! 8-bit-reference concatenation element of 3GPP TS 23.040 §9.2.3.24.1).
//!
//! GSM-7 goes as unpacked septets, one per octet (SMPP `data_coding` 0): 160 in one
//! message, 153 per segment (the 6-octet UDH takes 7 septets on the air). UCS-2 goes as
//! UTF-16BE: 70 units in one message, 67 per segment. Segments never cut an escape pair
//! or a surrogate pair.

use super::settings::TextCoding;
use crate::sms::{self, Encoding};

/// `data_coding` of the GSM 03.38 default alphabet.
pub const DATA_CODING_GSM7: u8 = 0x00;
/// `data_coding` of IA5 (ASCII).
pub const DATA_CODING_IA5: u8 = 0x01;
/// `data_coding` of Latin-1 (ISO-8859-1).
pub const DATA_CODING_LATIN1: u8 = 0x03;
/// `data_coding` of UCS-2.
pub const DATA_CODING_UCS2: u8 = 0x08;
/// `esm_class` with the UDH indicator set (store-and-forward mode, default type).
pub const ESM_CLASS_UDHI: u8 = 0x40;
/// Most segments one concatenated message can have (the header counts in one octet).
pub const MAX_SEGMENTS: usize = 255;

/// One `submit_sm` of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class` (0x40 when the payload starts with a UDH).
    pub esm_class: u8,
    /// `short_message`: the UDH, if any, then the encoded text.
    pub short_message: Vec<u8>,
}

/// Why a text cannot be sent as SMS.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Nothing to send.
    #[error("the message is empty")]
    Empty,
    /// More segments than a concatenation header can number.
    #[error("the message needs {0} segments; at most 255 can be concatenated")]
    TooLong(usize),
}

/// The `submit_sm` payloads of `text` with GSM-compatible text as `coding` asks: as
/// [`segments`] for `gsm7`; for `ia5` (1) or `latin1` (3), a text whose every character
/// has that charset's one-octet form goes as those octets (split as GSM-7 is: the SMSC
/// sends it as GSM-7 on the air), any other as [`segments`] makes it.
pub fn segments_coded(
    text: &str,
    reference: u8,
    coding: TextCoding,
) -> Result<Vec<Segment>, SegmentError> {
    let mut segs = segments(text, reference)?;
    let (dcs, fits): (u8, fn(char) -> bool) = match coding {
        TextCoding::Gsm7 => return Ok(segs),
        TextCoding::Ia5 => (DATA_CODING_IA5, |c| c.is_ascii()),
        TextCoding::Latin1 => (DATA_CODING_LATIN1, |c| u32::from(c) <= 0xFF),
    };
    if segs[0].data_coding != DATA_CODING_GSM7 || !text.chars().all(fits) {
        return Ok(segs);
    }
    for (seg, part) in segs.iter_mut().zip(sms::split(text)) {
        let udh = if seg.esm_class & ESM_CLASS_UDHI != 0 {
            usize::from(seg.short_message[0]) + 1
        } else {
            0
        };
        seg.short_message.truncate(udh);
        // Every character is at most U+00FF: one octet each.
        seg.short_message.extend(
            part.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
        seg.data_coding = dcs;
    }
    Ok(segs)
}

/// The `submit_sm` payloads of `text`; `reference` numbers the concatenated message (it
/// should differ between messages in flight to the same recipient).
pub fn segments(text: &str, reference: u8) -> Result<Vec<Segment>, SegmentError> {
    if text.is_empty() {
        return Err(SegmentError::Empty);
    }
    let encoding = sms::analyze(text).encoding;
    let parts = sms::split(text);
    if parts.len() > MAX_SEGMENTS {
        return Err(SegmentError::TooLong(parts.len()));
    }
    let data_coding = match encoding {
        Encoding::Gsm7 => DATA_CODING_GSM7,
        Encoding::Ucs2 => DATA_CODING_UCS2,
    };
    let total = parts.len() as u8;
    Ok(parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let body = encode(part, encoding);
            if total == 1 {
                return Segment {
                    data_coding,
                    esm_class: 0,
                    short_message: body,
                };
            }
            let mut short_message = vec![0x05, 0x00, 0x03, reference, total, i as u8 + 1];
            short_message.extend(body);
            Segment {
                data_coding,
                esm_class: ESM_CLASS_UDHI,
                short_message,
            }
        })
        .collect())
}

/// A part's octets in the chosen encoding.
fn encode(part: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        // `analyze` chose GSM-7 because every character has a GSM-7 form.
        Encoding::Gsm7 => sms::gsm7_encode(part).unwrap_or_default(),
        Encoding::Ucs2 => part.encode_utf16().flat_map(u16::to_be_bytes).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reassembles segments the way a handset does: order by the UDH sequence number,
    /// strip the headers, decode.
    fn reassemble(segments: &[Segment]) -> String {
        let mut parts: Vec<(u8, &[u8])> = segments
            .iter()
            .map(|s| {
                if s.esm_class & ESM_CLASS_UDHI == 0 {
                    return (1, &s.short_message[..]);
                }
                let udh_len = usize::from(s.short_message[0]) + 1;
                (s.short_message[5], &s.short_message[udh_len..])
            })
            .collect();
        parts.sort_by_key(|(seq, _)| *seq);
        parts
            .iter()
            .map(|(_, body)| match segments[0].data_coding {
                DATA_CODING_GSM7 => sms::gsm7_decode(body).unwrap(),
                _ => {
                    let units: Vec<u16> = body
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16(&units).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn a_short_gsm7_text_is_one_plain_segment() {
        let text = "Your Acme code is 482915. It expires in 10 minutes.";
        let s = segments(text, 7).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].data_coding, DATA_CODING_GSM7);
        assert_eq!(s[0].esm_class, 0);
        assert_eq!(
            s[0].short_message,
            text.as_bytes(),
            "ASCII letters keep their codes"
        );
        assert_eq!(segments(&"a".repeat(160), 1).unwrap().len(), 1);
    }

    #[test]
    fn a_long_gsm7_text_is_153_septet_segments_with_a_udh() {
        let text = format!("{}{}", "x".repeat(200), "€".repeat(60)); // 320 septets
        let s = segments(&text, 0x2a).unwrap();
        assert_eq!(s.len(), 3);
        for (i, seg) in s.iter().enumerate() {
            assert_eq!(seg.esm_class, ESM_CLASS_UDHI);
            assert_eq!(seg.data_coding, DATA_CODING_GSM7);
            assert_eq!(&seg.short_message[..6], &[5, 0, 3, 0x2a, 3, i as u8 + 1]);
            assert!(seg.short_message.len() - 6 <= 153);
            // No segment ends on a lone escape.
            assert_ne!(seg.short_message.last(), Some(&0x1b));
        }
        assert_eq!(s[0].short_message.len(), 6 + 153);
        assert_eq!(reassemble(&s), text);
    }

    #[test]
    fn other_scripts_are_ucs2_in_67_unit_segments() {
        let arabic = "رمز التحقق الخاص بك هو 482915. ".repeat(5);
        let s = segments(&arabic, 200).unwrap();
        assert_eq!(sms::analyze(&arabic).segments, s.len());
        assert_eq!(s.len(), 3);
        for seg in &s {
            assert_eq!(seg.data_coding, DATA_CODING_UCS2);
            assert!(seg.short_message.len() <= 6 + 134);
            assert_eq!(seg.short_message[3], 200);
        }
        assert_eq!(reassemble(&s), arabic);
        let one = segments("رمز 482915", 1).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].esm_class, 0);
        assert_eq!(&one[0].short_message[..2], &[0x06, 0x31], "UTF-16BE of ر");
    }

    #[test]
    fn emoji_surrogate_pairs_stay_whole() {
        let text = format!("{}😀{}", "ب".repeat(66), "ب".repeat(10));
        let s = segments(&text, 9).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].short_message.len(),
            6 + 66 * 2,
            "the pair moved to segment 2"
        );
        assert_eq!(reassemble(&s), text);
    }

    #[test]
    fn empty_and_oversized_texts_are_refused() {
        assert_eq!(segments("", 0), Err(SegmentError::Empty));
        let huge = "a".repeat(153 * 256);
        assert_eq!(segments(&huge, 0), Err(SegmentError::TooLong(256)));
        assert_eq!(segments(&"a".repeat(153 * 255), 0).unwrap().len(), 255);
    }

    // SMPP 3.4 §5.2.19 data_coding: 0 SMSC default alphabet, 1 IA5 (CCITT T.50)/ASCII,
    // 3 Latin 1 (ISO-8859-1), 8 UCS2.
    #[test]
    fn data_coding_follows_the_chosen_charset() {
        let text = "Votre code est 481516. é à";
        let gsm = segments_coded(text, 1, TextCoding::Gsm7).unwrap();
        assert_eq!(gsm, segments(text, 1).unwrap());
        let latin = segments_coded(text, 1, TextCoding::Latin1).unwrap();
        assert_eq!(latin[0].data_coding, DATA_CODING_LATIN1);
        assert_eq!(
            latin[0].short_message,
            text.chars().map(|c| c as u8).collect::<Vec<_>>()
        );
        // é is not ASCII: IA5 cannot carry it, GSM 03.38 can.
        let ia5 = segments_coded(text, 1, TextCoding::Ia5).unwrap();
        assert_eq!(ia5[0].data_coding, DATA_CODING_GSM7);
        let ascii = segments_coded("Your code is 481516.", 1, TextCoding::Ia5).unwrap();
        assert_eq!(ascii[0].data_coding, DATA_CODING_IA5);
        assert_eq!(ascii[0].short_message, b"Your code is 481516.");
        // € is GSM (escaped) but not Latin-1; Arabic is UCS-2 whatever the choice.
        assert_eq!(
            segments_coded("481516 €", 1, TextCoding::Latin1).unwrap()[0].data_coding,
            DATA_CODING_GSM7
        );
        assert_eq!(
            segments_coded("رمز 481516", 1, TextCoding::Latin1).unwrap()[0].data_coding,
            DATA_CODING_UCS2
        );
        // Long Latin-1 text keeps its concatenation headers.
        let long = "é".repeat(200);
        let parts = segments_coded(&long, 7, TextCoding::Latin1).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[1].short_message[..6], &[0x05, 0x00, 0x03, 7, 2, 2]);
        assert_eq!(
            parts[0].short_message.len() - 6 + parts[1].short_message.len() - 6,
            200
        );
    }
}
