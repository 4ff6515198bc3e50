//! JSON decoding of `POST /v1/verifications/check` bodies into the server's own request
//! type, then the code and recipient parsing the handler does next: never panics, and an
//! accepted code is 4 to 10 ASCII digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_core::code::OtpCode;
use otpd_core::recipient::{EmailAddress, PhoneNumber};
use otpd_server::api::verifications::{CheckBody, normalize_id};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<CheckBody>(data) else {
        return;
    };
    if let Ok(code) = OtpCode::parse(&body.code) {
        let c = code.expose();
        assert!((4..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Some(to) = &body.to {
        let _ = PhoneNumber::parse(to, body.country.as_deref());
        let _ = EmailAddress::parse(to);
    }
    if let Some(id) = &body.id {
        let _ = normalize_id(id);
    }
});
