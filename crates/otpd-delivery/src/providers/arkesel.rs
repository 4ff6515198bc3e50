//! The `arkesel` provider: SMS through Arkesel's SMS API v2 (Ghana and West Africa).
//!
//! `POST {url}/api/v2/sms/send` (default `https://sms.arkesel.com`), header
//! `api-key: <api_key>`, JSON `{"sender", "message", "recipients": ["233…"],
//! "callback_url"?}` (numbers in international digits, no `+`). A reply
//! `{"status": "success", "data": [{"recipient", "id"}]}` is accepted (the `id` names the
//! message); 429, 5xx and connection errors are transient; other statuses (401 bad key,
//! 402 insufficient balance, 422 invalid sender or numbers) are permanent, as is a 2xx
//! reply without `"status": "success"`.

use std::time::Duration;

use async_trait::async_trait;
use otpd_core::channel::Channel;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;

use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError};

/// Arkesel's host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://sms.arkesel.com";

/// Sends SMS through Arkesel.
pub struct ArkeselProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    sender: String,
    callback: Option<String>,
    client: reqwest::Client,
}

impl ArkeselProvider {
    /// From its config entry: `api_key` (or `api_secret`) and `from` (the sender id, at
    /// most 11 characters) are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind arkesel needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind arkesel serves only channels = [\"sms\"]"
            ));
        }
        let key = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key"))?;
        let sender = config.from.clone().ok_or_else(|| need("from"))?;
        if sender.is_empty() || sender.chars().count() > 11 {
            return Err(format!(
                "provider '{name}': the Arkesel sender id is 1 to 11 characters"
            ));
        }
        let mut value =
            HeaderValue::from_str(&key).map_err(|_| format!("provider '{name}': bad api_key"))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("api-key", value);
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
        Ok(ArkeselProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/api/v2/sms/send", base.trim_end_matches('/')),
            sender,
            callback: config.status_callback_url.clone(),
            client,
        })
    }
}

#[async_trait]
impl Provider for ArkeselProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut body = serde_json::json!({
            "sender": self.sender,
            "message": m.body.as_str(),
            "recipients": [m.to.trim_start_matches('+')],
        });
        if let Some(cb) = &self.callback {
            body["callback_url"] = cb.as_str().into();
        }
        let reply = self
            .client
            .post(&self.endpoint)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Transient(format!("request failed: {}", e.without_url()))
            })?;
        let status = reply.status();
        let json: Option<serde_json::Value> = reply.json().await.ok();
        if status.is_success() {
            let ok = json
                .as_ref()
                .and_then(|j| j.get("status"))
                .and_then(|s| s.as_str())
                == Some("success");
            if !ok {
                return Err(ProviderError::Permanent(
                    "Arkesel did not accept the message".into(),
                ));
            }
            return Ok(Accepted::Queued {
                provider_message_id: json
                    .as_ref()
                    .and_then(|j| j.pointer("/data/0/id"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            });
        }
        let msg = format!("Arkesel HTTP {}", status.as_u16());
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
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

    type Seen = Arc<Mutex<Vec<(Method, String, String, Value)>>>;

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
        let key = headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        f.seen.lock().unwrap().push((
            method,
            uri.path().to_string(),
            key,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
        let (s, b) = f.reply.lock().unwrap().clone();
        (axum::http::StatusCode::from_u16(s).unwrap(), axum::Json(b))
    }

    async fn fake() -> (Fake, ArkeselProvider) {
        let f = Fake {
            seen: Arc::default(),
            reply: Arc::new(Mutex::new((
                200,
                json!({"status": "success", "data": [{"recipient": "233544919953",
                       "id": "9b752841-7ee7-4d40-b4fe-768bfb1da4f0"}]}),
            ))),
        };
        let app = Router::new().fallback(record).with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let p = ArkeselProvider::new(&ProviderConfig {
            name: "ark".into(),
            kind: "arkesel".into(),
            url: Some(url),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some("ark-key-1".into()),
            from: Some("Acme".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/ark".into()),
            ..Default::default()
        })
        .unwrap();
        (f, p)
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            message_id: "dlv_1".into(),
            verification_id: "ver_1".into(),
            to: "+233544919953".into(),
            channel: Channel::Sms,
            subject: None,
            body: Zeroizing::new("Your code is 123456.".into()),
            html: None,
            code: Zeroizing::new("123456".into()),
            locale: "en".into(),
        }
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_the_api_key_header() {
        let (f, p) = fake().await;
        assert_eq!(
            p.send(&message()).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("9b752841-7ee7-4d40-b4fe-768bfb1da4f0".into())
            }
        );
        let (method, path, key, body) = f.seen.lock().unwrap()[0].clone();
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/api/v2/sms/send");
        assert_eq!(key, "ark-key-1");
        assert_eq!(
            body,
            json!({"sender": "Acme", "message": "Your code is 123456.",
                   "recipients": ["233544919953"],
                   "callback_url": "https://otp.example.com/v1/receipts/ark"})
        );
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let (f, p) = fake().await;
        for (http, transient) in [
            (401, false),
            (402, false),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            *f.reply.lock().unwrap() = (http, json!({"status": "error", "message": "x"}));
            let err = p.send(&message()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains("ark-key-1"));
        }
        *f.reply.lock().unwrap() = (200, json!({"status": "error"}));
        assert!(matches!(
            p.send(&message()).await,
            Err(ProviderError::Permanent(_))
        ));
    }
}
