//! Phone number parsing and normalization with an arbitrary country: never panics; what
//! parses is E.164 (a `+` and at most 15 digits), a valid number is also a possible one
//! with the same form, and normalizing is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_core::recipient::PhoneNumber;

fuzz_target!(|data: &[u8]| {
    // First byte: whether a country is given and how long it is; then the country; then
    // the number.
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let country_len = usize::from(head % 4).min(rest.len());
    let (country, number) = rest.split_at(country_len);
    let country = String::from_utf8_lossy(country);
    let country = (head & 0x80 != 0).then_some(country.as_ref());
    let number = String::from_utf8_lossy(number);

    let valid = PhoneNumber::parse(&number, country);
    let possible = PhoneNumber::parse_possible(&number, country);
    for p in [&valid, &possible].into_iter().flatten() {
        let e164 = p.e164();
        assert!(e164.starts_with('+'), "{e164}");
        assert!(e164.len() <= 16, "{e164}");
        assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
        if let Some(region) = p.region() {
            assert!(region.len() == 2 || region == "001", "{region}");
        }
    }
    if let Ok(v) = &valid {
        let p = possible
            .as_ref()
            .expect("a valid number is a possible number");
        assert_eq!(v.e164(), p.e164());
        let again = PhoneNumber::parse(v.e164(), None).expect("E.164 of a valid number parses");
        assert_eq!(again.e164(), v.e164(), "normalization is idempotent");
    }
});
