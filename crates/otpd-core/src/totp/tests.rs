//! The published test vectors, the window edges, replay and HOTP resynchronization.

use chrono::{DateTime, Duration, Utc};

use super::*;

const SEED_SHA1: &[u8] = b"12345678901234567890";
const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap()
}

fn totp(algorithm: Algorithm, digits: u8, tolerance: u32) -> FactorParams {
    FactorParams {
        kind: FactorKind::Totp,
        algorithm,
        digits,
        period: 30,
        tolerance,
    }
}

fn hotp(tolerance: u32) -> FactorParams {
    FactorParams {
        kind: FactorKind::Hotp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
        tolerance,
    }
}

fn code(s: &str) -> TotpCode {
    TotpCode::parse(s).unwrap()
}

/// RFC 4226 appendix D: HOTP values of the ASCII secret "12345678901234567890".
#[test]
fn rfc4226_appendix_d_vectors() {
    let expected = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];
    for (counter, want) in expected.iter().enumerate() {
        assert_eq!(
            otp::hotp(SEED_SHA1, counter as u64, 6, Algorithm::Sha1),
            *want,
            "counter {counter}"
        );
    }
}

/// RFC 6238 appendix B: 8-digit TOTP values (period 30, T0 = 0) for SHA1, SHA256, SHA512.
#[test]
fn rfc6238_appendix_b_vectors() {
    let table: [(i64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];
    for (time, sha1, sha256, sha512) in table {
        for (alg, seed, want) in [
            (Algorithm::Sha1, SEED_SHA1, sha1),
            (Algorithm::Sha256, SEED_SHA256, sha256),
            (Algorithm::Sha512, SEED_SHA512, sha512),
        ] {
            let params = totp(alg, 8, 0);
            let secret = FactorSecret::from_bytes(seed);
            let step = params.step_at(at(time)).unwrap();
            assert_eq!(params.code_at(&secret, step), want, "{alg:?} at {time}");
            // And the verifier accepts exactly that step with no tolerance.
            assert_eq!(
                params.verify(&secret, &code(want), None, at(time)),
                Some(step),
                "{alg:?} at {time}"
            );
        }
    }
}

#[test]
fn window_edges_at_the_step_boundary() {
    let secret = FactorSecret::from_bytes(SEED_SHA1);
    let p = totp(Algorithm::Sha1, 6, 1);
    let c = |step| code(&p.code_at(&secret, step));
    // 89.999 s is the last instant of step 2; 90 s is the first of step 3.
    let last_of_2 = at(90) - Duration::milliseconds(1);
    let first_of_3 = at(90);
    assert_eq!(p.verify(&secret, &c(1), None, last_of_2), Some(1));
    assert_eq!(p.verify(&secret, &c(3), None, last_of_2), Some(3));
    assert_eq!(p.verify(&secret, &c(4), None, last_of_2), None);
    assert_eq!(p.verify(&secret, &c(1), None, first_of_3), None);
    assert_eq!(p.verify(&secret, &c(2), None, first_of_3), Some(2));
    assert_eq!(p.verify(&secret, &c(4), None, first_of_3), Some(4));

    // Window 0: only the current step, so the boundary alone decides.
    let strict = totp(Algorithm::Sha1, 6, 0);
    assert_eq!(strict.verify(&secret, &c(2), None, last_of_2), Some(2));
    assert_eq!(strict.verify(&secret, &c(2), None, first_of_3), None);
    assert_eq!(strict.verify(&secret, &c(3), None, last_of_2), None);
    assert_eq!(strict.verify(&secret, &c(3), None, first_of_3), Some(3));

    // Window 2 reaches two steps.
    let wide = totp(Algorithm::Sha1, 6, 2);
    assert_eq!(wide.verify(&secret, &c(1), None, first_of_3), Some(1));
    assert_eq!(wide.verify(&secret, &c(0), None, first_of_3), None);
}

#[test]
fn a_step_once_accepted_is_never_accepted_again() {
    let secret = FactorSecret::from_bytes(SEED_SHA256);
    let p = totp(Algorithm::Sha256, 6, 1);
    let now = at(1_700_000_000);
    let step = p.step_at(now).unwrap();
    let current = code(&p.code_at(&secret, step));
    assert_eq!(p.verify(&secret, &current, None, now), Some(step));
    // Replay of the same code, also later in the window.
    assert_eq!(p.verify(&secret, &current, Some(step), now), None);
    assert_eq!(
        p.verify(&secret, &current, Some(step), now + Duration::seconds(30)),
        None
    );
    // An earlier step of the window is refused once a later one was used.
    let previous = code(&p.code_at(&secret, step - 1));
    assert_eq!(p.verify(&secret, &previous, Some(step), now), None);
    // The next step is still fine.
    let next = code(&p.code_at(&secret, step + 1));
    assert_eq!(p.verify(&secret, &next, Some(step), now), Some(step + 1));
}

#[test]
fn hotp_looks_ahead_to_resynchronize_and_never_goes_back() {
    let secret = FactorSecret::from_bytes(SEED_SHA1);
    let p = hotp(10);
    // RFC 4226 values: counter 0 = 755224, 9 = 520489.
    assert_eq!(p.verify(&secret, &code("755224"), None, at(0)), Some(0));
    // The device was pressed 8 times without use: counter 9 is within the look-ahead.
    assert_eq!(p.verify(&secret, &code("520489"), Some(0), at(0)), Some(9));
    // Used counters are refused.
    assert_eq!(p.verify(&secret, &code("520489"), Some(9), at(0)), None);
    assert_eq!(p.verify(&secret, &code("287082"), Some(9), at(0)), None);
    // Beyond the look-ahead is refused: after counter 0, look-ahead 10 reaches 1..=11.
    let c12 = code(&p.code_at(&secret, 12));
    assert_eq!(p.verify(&secret, &c12, Some(0), at(0)), None);
    assert_eq!(p.verify(&secret, &c12, Some(1), at(0)), Some(12));
    // No look-ahead: only the next counter.
    let exact = hotp(0);
    assert_eq!(
        exact.verify(&secret, &code("287082"), Some(0), at(0)),
        Some(1)
    );
    assert_eq!(exact.verify(&secret, &code("359152"), Some(0), at(0)), None);
}

#[test]
fn codes_parse_as_6_or_8_digits_and_stay_redacted() {
    assert_eq!(code("123 456").expose(), "123456");
    assert!(TotpCode::parse("12345678").is_some());
    for bad in [
        "12345",
        "1234567",
        "123456789",
        "12345a",
        "",
        "１２３４５６",
    ] {
        assert!(TotpCode::parse(bad).is_none(), "{bad:?}");
    }
    assert_eq!(format!("{:?}", code("123456")), "TotpCode(<redacted>)");
    assert_eq!(
        format!("{:?}", FactorSecret::generate(Algorithm::Sha1)),
        "FactorSecret(<redacted>)"
    );
}

#[test]
fn generated_secrets_match_the_hash_length() {
    for (alg, len, b32) in [
        (Algorithm::Sha1, 20, 32),
        (Algorithm::Sha256, 32, 52),
        (Algorithm::Sha512, 64, 103),
    ] {
        let s = FactorSecret::generate(alg);
        assert_eq!(s.bytes().len(), len);
        assert_eq!(s.base32().len(), b32);
        assert_ne!(s.bytes(), FactorSecret::generate(alg).bytes());
        let back = FactorSecret::from_base32(&s.base32().to_lowercase()).unwrap();
        assert_eq!(back.bytes(), s.bytes());
    }
}

#[test]
fn base32_secrets_parse_with_or_without_padding() {
    // RFC 4648 test vector: "foobar".
    for text in ["MZXW6YTBOI", "MZXW6YTBOI======", "mzxw 6ytb oi"] {
        assert_eq!(FactorSecret::from_base32(text).unwrap().bytes(), b"foobar");
    }
    assert!(FactorSecret::from_base32("not base32!").is_none());
}

#[test]
fn params_are_validated() {
    assert!(totp(Algorithm::Sha1, 6, 1).validate().is_ok());
    assert!(totp(Algorithm::Sha1, 7, 1).validate().is_err());
    assert!(totp(Algorithm::Sha1, 6, 3).validate().is_err());
    assert!(
        FactorParams {
            period: 45,
            ..totp(Algorithm::Sha1, 6, 1)
        }
        .validate()
        .is_err()
    );
    assert!(hotp(50).validate().is_ok());
    assert!(hotp(51).validate().is_err());
    assert!(validate_issuer("Acme").is_ok());
    assert!(validate_issuer("Ac:me").is_err());
    assert!(validate_issuer("").is_err());
    assert!(validate_label("alice@example.com").is_ok());
    assert!(validate_label("a\nb").is_err());
}
