//! The `plivo` provider: SMS through Plivo's Message API, and its delivery callbacks
//! checked with `X-Plivo-Signature-V3`.
//!
//! **Send** (<https://www.plivo.com/docs/messaging/api/message/send-a-message/>, and the
//! official `plivo` Python SDK's `messages.create`): `POST
//! {url}/v1/Account/{auth_id}/Message/` (default `https://api.plivo.com`), HTTP Basic with
//! the Auth ID and Auth Token, JSON `{"src": from, "dst": "+…", "text", "type": "sms",
//! "url": status_callback_url, "method": "POST", "log": "false", "trackable": false}`
//! (`log` off: Plivo keeps neither the text, which holds the code, nor the full number).
//! A 202 `{"message_uuid": ["…"]}` is accepted (the uuid names later callbacks); 429 and
//! 5xx (and no answer) are transient; other statuses (400 invalid parameters, 401 bad
//! credentials, 402 insufficient credit, 404) permanent.
//!
//! **Callbacks**: Plivo posts a form (`MessageUUID`, `ParentMessageUUID` for parts of a
//! long message, `Status`, `ErrorCode`, …) to `url`, signed with the Auth Token
//! (`X-Plivo-Signature-V3`, `X-Plivo-Signature-V3-Nonce`; the SDK's
//! `validate_v3_signature`): base64 of HMAC-SHA256 over the callback URL without its
//! query, then `?` and its query parameters sorted (`k=v` joined by `&`), then `.` when
//! there was a query, then the body's parameters sorted as `kv` without separators, then
//! `.` and the nonce. The header may carry several signatures, comma-separated.
//! `delivered` is delivered; `failed`, `undelivered` and `rejected` failed; `queued` and
//! `sent` intermediate.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{ApiReply, callback, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// Plivo's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.plivo.com";

/// Sends SMS through Plivo.
pub struct PlivoProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    auth_id: String,
    auth_token: SecretString,
    from: String,
    callback: Option<String>,
    client: reqwest::Client,
}

impl PlivoProvider {
    /// From its config entry: `auth_id`, `auth_token` and `from` are required;
    /// `status_callback_url` (the public URL of `/v1/receipts/NAME`) enables receipts.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind plivo needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind plivo serves only channel \"sms\""
            ));
        }
        let auth_id = config.auth_id.clone().ok_or_else(|| need("auth_id"))?;
        if auth_id.is_empty() || !auth_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "provider '{name}': auth_id is the Plivo Auth ID (letters and digits)"
            ));
        }
        let auth_token = config
            .auth_token
            .clone()
            .ok_or_else(|| need("auth_token"))?;
        let from = config
            .from
            .clone()
            .ok_or_else(|| need("from (a Plivo number or sender id)"))?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(PlivoProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!(
                "{}/v1/Account/{auth_id}/Message/",
                base.trim_end_matches('/')
            ),
            auth_id,
            auth_token,
            from,
            callback: config.status_callback_url.clone(),
            client: http_client(config, reqwest::header::HeaderMap::new())?,
        })
    }
}

/// The string Plivo's V3 signature covers for a `POST` of `params` (the form) to `url`,
/// before `.nonce`.
pub fn v3_base(url: &str, params: &[(String, String)]) -> Option<String> {
    let url = url.split('#').next()?;
    let (mut base, raw_query) = match url.split_once('?') {
        Some((base, query)) => (base.to_string(), query),
        None => (url.to_string(), ""),
    };
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let query: Vec<String> = query
        .into_iter()
        .flat_map(|(k, mut vs)| {
            vs.sort();
            vs.into_iter().map(move |v| format!("{k}={v}"))
        })
        .collect();
    let query = query.join("&");
    if !query.is_empty() || !params.is_empty() {
        base.push('?');
        base.push_str(&query);
    }
    if !query.is_empty() && !params.is_empty() {
        base.push('.');
    }
    let mut body: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in params {
        body.entry(k.as_str()).or_default().push(v.as_str());
    }
    for (k, mut vs) in body {
        vs.sort();
        for v in vs {
            base.push_str(k);
            base.push_str(v);
        }
    }
    Some(base)
}

/// `X-Plivo-Signature-V3` of a `POST` of `params` to `url` with `nonce`.
pub fn v3_signature(
    token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> Option<String> {
    let base = v3_base(url, params)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).ok()?;
    mac.update(base.as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Provider for PlivoProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut body = serde_json::json!({
            "src": self.from,
            "dst": m.to,
            "text": m.body.as_str(),
            "type": "sms",
            "method": "POST",
            "log": "false",
            "trackable": false,
        });
        if let Some(cb) = &self.callback {
            body["url"] = cb.as_str().into();
        }
        let request = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.auth_id, Some(self.auth_token.expose_secret()))
            .json(&body);
        let reply = ApiReply::fetch(request).await?;
        if !reply.status.is_success() {
            let detail = json_str(reply.json.as_ref(), "/error")
                .map(|e| format!(": {}", e.chars().take(120).collect::<String>()))
                .unwrap_or_default();
            return Err(super::status_error("Plivo", reply.status, &detail));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/message_uuid/0"),
        })
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(self.callback_receipt(request))
    }
}

impl PlivoProvider {
    /// A signed delivery callback.
    fn callback_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Result<ParsedReceipt, ReceiptError> {
        let url = self.callback.as_deref().ok_or(ReceiptError::Forged)?;
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ReceiptError::Forged)
        };
        let given = header("x-plivo-signature-v3")?;
        let nonce = header("x-plivo-signature-v3-nonce")?;
        // The form's own parameters (the callback URL's query is part of `url`).
        let body = std::str::from_utf8(request.body)
            .map_err(|_| ReceiptError::Malformed("the body is not UTF-8".into()))?;
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = v3_signature(self.auth_token.expose_secret(), url, &params, nonce)
            .ok_or(ReceiptError::Forged)?;
        let signed = given
            .split(',')
            .any(|s| bool::from(s.trim().as_bytes().ct_eq(expected.as_bytes())));
        if !signed {
            return Err(ReceiptError::Forged);
        }
        let id = callback::get(&params, "ParentMessageUUID")
            .filter(|v| !v.is_empty())
            .map_or_else(|| callback::require(&params, "MessageUUID"), Ok)?;
        let raw = callback::require(&params, "Status")?;
        let status = match raw.to_ascii_lowercase().as_str() {
            "delivered" => ReceiptStatus::Delivered,
            "failed" | "undelivered" | "rejected" => ReceiptStatus::Failed,
            _ => ReceiptStatus::Pending,
        };
        let code = callback::get(&params, "ErrorCode").unwrap_or_default();
        Ok(ParsedReceipt {
            message_id: id.to_string(),
            status,
            error: (status == ReceiptStatus::Failed).then(|| {
                format!("Plivo {raw} {}", code.chars().take(20).collect::<String>())
                    .trim_end()
                    .to_string()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message, pairs};

    const AUTH_ID: &str = "MAXXXXXXXXXXXXXXXXXX";
    const TOKEN: &str = "plivo-auth-token-1";
    const CB: &str = "https://otp.example.com/v1/receipts/plivo";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "plivo".into(),
            kind: "plivo".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            auth_id: Some(AUTH_ID.into()),
            auth_token: Some(TOKEN.to_string().into()),
            from: Some("+14155550000".into()),
            status_callback_url: Some(CB.into()),
            ..Default::default()
        }
    }

    async fn fake() -> (FakeApi, PlivoProvider) {
        let f = FakeApi::start(
            202,
            json!({"api_id": "d1f2c3", "message": "message(s) queued",
                   "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}),
        )
        .await;
        let p = PlivoProvider::new(&config(&f.url)).unwrap();
        (f, p)
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_basic_auth() {
        let (f, p) = fake().await;
        let sms = message(Channel::Sms, "+14155550100", "Your code is 123456.", "en");
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("db3ce55a-7f1d-11e1-8ea7-1231380bc196".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, format!("/v1/Account/{AUTH_ID}/Message/"));
        assert_eq!(
            seen.header("authorization"),
            format!("Basic {}", STANDARD.encode(format!("{AUTH_ID}:{TOKEN}")))
        );
        assert_eq!(seen.header("content-type"), "application/json");
        assert_eq!(
            seen.json(),
            json!({"src": "+14155550000", "dst": "+14155550100", "text": "Your code is 123456.",
                   "type": "sms", "url": CB, "method": "POST", "log": "false", "trackable": false})
        );
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let (f, p) = fake().await;
        let sms = message(Channel::Sms, "+14155550100", "x", "en");
        for (http, transient) in [
            (400, false),
            (401, false),
            (402, false),
            (404, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(http, json!({"api_id": "x", "error": "invalid dst"}));
            let err = p.send(&sms).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains(TOKEN));
        }
    }

    #[test]
    fn config_check_names_each_missing_key() {
        for (key, strip) in [
            (
                "auth_id",
                (|c: &mut ProviderConfig| c.auth_id = None) as fn(&mut ProviderConfig),
            ),
            ("auth_token", |c| c.auth_token = None),
            ("from", |c| c.from = None),
        ] {
            let mut c = config("http://x");
            strip(&mut c);
            let err = PlivoProvider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {key}")), "{err}");
        }
        let mut c = config("http://x");
        c.channels = vec![Channel::Voice];
        assert!(PlivoProvider::new(&c).is_err());
    }

    fn callback_request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> ReceiptRequest<'a> {
        ReceiptRequest {
            headers,
            query: "",
            body,
            now: chrono::Utc::now(),
        }
    }

    fn signed(body: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-plivo-signature-v3", signature.parse().unwrap());
        h.insert(
            "x-plivo-signature-v3-nonce",
            "05429567804466091622".parse().unwrap(),
        );
        let _ = body;
        h
    }

    // The vector: the official SDK's construction (plivo 4.63.0, utils/signature_v3.py:
    // `construct_post_url` then `get_signature_v3`) for this URL, form and nonce.
    #[test]
    fn the_v3_base_string_is_the_sdks() {
        let params = pairs(&[
            ("To", "14155550100"),
            ("Status", "delivered"),
            ("MessageUUID", "u-1"),
            ("A", "2"),
            ("A", "1"),
        ]);
        assert_eq!(
            v3_base("https://otp.example.com/v1/receipts/plivo?z=1&b=x", &params).unwrap(),
            "https://otp.example.com/v1/receipts/plivo?b=x&z=1.A1A2MessageUUIDu-1StatusdeliveredTo14155550100"
        );
        assert_eq!(
            v3_base("https://otp.example.com/v1/receipts/plivo", &params).unwrap(),
            "https://otp.example.com/v1/receipts/plivo?A1A2MessageUUIDu-1StatusdeliveredTo14155550100"
        );
        assert_eq!(
            v3_base("https://otp.example.com:8443/r?t=1", &[]).unwrap(),
            "https://otp.example.com:8443/r?t=1"
        );
    }

    #[test]
    fn signed_callbacks_are_receipts_and_forged_ones_are_not() {
        let p = PlivoProvider::new(&config("http://x")).unwrap();
        let body = "To=14155550100&From=14155550000&Status=undelivered&MessageUUID=db3ce55a&ErrorCode=30&Units=1";
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let sig = v3_signature(TOKEN, CB, &params, "05429567804466091622").unwrap();
        let h = signed(body, &format!("bm90LXRoaXM=,{sig}"));
        let r = p
            .parse_receipt(&callback_request(&h, body.as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!(r.message_id, "db3ce55a");
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.error.as_deref(), Some("Plivo undelivered 30"));
        let tampered = body.replace("undelivered", "delivered");
        assert_eq!(
            p.parse_receipt(&callback_request(&h, tampered.as_bytes()))
                .unwrap(),
            Err(ReceiptError::Forged)
        );
        let none = HeaderMap::new();
        assert_eq!(
            p.parse_receipt(&callback_request(&none, body.as_bytes()))
                .unwrap(),
            Err(ReceiptError::Forged)
        );
        let wrong_key = v3_signature("other", CB, &params, "05429567804466091622").unwrap();
        assert_eq!(
            p.parse_receipt(&callback_request(
                &signed(body, &wrong_key),
                body.as_bytes()
            ))
            .unwrap(),
            Err(ReceiptError::Forged)
        );
    }
}
