//! Message template rendering with arbitrary templates, service names, codes and locales:
//! never panics, keeps text without placeholders as it is, and never expands a
//! placeholder that came from inserted text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_core::template::{MessageContext, built_in, language_of, render};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\u{1}');
    let template = parts.next().unwrap_or_default();
    let service = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or("123456");
    let locale = parts.next().unwrap_or("en");
    let extra = parts.next();
    let _ = language_of(locale);
    let _ = built_in(locale);
    let ctx = MessageContext {
        code,
        service,
        minutes: template.len() as u64,
        app_hash: extra.filter(|e| e.len() % 2 == 0),
        webotp_domain: extra.filter(|e| e.len() % 2 == 1),
    };
    let out = render(template, &ctx);
    if !template.contains('{') && extra.is_none() {
        assert_eq!(out.as_str(), template);
    }
    if template == "{service}" && extra.is_none() {
        assert_eq!(out.as_str(), service, "inserted text is not expanded again");
    }
    if template.contains("{code}") {
        assert!(out.contains(code));
    }
});
