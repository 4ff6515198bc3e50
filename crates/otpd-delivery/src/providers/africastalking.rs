//! The `africastalking` provider: SMS through Africa's Talking's messaging API.
//!
//! `POST {url}/version1/messaging` (default `https://api.africastalking.com`; the sandbox
//! is `https://api.sandbox.africastalking.com`), headers `apiKey: <api_key>` and
//! `Accept: application/json`, form `username`, `to` (E.164), `message`, `from` (sender
//! id or short code, optional). The reply is `201 {"SMSMessageData": {"Message",
//! "Recipients": [{"statusCode", "status", "number", "cost", "messageId"}]}}`: recipient
//! status codes 100 (processed), 101 (sent) and 102 (queued) are accepted; 500 (internal
//! error) and 501 (gateway error) are transient; the others (401 risk hold, 402 invalid
//! sender id, 403 invalid number, 404 unsupported number type, 405 insufficient balance,
//! 406 blacklisted, 407 could not route, 409 do-not-disturb, 502 rejected by gateway)
//! are permanent. HTTP 429, 5xx and connection errors are transient, other HTTP errors
//! permanent.

use std::time::Duration;

use async_trait::async_trait;
use otpd_core::channel::Channel;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError};

/// Africa's Talking's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.africastalking.com";

/// Recipient status codes that mean accepted.
const ACCEPTED_CODES: &[i64] = &[100, 101, 102];
/// Recipient status codes worth retrying.
const TRANSIENT_CODES: &[i64] = &[500, 501];

/// Sends SMS through Africa's Talking.
pub struct AfricasTalkingProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    username: String,
    from: Option<String>,
    client: reqwest::Client,
}

impl AfricasTalkingProvider {
    /// From its config entry: `username` and `api_key` are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind africastalking needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind africastalking serves only channels = [\"sms\"]"
            ));
        }
        let key = config.api_key.clone().ok_or_else(|| need("api_key"))?;
        let mut value =
            HeaderValue::from_str(&key).map_err(|_| format!("provider '{name}': bad api_key"))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("apiKey", value);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("provider '{name}': {e}"))?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(AfricasTalkingProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/version1/messaging", base.trim_end_matches('/')),
            username: config.username.clone().ok_or_else(|| need("username"))?,
            from: config.from.clone(),
            client,
        })
    }
}

#[async_trait]
impl Provider for AfricasTalkingProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("username", &self.username),
            ("to", &m.to),
            ("message", m.body.as_str()),
        ];
        if let Some(from) = &self.from {
            form.push(("from", from));
        }
        let reply = self
            .client
            .post(&self.endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Transient(format!("request failed: {}", e.without_url()))
            })?;
        let status = reply.status();
        if !status.is_success() {
            let msg = format!("Africa's Talking HTTP {}", status.as_u16());
            return Err(
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    ProviderError::Transient(msg)
                } else {
                    ProviderError::Permanent(msg)
                },
            );
        }
        let json: serde_json::Value = reply
            .json()
            .await
            .map_err(|_| ProviderError::Transient("reply is not JSON".into()))?;
        let recipient = json
            .pointer("/SMSMessageData/Recipients/0")
            .ok_or_else(|| ProviderError::Permanent("no recipient in the reply".into()))?;
        let code = recipient
            .get("statusCode")
            .and_then(|c| c.as_i64())
            .unwrap_or_default();
        if ACCEPTED_CODES.contains(&code) {
            return Ok(Accepted::Queued {
                provider_message_id: recipient
                    .get("messageId")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            });
        }
        let msg = format!(
            "Africa's Talking status {code} {}",
            recipient
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
        );
        if TRANSIENT_CODES.contains(&code) {
            Err(ProviderError::Transient(msg))
        } else {
            Err(ProviderError::Permanent(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Uri};
    use serde_json::{Value, json};
    use zeroize::Zeroizing;

    use super::*;

    type Seen = Arc<Mutex<Vec<(Method, String, String, String, Vec<(String, String)>)>>>;

    #[derive(Clone)]
    struct Fake {
        seen: Seen,
        reply: Arc<Mutex<(u16, Value)>>,
    }

    async fn record(
        State(f): State<Fake>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let form = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        f.seen.lock().unwrap().push((
            method,
            uri.path().to_string(),
            h("apikey"),
            h("accept"),
            form,
        ));
        let (s, b) = f.reply.lock().unwrap().clone();
        (axum::http::StatusCode::from_u16(s).unwrap(), axum::Json(b))
    }

    fn reply(code: i64, status: &str) -> Value {
        json!({"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000",
            "Recipients": [{"statusCode": code, "number": "+254711000111", "status": status,
                            "cost": "KES 0.8000", "messageId": "ATPid_SampleTxnId123"}]}})
    }

    async fn fake() -> (Fake, AfricasTalkingProvider) {
        let f = Fake {
            seen: Arc::default(),
            reply: Arc::new(Mutex::new((201, reply(101, "Success")))),
        };
        let app = Router::new().fallback(record).with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let p = AfricasTalkingProvider::new(&ProviderConfig {
            name: "at".into(),
            kind: "africastalking".into(),
            url: Some(url),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some("atsk_key_1".into()),
            username: Some("sandbox".into()),
            from: Some("AFTKNG".into()),
            ..Default::default()
        })
        .unwrap();
        (f, p)
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            message_id: "dlv_1".into(),
            verification_id: "ver_1".into(),
            to: "+254711000111".into(),
            channel: Channel::Sms,
            subject: None,
            body: Zeroizing::new("Your code is 123456.".into()),
            html: None,
            code: Zeroizing::new("123456".into()),
            locale: "sw".into(),
        }
    }

    #[tokio::test]
    async fn posts_the_documented_form_with_the_api_key_header() {
        let (f, p) = fake().await;
        assert_eq!(
            p.send(&message()).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("ATPid_SampleTxnId123".into())
            }
        );
        let (method, path, key, accept, form) = f.seen.lock().unwrap()[0].clone();
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/version1/messaging");
        assert_eq!(key, "atsk_key_1");
        assert_eq!(accept, "application/json");
        let want: Vec<(String, String)> = [
            ("username", "sandbox"),
            ("to", "+254711000111"),
            ("message", "Your code is 123456."),
            ("from", "AFTKNG"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(form, want);
    }

    #[tokio::test]
    async fn recipient_status_codes_map_as_documented() {
        let (f, p) = fake().await;
        for code in [100, 102] {
            *f.reply.lock().unwrap() = (201, reply(code, "Success"));
            assert!(p.send(&message()).await.is_ok(), "{code}");
        }
        for (code, status, transient) in [
            (403, "InvalidPhoneNumber", false),
            (405, "InsufficientBalance", false),
            (406, "UserInBlacklist", false),
            (409, "DoNotDisturbRejection", false),
            (500, "InternalServerError", true),
            (501, "GatewayError", true),
        ] {
            *f.reply.lock().unwrap() = (201, reply(code, status));
            let err = p.send(&message()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{code}"
            );
            assert!(err.to_string().contains(status));
        }
        *f.reply.lock().unwrap() = (401, json!({}));
        assert!(matches!(
            p.send(&message()).await,
            Err(ProviderError::Permanent(_))
        ));
        *f.reply.lock().unwrap() = (503, json!({}));
        assert!(matches!(
            p.send(&message()).await,
            Err(ProviderError::Transient(_))
        ));
    }
}
