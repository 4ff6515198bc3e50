//! Decoding of Twilio-style parameters: PascalCase names in a form-encoded body (or a
//! query string), taken one by one by the handler. What is left over at the end is sorted
//! out by [`Params::finish`]: Twilio parameters otpd cannot honour are refused with 400 /
//! 60200 naming them ("not supported by otpd"), so nothing a caller relies on is silently
//! dropped; names Twilio does not define are ignored, as Twilio ignores them (so an SDK
//! that adds a parameter keeps working), and logged at debug by name only. A name given
//! twice is refused. Values are never echoed in errors or logs (one could be a code).

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use sha2::{Digest, Sha256};

use super::errors::TwilioError;
use crate::state::AppState;

/// Longest parameter name echoed in an error.
const MAX_ECHOED_NAME: usize = 64;
/// Most parameters in one request (Twilio's endpoints take about 30).
const MAX_PARAMS: usize = 100;
/// The array parameters of the operations otpd serves: given once per item, as the SDKs
/// send them (`EventTypes=a&EventTypes=b`), and taken with [`Params::take_all`].
const ARRAYS: [&str; 2] = ["EventTypes", "Details.Fields"];

/// The parameters of a request, consumed by name.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

fn echo(name: &str) -> String {
    name.chars()
        .take(MAX_ECHOED_NAME)
        .filter(|c| !c.is_control())
        .collect()
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text; a name given twice is refused,
    /// except an array parameter's.
    pub fn parse(bytes: &[u8]) -> Result<Self, TwilioError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(bytes) {
            if pairs.len() >= MAX_PARAMS {
                return Err(TwilioError::invalid("too many parameters"));
            }
            if !ARRAYS.contains(&name.as_ref()) && pairs.iter().any(|(n, _)| n.as_str() == name) {
                return Err(TwilioError::invalid(format!(
                    "Invalid parameter {}: given more than once",
                    echo(&name)
                )));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Params { pairs })
    }

    /// Decodes a query string (absent: no parameters).
    pub fn from_query(query: Option<&str>) -> Result<Self, TwilioError> {
        Self::parse(query.unwrap_or("").as_bytes())
    }

    /// Takes a parameter, if present.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(n, _)| n == name)?;
        Some(self.pairs.remove(i).1)
    }

    /// Whether a parameter is present (with any value).
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// Takes every value of an array parameter, in order (none: empty).
    pub fn take_all(&mut self, name: &str) -> Vec<String> {
        let (taken, kept) = std::mem::take(&mut self.pairs)
            .into_iter()
            .partition(|(n, _)| n == name);
        self.pairs = kept;
        taken.into_iter().map(|(_, v)| v).collect()
    }

    /// Takes a parameter that must be present and not empty.
    pub fn required(&mut self, name: &str) -> Result<String, TwilioError> {
        match self.take(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(TwilioError::invalid(format!(
                "Missing required parameter {name} in the post body"
            ))),
        }
    }

    /// Takes a boolean (`true` / `false`, any case, as the SDKs send them).
    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>, TwilioError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(TwilioError::invalid(format!(
                "Invalid parameter {name}: must be true or false"
            ))),
        }
    }

    /// Takes a number (or any `FromStr` value) with a range check by the caller.
    pub fn take_parsed<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, TwilioError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                TwilioError::invalid(format!("Invalid parameter {name}: not a valid value"))
            }),
        }
    }

    /// Takes a flag whose `false` is what otpd does anyway; `true` asks for a feature otpd
    /// does not have and is refused.
    pub fn only_false(&mut self, name: &str) -> Result<(), TwilioError> {
        match self.take_bool(name)? {
            Some(true) => Err(TwilioError::unsupported(name, "true")),
            _ => Ok(()),
        }
    }

    /// Takes a parameter that may only have one value (what otpd does anyway).
    pub fn only_value(&mut self, name: &str, allowed: &str) -> Result<(), TwilioError> {
        match self.take(name) {
            Some(v) if !v.eq_ignore_ascii_case(allowed) => Err(TwilioError::unsupported(name, "")),
            _ => Ok(()),
        }
    }

    /// Sorts out whatever is left: Twilio parameters otpd does not implement (named in
    /// `unsupported`, or under one of its `Prefix.` groups) are refused; other names are
    /// ignored as Twilio ignores unknown parameters, and logged at debug (names only).
    pub fn finish(self, unsupported: &[&str]) -> Result<(), TwilioError> {
        let is_unsupported = |name: &str| {
            unsupported.iter().any(|u| {
                name == *u || (u.ends_with('.') && name.starts_with(u) && name.len() > u.len())
            })
        };
        if let Some((name, _)) = self.pairs.iter().find(|(n, _)| is_unsupported(n)) {
            return Err(TwilioError::unsupported(name, ""));
        }
        if !self.pairs.is_empty() {
            let names: Vec<String> = self.pairs.iter().map(|(n, _)| echo(n)).collect();
            tracing::debug!(
                parameters = names.join(",").as_str(),
                "ignored parameters Twilio's API does not define"
            );
        }
        Ok(())
    }
}

/// A form body parsed into [`Params`], with the digest of its bytes (for idempotency).
pub struct TwilioForm {
    /// The parameters.
    pub params: Params,
    /// SHA-256 of the raw body.
    pub digest: Vec<u8>,
}

impl FromRequest<AppState> for TwilioForm {
    type Rejection = TwilioError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let form_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        // No Content-Type with an empty body is fine (a POST with no parameters).
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                TwilioError::invalid(format!(
                    "request body is larger than {} bytes",
                    state.config.http.body_limit_bytes
                ))
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                TwilioError::invalid("the request body could not be read")
            }
        })?;
        match form_type {
            Some(true) => {}
            None if bytes.is_empty() => {}
            _ => {
                return Err(TwilioError::invalid(
                    "expected Content-Type: application/x-www-form-urlencoded",
                )
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
        }
        Ok(TwilioForm {
            params: Params::parse(&bytes)?,
            digest: Sha256::digest(&bytes).to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn takes_decoded_values_by_name() {
        let mut p = params("To=%2B14155550123&Channel=sms&CodeLength=6&LookupEnabled=True");
        assert_eq!(p.required("To").unwrap(), "+14155550123");
        assert_eq!(p.take("Channel").as_deref(), Some("sms"));
        assert_eq!(p.take_parsed::<u8>("CodeLength").unwrap(), Some(6));
        assert_eq!(p.take_bool("LookupEnabled").unwrap(), Some(true));
        assert_eq!(p.take("Locale"), None);
        assert!(p.finish(&[]).is_ok());
    }

    #[test]
    fn leftovers_are_refused_by_name() {
        let e = params("SendDigits=1234").finish(&["SendDigits"]);
        let e = e.unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (400, 60200));
        assert!(e.message().contains("SendDigits") && e.message().contains("not supported"));

        let e = params("Totp.Issuer=Acme").finish(&["Totp."]).unwrap_err();
        assert!(e.message().contains("Totp.Issuer"), "{}", e.message());

        // Unknown names are ignored (as Twilio does), even beside known ones…
        assert!(
            params("Frobnicate=1&Other.Thing=2")
                .finish(&["Totp."])
                .is_ok()
        );
        // …but never hide an unsupported one.
        let e = params("Frobnicate=1&SendDigits=1")
            .finish(&["SendDigits"])
            .unwrap_err();
        assert!(e.message().contains("SendDigits"), "{}", e.message());
    }

    #[test]
    fn repeats_missing_and_malformed_values_are_refused_without_echoing_values() {
        let e = Params::parse(b"Code=123456&Code=654321").unwrap_err();
        assert_eq!(e.code(), 60200);
        assert!(!e.message().contains("123456"));

        let e = params("To=").required("To").unwrap_err();
        assert!(e.message().contains("Missing required parameter To"));

        let e = params("CodeLength=six")
            .take_parsed::<u8>("CodeLength")
            .unwrap_err();
        assert!(e.message().contains("CodeLength") && !e.message().contains("six"));

        let e = params("DtmfInputRequired=true")
            .only_false("DtmfInputRequired")
            .unwrap_err();
        assert!(e.message().contains("DtmfInputRequired"));
        assert!(
            params("DtmfInputRequired=false")
                .only_false("DtmfInputRequired")
                .is_ok()
        );
        assert!(
            params("Psd2Enabled=maybe")
                .take_bool("Psd2Enabled")
                .is_err()
        );
    }
}
