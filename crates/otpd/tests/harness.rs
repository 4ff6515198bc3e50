//! Self-checks of the end-to-end harness (code extraction, byte search, ready line).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::*;

#[test]
fn extracts_the_code_not_the_minutes() {
    let body = "Your default verification code is 042917. It expires in 10 minutes. \
                Don't share it with anyone.";
    assert_eq!(extract_code(body).as_deref(), Some("042917"));
    assert_eq!(extract_code("It expires in 10 minutes"), None);
}

#[test]
fn wrong_code_differs_everywhere() {
    assert_eq!(wrong_code("019"), "120");
}

#[test]
fn delimited_digit_search() {
    assert!(contains_delimited_digits(b"x123456y", "123456"));
    assert!(contains_delimited_digits(b"123456", "123456"));
    assert!(!contains_delimited_digits(b"x1234567", "123456"));
    assert!(!contains_delimited_digits(b"01234567", "123456"));
}

#[test]
fn parses_the_ready_line() {
    assert_eq!(
        parse_ready_line("stdout| otpd listening on http://127.0.0.1:4242").as_deref(),
        Some("http://127.0.0.1:4242")
    );
    assert_eq!(
        parse_ready_line("stderr| otpd listening on http://127.0.0.1:1"),
        None
    );
    assert_eq!(strip_ansi("\u{1b}[32mok\u{1b}[0m"), "ok");
}
