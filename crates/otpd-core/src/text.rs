//! Caller-given text that reaches a message, a mail header or a log line (service names,
//! email subjects, key names, message templates): one rule for all of them. Control
//! characters (C0, DEL, C1) and the Unicode line and paragraph separators are refused, so
//! no such text can split a header, forge a log line or a console message (security
//! review, finding 9). Template bodies may break lines with `\n` and nothing else.

use crate::DomainError;

/// Whether `c` may not appear in a one-line text.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Checks a one-line text: 1 to `max_chars` characters, none of them a control character
/// or a line separator. `field` names it in the error.
pub fn one_line(field: &str, value: &str, max_chars: usize) -> Result<(), DomainError> {
    let n = value.chars().count();
    if (1..=max_chars).contains(&n) && !value.chars().any(breaks_a_line) {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest(format!(
            "{field} must be 1-{max_chars} characters without control characters"
        )))
    }
}

/// Checks a multi-line text (a message template body): no control character but `\n`.
pub fn multi_line(field: &str, value: &str) -> Result<(), DomainError> {
    if value.chars().any(|c| c != '\n' && breaks_a_line(c)) {
        Err(DomainError::InvalidRequest(format!(
            "{field} must not contain control characters (lines break with \\n)"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_texts_refuse_every_control_character() {
        assert!(one_line("name", "Acme Bank", 64).is_ok());
        assert!(one_line("name", "Überbank ✓", 64).is_ok());
        for bad in [
            "a\r\nBcc: x@y",
            "a\nb",
            "a\tb",
            "\u{7f}",
            "\u{85}",
            "a\u{2028}b",
            "\u{1b}[31m",
            "",
        ] {
            assert!(one_line("name", bad, 64).is_err(), "{bad:?}");
        }
        assert!(one_line("name", &"x".repeat(65), 64).is_err());
    }

    #[test]
    fn templates_break_lines_with_newline_only() {
        assert!(multi_line("template", "Code {code}\n\n@example.com #{code}").is_ok());
        assert!(multi_line("template", "Code {code}\r\n").is_err());
        assert!(multi_line("template", "Code {code}\u{1b}[2J").is_err());
    }
}
