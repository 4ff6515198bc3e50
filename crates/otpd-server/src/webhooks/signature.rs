//! Standard Webhooks signatures (standardwebhooks.com): `webhook-signature: v1,<base64
//! HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`, where the key is the
//! base64 after `whsec_` in the service's secret. Receivers verify with the reference
//! libraries (`standardwebhooks` on PyPI and npm, `standardwebhooks` crate).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret that is not `whsec_<base64>` of at least one byte.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the webhook secret is not whsec_<base64>")]
pub struct BadSecret;

/// The key bytes of a `whsec_…` secret.
fn key_of(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
    let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
    if key.is_empty() {
        return Err(BadSecret);
    }
    Ok(key)
}

/// The `webhook-signature` header value for a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = zeroize::Zeroizing::new(key_of(secret)?);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_test_vector() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// The Standard Webhooks Rust crate (what docs/webhooks.md shows receivers) accepts our
    /// signature, and refuses it for another body or secret.
    #[test]
    fn the_reference_rust_crate_verifies_our_signatures() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body =
            br#"{"type":"verification.approved","timestamp":"2026-11-22T12:00:00.000Z","data":{}}"#;
        let now = chrono::Utc::now().timestamp();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", "evt_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        let signature = sign(secret, "evt_1", now, body).unwrap();
        headers.insert("webhook-signature", signature.parse().unwrap());
        let receiver = standardwebhooks::Webhook::new(secret).unwrap();
        receiver.verify(body, &headers).expect("verifies");
        assert!(receiver.verify(b"{}", &headers).is_err());
        let other =
            standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(other.verify(body, &headers).is_err());
    }

    #[test]
    fn a_malformed_secret_is_refused() {
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!"] {
            assert_eq!(sign(bad, "id", 1, b"{}"), Err(BadSecret), "{bad}");
        }
    }
}
