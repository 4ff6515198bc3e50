//! Vonage's three signatures:
//!
//! - **SMS API webhooks** (delivery receipts) carry a `sig` parameter: the parameters
//!   (without `sig`) sorted by name, each written `&name=value` with `&` and `=` in values
//!   replaced by `_`; then, with the dashboard's *signature method*, either `md5hash` — the
//!   lowercase hex MD5 of that string followed by the signature secret — or an HMAC (MD5,
//!   SHA-1, SHA-256, SHA-512) of the string keyed by the signature secret, uppercase hex.
//! - **Application JWTs** authenticate Voice and Messages API calls: RS256 under the
//!   application's private key, claims `application_id`, `iat`, `exp`, `jti`.
//! - **Signed webhooks** of the Voice and Messages APIs carry `Authorization: Bearer <JWT>`,
//!   HS256 under the signature secret, claims `iat`, `jti`, `iss`, `api_key`/
//!   `application_id` and `payload_hash` (the hex SHA-256 of the body, when present). A
//!   token is believed only while fresh: issued at most [`WEBHOOK_MAX_AGE_SECS`] ago and
//!   not in the future (both within [`CLOCK_SKEW_SECS`]), not past an `exp`, not before an
//!   `nbf` — so a captured webhook cannot be replayed later.

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use md5::{Digest, Md5};
use serde::Serialize;
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::provider::ReceiptError;

/// How long an application JWT otpd makes is valid (Vonage's SDKs use 15 minutes).
const JWT_LIFETIME_SECS: u64 = 900;

/// Oldest webhook JWT believed, by its `iat` (Vonage signs each webhook as it sends it).
pub const WEBHOOK_MAX_AGE_SECS: i64 = 300;

/// Clock difference allowed between Vonage and otpd when judging `iat`, `exp` and `nbf`.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// The signature method chosen in Vonage's dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigMethod {
    /// MD5 of the string and the secret (Vonage's default).
    Md5Hash,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl SigMethod {
    /// From the config's `signature_method`.
    pub fn parse(s: &str) -> Option<SigMethod> {
        Some(match s {
            "md5hash" => SigMethod::Md5Hash,
            "md5" => SigMethod::Md5,
            "sha1" => SigMethod::Sha1,
            "sha256" => SigMethod::Sha256,
            "sha512" => SigMethod::Sha512,
            _ => return None,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(secret: &str, data: &[u8]) -> String {
    let mut mac = <M as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(data);
    hex(&mac.finalize().into_bytes()).to_uppercase()
}

/// The `sig` of SMS API webhook parameters (any `sig` among them is left out).
pub fn sms_signature(method: SigMethod, secret: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort();
    let mut text = String::new();
    for (k, v) in sorted {
        text.push('&');
        text.push_str(k);
        text.push('=');
        text.push_str(&v.replace(['&', '='], "_"));
    }
    match method {
        SigMethod::Md5Hash => {
            let mut md5 = Md5::new();
            md5.update(text.as_bytes());
            md5.update(secret.as_bytes());
            hex(&md5.finalize())
        }
        SigMethod::Md5 => hmac_hex::<Hmac<Md5>>(secret, text.as_bytes()),
        SigMethod::Sha1 => hmac_hex::<Hmac<Sha1>>(secret, text.as_bytes()),
        SigMethod::Sha256 => hmac_hex::<Hmac<Sha256>>(secret, text.as_bytes()),
        SigMethod::Sha512 => hmac_hex::<Hmac<Sha512>>(secret, text.as_bytes()),
    }
}

/// Checks an SMS API webhook's `sig` (hex, either case) in constant time.
pub fn check_sms_signature(
    method: SigMethod,
    secret: &str,
    params: &[(String, String)],
) -> Result<(), ReceiptError> {
    let given = params
        .iter()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.to_ascii_lowercase())
        .ok_or(ReceiptError::Forged)?;
    let expected = sms_signature(method, secret, params).to_ascii_lowercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(ReceiptError::Forged)
    }
}

#[derive(Serialize)]
struct AppClaims<'a> {
    application_id: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Makes the application JWTs of Voice and Messages API calls.
pub struct AppJwt {
    application_id: String,
    key: EncodingKey,
}

impl AppJwt {
    /// From the application id and its RSA private key (PEM, PKCS#1 or PKCS#8).
    pub fn new(application_id: &str, private_key_pem: &[u8]) -> Result<AppJwt, String> {
        let key = EncodingKey::from_rsa_pem(private_key_pem)
            .map_err(|_| "the private key is not an RSA private key in PEM".to_string())?;
        Ok(AppJwt {
            application_id: application_id.to_string(),
            key,
        })
    }

    /// A fresh token issued at `now` (unix seconds), with a random `jti`.
    pub fn token(&self, now: u64) -> Result<String, String> {
        let claims = AppClaims {
            application_id: &self.application_id,
            iat: now,
            exp: now + JWT_LIFETIME_SECS,
            jti: hex(&rand::random::<[u8; 16]>()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| format!("JWT: {e}"))
    }
}

/// Checks a Voice or Messages API webhook received at `now` (unix seconds):
/// `Authorization: Bearer <JWT>` signed HS256 with the signature secret, fresh (an `iat`
/// within [`WEBHOOK_MAX_AGE_SECS`] before `now` and not after it, an `exp` not passed, an
/// `nbf` reached, each give or take [`CLOCK_SKEW_SECS`]), and its `payload_hash` (when
/// present) matching the body.
pub fn check_webhook_jwt(
    secret: &str,
    authorization: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), ReceiptError> {
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ReceiptError::Forged)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|_| ReceiptError::Forged)?;
    check_fresh(&data.claims, now)?;
    if let Some(hash) = data.claims.get("payload_hash") {
        let given = hash.as_str().unwrap_or_default().to_ascii_lowercase();
        let expected = hex(&Sha256::digest(body));
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(ReceiptError::Forged);
        }
    }
    Ok(())
}

/// The time claims of a webhook JWT against `now`: `iat` required, within the window;
/// `exp` and `nbf` checked when present. A time claim that is not a number is refused.
fn check_fresh(claims: &serde_json::Value, now: i64) -> Result<(), ReceiptError> {
    let time = |name: &str| -> Result<Option<i64>, ReceiptError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or(ReceiptError::Forged),
        }
    };
    let iat = time("iat")?.ok_or(ReceiptError::Forged)?;
    if iat > now.saturating_add(CLOCK_SKEW_SECS)
        || iat < now.saturating_sub(WEBHOOK_MAX_AGE_SECS + CLOCK_SKEW_SECS)
    {
        return Err(ReceiptError::Forged);
    }
    if time("exp")?.is_some_and(|exp| exp <= now.saturating_sub(CLOCK_SKEW_SECS)) {
        return Err(ReceiptError::Forged);
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECS)) {
        return Err(ReceiptError::Forged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The vector of Vonage's own Python SDK tests (`test_signature`): `a=1`, `b=2`,
    /// `timestamp=1461605396`, secret `secret`, method md5hash.
    #[test]
    fn md5hash_matches_vonages_sdk_vector() {
        let p = params(&[("a", "1"), ("b", "2"), ("timestamp", "1461605396")]);
        assert_eq!(
            sms_signature(SigMethod::Md5Hash, "secret", &p),
            "6af838ef94998832dbfc29020b564830"
        );
        let mut signed = p.clone();
        signed.push(("sig".into(), "6af838ef94998832dbfc29020b564830".into()));
        assert_eq!(
            check_sms_signature(SigMethod::Md5Hash, "secret", &signed),
            Ok(())
        );
        signed[0].1 = "9".into();
        assert_eq!(
            check_sms_signature(SigMethod::Md5Hash, "secret", &signed),
            Err(ReceiptError::Forged)
        );
    }

    #[test]
    fn hmac_methods_sign_the_documented_string_in_uppercase_hex() {
        // `&` and `=` inside values become `_` before signing.
        let p = params(&[("text", "a=b&c"), ("id", "1")]);
        let string = "&id=1&text=a_b_c";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap();
        mac.update(string.as_bytes());
        let want = hex(&mac.finalize().into_bytes()).to_uppercase();
        assert_eq!(sms_signature(SigMethod::Sha256, "k", &p), want);
        for m in ["md5", "sha1", "sha256", "sha512"] {
            let method = SigMethod::parse(m).unwrap();
            let sig = sms_signature(method, "k", &p);
            assert_eq!(sig, sig.to_uppercase(), "{m}");
            let mut signed = p.clone();
            signed.push(("sig".into(), sig));
            assert_eq!(check_sms_signature(method, "k", &signed), Ok(()), "{m}");
            assert!(
                check_sms_signature(method, "other", &signed).is_err(),
                "{m}"
            );
        }
        assert_eq!(SigMethod::parse("crc32"), None);
        assert!(
            check_sms_signature(SigMethod::Md5Hash, "k", &p).is_err(),
            "no sig"
        );
    }

    const NOW: i64 = 1_700_000_000;

    fn bearer(claims: serde_json::Value) -> String {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"sig-secret"),
        )
        .unwrap();
        format!("Bearer {token}")
    }

    #[test]
    fn webhook_jwts_are_checked_with_the_secret_and_the_payload_hash() {
        let body = br#"{"message_uuid":"x","status":"delivered"}"#;
        let auth = bearer(serde_json::json!({"iat": NOW, "jti": "j", "iss": "Vonage",
            "payload_hash": hex(&Sha256::digest(body))}));
        assert_eq!(
            check_webhook_jwt("sig-secret", Some(&auth), body, NOW),
            Ok(())
        );
        assert!(check_webhook_jwt("wrong", Some(&auth), body, NOW).is_err());
        assert!(
            check_webhook_jwt("sig-secret", Some(&auth), b"{}", NOW).is_err(),
            "tampered body"
        );
        assert!(check_webhook_jwt("sig-secret", None, body, NOW).is_err());
        assert!(check_webhook_jwt("sig-secret", Some("Bearer x.y.z"), body, NOW).is_err());
    }

    #[test]
    fn a_webhook_jwt_is_believed_only_while_fresh() {
        let body = b"{}";
        let check = |claims: serde_json::Value, now: i64| {
            check_webhook_jwt("sig-secret", Some(&bearer(claims)), body, now)
        };
        use serde_json::json;
        // iat: within the window (give or take the skew), required.
        assert_eq!(check(json!({"iat": NOW}), NOW), Ok(()));
        assert_eq!(
            check(json!({"iat": NOW}), NOW + WEBHOOK_MAX_AGE_SECS),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"iat": NOW}),
                NOW + WEBHOOK_MAX_AGE_SECS + CLOCK_SKEW_SECS
            ),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"iat": NOW}),
                NOW + WEBHOOK_MAX_AGE_SECS + CLOCK_SKEW_SECS + 1
            ),
            Err(ReceiptError::Forged),
            "a replay six minutes later"
        );
        assert_eq!(
            check(json!({"iat": NOW}), NOW + 86_400),
            Err(ReceiptError::Forged),
            "a replay a day later"
        );
        assert_eq!(check(json!({"iat": NOW + CLOCK_SKEW_SECS}), NOW), Ok(()));
        assert_eq!(
            check(json!({"iat": NOW + CLOCK_SKEW_SECS + 1}), NOW),
            Err(ReceiptError::Forged),
            "issued in the future"
        );
        assert_eq!(
            check(json!({"jti": "no-iat"}), NOW),
            Err(ReceiptError::Forged),
            "no iat"
        );
        assert_eq!(
            check(json!({"iat": "yesterday"}), NOW),
            Err(ReceiptError::Forged),
            "an iat that is no time"
        );
        // exp: passed (beyond the skew) is refused.
        assert_eq!(check(json!({"iat": NOW, "exp": NOW + 60}), NOW), Ok(()));
        assert_eq!(
            check(json!({"iat": NOW - 120, "exp": NOW - CLOCK_SKEW_SECS}), NOW),
            Err(ReceiptError::Forged),
            "expired"
        );
        assert_eq!(
            check(json!({"iat": NOW - 10, "exp": NOW - 5}), NOW),
            Ok(()),
            "expired by less than the skew"
        );
        // nbf: in the future (beyond the skew) is refused.
        assert_eq!(check(json!({"iat": NOW, "nbf": NOW + 30}), NOW), Ok(()));
        assert_eq!(
            check(json!({"iat": NOW, "nbf": NOW + CLOCK_SKEW_SECS + 1}), NOW),
            Err(ReceiptError::Forged),
            "not valid yet"
        );
    }
}
