//! Small utilities (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the data that
/// explains the panic).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Returns `n_bytes` random bytes from the OS, hex-encoded (`2 * n_bytes` characters).
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read random bytes from /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts the OTP code from a message body.
///
/// The default template is "Your {service} verification code is {code}. It expires in
/// {minutes} minutes. …", so the body holds other digit runs too (the minutes); the code is
/// the run of 4–10 digits right after `code is `. Voice scripts read the code digit by
/// digit (`code is: 4, 8, 1, 5, 1, 6.`): the digits are gathered across `, `.
pub fn extract_code(body: &str) -> Option<String> {
    let start = body.find("code is")? + "code is".len();
    let rest = body[start..].trim_start_matches([':', ' ']);
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == ' ')
        .filter(char::is_ascii_digit)
        .collect();
    (4..=10).contains(&digits.len()).then_some(digits)
}

/// A code of the same length as `code` that differs from it in every digit.
pub fn wrong_code(code: &str) -> String {
    code.chars()
        .map(|c| {
            let d = c.to_digit(10).expect("codes are made of digits");
            char::from_digit((d + 1) % 10, 10).expect("a digit")
        })
        .collect()
}

/// Removes ANSI escape sequences (colours) from a line of process output.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether `needle` occurs in `haystack` as a run of ASCII digits delimited on both sides by
/// a non-digit byte or the start/end of the data (the byte-level equivalent of the regex
/// `(?-u:[^0-9])NEEDLE(?-u:[^0-9])`, slightly stricter at the edges).
pub fn contains_delimited_digits(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() || haystack.len() < needle.len() {
        return false;
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .any(|(i, window)| {
            window == needle
                && (i == 0 || !haystack[i - 1].is_ascii_digit())
                && haystack
                    .get(i + needle.len())
                    .is_none_or(|b| !b.is_ascii_digit())
        })
}

/// Whether `needle` occurs anywhere in `haystack`, byte for byte.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
