//! The `otpauth://` key URI (the format Google Authenticator defined and every
//! authenticator app reads from a QR code):
//! `otpauth://TYPE/ISSUER:LABEL?secret=BASE32&issuer=ISSUER&algorithm=…&digits=…&period=…`
//! (`counter=…` instead of `period` for HOTP).

use zeroize::Zeroizing;

use super::{FactorKind, FactorParams, FactorSecret};

/// Percent-encodes everything but RFC 3986 unreserved characters (so `@`, `:` and spaces in
/// labels survive every parser).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key URI of a factor. `counter` is the HOTP counter the device starts from.
/// Holds the secret, so it is zeroed on drop.
pub fn otpauth_uri(
    params: &FactorParams,
    secret: &FactorSecret,
    issuer: &str,
    label: &str,
    counter: u64,
) -> Zeroizing<String> {
    let moving = match params.kind {
        FactorKind::Totp => format!("period={}", params.period),
        FactorKind::Hotp => format!("counter={counter}"),
    };
    Zeroizing::new(format!(
        "otpauth://{kind}/{issuer_enc}:{label}?secret={secret}&issuer={issuer_enc}&algorithm={alg}&digits={digits}&{moving}",
        kind = params.kind.as_str(),
        issuer_enc = encode(issuer),
        label = encode(label),
        secret = secret.base32().as_str(),
        alg = params.algorithm.as_str(),
        digits = params.digits,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::Algorithm;

    #[test]
    fn uri_carries_every_parameter_and_encodes_the_label() {
        let params = FactorParams {
            kind: FactorKind::Totp,
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 60,
            tolerance: 1,
        };
        let secret = FactorSecret::from_bytes(b"12345678901234567890");
        let uri = otpauth_uri(&params, &secret, "Acme Co", "alice@example.com", 0);
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/Acme%20Co:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Co&algorithm=SHA256&digits=8&period=60"
        );
        let hotp = FactorParams {
            kind: FactorKind::Hotp,
            ..params
        };
        let uri = otpauth_uri(&hotp, &secret, "Acme", "bob", 0);
        assert!(
            uri.starts_with("otpauth://hotp/Acme:bob?"),
            "{}",
            uri.as_str()
        );
        assert!(uri.ends_with("&counter=0"), "{}", uri.as_str());
    }
}
