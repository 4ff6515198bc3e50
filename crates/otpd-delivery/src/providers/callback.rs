//! Reading and authenticating provider callbacks (delivery receipts, USSD sessions).
//!
//! Providers send their parameters as a form body, a JSON object or a query string;
//! [`params`] reads all three into one list. Providers that sign their callbacks (Twilio,
//! Vonage, Meta) are checked by their adapter. For those that sign nothing (Arkesel,
//! Africa's Talking) the operator sets a `receipt_token` and writes it into the callback
//! URL given to the provider, either as the password of HTTP Basic
//! (`https://otpd:TOKEN@otp.example.com/v1/receipts/NAME`) or as a `token` query parameter
//! (`…/v1/receipts/NAME?token=TOKEN`); [`check_token`] accepts either, compared in
//! constant time. otpd's own generic JSON receipt (the `http` provider) carries the token
//! as `Authorization: Bearer TOKEN` ([`check_bearer`]). Without a configured token such
//! callbacks are never believed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::provider::{ReceiptError, ReceiptRequest};

/// The query parameter that may carry the receipt token.
pub const TOKEN_PARAM: &str = "token";

/// Most parameters read from one callback (a receipt has about a dozen).
const MAX_PARAMS: usize = 100;

/// Checks the callback's receipt token (HTTP Basic password or `token` query parameter)
/// against `expected`; no configured token means no callback is believed.
pub fn check_token(
    expected: Option<&SecretString>,
    request: &ReceiptRequest<'_>,
) -> Result<(), ReceiptError> {
    let expected = expected.ok_or(ReceiptError::Forged)?.expose_secret();
    let from_query = form_urlencoded::parse(request.query.as_bytes())
        .find(|(k, _)| k == TOKEN_PARAM)
        .map(|(_, v)| v.into_owned());
    let given = from_query
        .or_else(|| basic_password(request))
        .ok_or(ReceiptError::Forged)?;
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ReceiptError::Forged)
    }
}

/// Checks the receipt token of otpd's generic JSON receipt: `Authorization: Bearer
/// <token>` equal to `expected` (compared in constant time). No configured token means no
/// receipt is believed.
pub fn check_bearer(
    expected: Option<&SecretString>,
    request: &ReceiptRequest<'_>,
) -> Result<(), ReceiptError> {
    let expected = expected.ok_or(ReceiptError::Forged)?.expose_secret();
    let value = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(ReceiptError::Forged)?;
    let (scheme, given) = value.split_once(' ').ok_or(ReceiptError::Forged)?;
    if !scheme.eq_ignore_ascii_case("bearer") || expected.is_empty() {
        return Err(ReceiptError::Forged);
    }
    if bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ReceiptError::Forged)
    }
}

/// The password of an `Authorization: Basic` header.
fn basic_password(request: &ReceiptRequest<'_>) -> Option<String> {
    let value = request.headers.get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// Every parameter of the callback: the query string's (without `token`), then the
/// body's — a JSON object (scalar values as text) when the body starts with `{`, else a
/// form. A body that is neither is malformed.
pub fn params(request: &ReceiptRequest<'_>) -> Result<Vec<(String, String)>, ReceiptError> {
    let mut out: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
        .filter(|(k, _)| k != TOKEN_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let body = request.body.trim_ascii_start();
    if body.starts_with(b"{") {
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| ReceiptError::Malformed("the body is not a JSON object".into()))?;
        for (k, v) in json {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                _ => continue,
            };
            out.push((k, text));
        }
    } else if !body.is_empty() {
        if std::str::from_utf8(body).is_err() {
            return Err(ReceiptError::Malformed("the body is not UTF-8".into()));
        }
        out.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    if out.len() > MAX_PARAMS {
        return Err(ReceiptError::Malformed("too many parameters".into()));
    }
    Ok(out)
}

/// The first value of `name` in `params`.
pub fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The first non-empty value of `name`, or a malformed-receipt error naming it.
pub fn require<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ReceiptError> {
    get(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ReceiptError::Malformed(format!("no {name}")))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn request<'a>(headers: &'a HeaderMap, query: &'a str, body: &'a [u8]) -> ReceiptRequest<'a> {
        ReceiptRequest {
            headers,
            query,
            body,
            now: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_generic_receipt_needs_the_bearer_token() {
        let token: SecretString = "t0k3n".to_string().into();
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", value.parse().unwrap());
            h
        };
        let right = with("Bearer t0k3n");
        assert_eq!(
            check_bearer(Some(&token), &request(&right, "", b"")),
            Ok(())
        );
        assert_eq!(
            check_bearer(Some(&token), &request(&with("bearer t0k3n"), "", b"")),
            Ok(()),
            "the scheme is case-insensitive"
        );
        for wrong in ["Bearer t0k3", "Bearer t0k3n0", "Bearer ", "Token t0k3n"] {
            assert_eq!(
                check_bearer(Some(&token), &request(&with(wrong), "", b"")),
                Err(ReceiptError::Forged),
                "{wrong}"
            );
        }
        let basic = with(&format!("Basic {}", STANDARD.encode("otpd:t0k3n")));
        assert_eq!(
            check_bearer(Some(&token), &request(&basic, "", b"")),
            Err(ReceiptError::Forged)
        );
        let none = HeaderMap::new();
        assert_eq!(
            check_bearer(Some(&token), &request(&none, "token=t0k3n", b"")),
            Err(ReceiptError::Forged),
            "never from the query"
        );
        assert_eq!(
            check_bearer(None, &request(&right, "", b"")),
            Err(ReceiptError::Forged),
            "no configured token: nothing is believed"
        );
    }

    #[test]
    fn a_token_is_accepted_from_the_query_or_basic_auth_and_nothing_else() {
        let token: SecretString = "t0k3n".to_string().into();
        let none = HeaderMap::new();
        assert_eq!(
            check_token(Some(&token), &request(&none, "token=t0k3n", b"")),
            Ok(())
        );
        assert_eq!(
            check_token(Some(&token), &request(&none, "token=wrong", b"")),
            Err(ReceiptError::Forged)
        );
        assert_eq!(
            check_token(Some(&token), &request(&none, "", b"token=t0k3n")),
            Err(ReceiptError::Forged),
            "never from the body"
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            "authorization",
            format!("Basic {}", STANDARD.encode("otpd:t0k3n"))
                .parse()
                .unwrap(),
        );
        assert_eq!(check_token(Some(&token), &request(&basic, "", b"")), Ok(()));
        let mut wrong = HeaderMap::new();
        wrong.insert(
            "authorization",
            format!("Basic {}", STANDARD.encode("otpd:nope"))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            check_token(Some(&token), &request(&wrong, "", b"")),
            Err(ReceiptError::Forged)
        );
        assert_eq!(
            check_token(None, &request(&none, "token=t0k3n", b"")),
            Err(ReceiptError::Forged),
            "no configured token: nothing is believed"
        );
    }

    #[test]
    fn params_come_from_the_query_a_form_or_a_json_object() {
        let h = HeaderMap::new();
        let p = params(&request(&h, "a=1&token=x", b"b=2&c=%26")).unwrap();
        assert_eq!(
            p,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".into(), "2".into()),
                ("c".into(), "&".into())
            ]
        );
        let p = params(&request(
            &h,
            "",
            br#"{"id": "x", "n": 3, "deep": {"no": 1}}"#,
        ))
        .unwrap();
        assert_eq!(get(&p, "id"), Some("x"));
        assert_eq!(get(&p, "n"), Some("3"));
        assert_eq!(get(&p, "deep"), None);
        assert!(params(&request(&h, "", b"{not json")).is_err());
        assert!(params(&request(&h, "", b"\xff\xfe")).is_err());
        assert!(require(&p, "missing").is_err());
    }
}
