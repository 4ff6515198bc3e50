//! The `vonage` provider: SMS through Vonage's SMS API.
//!
//! `POST {url}/sms/json` (default `https://rest.nexmo.com`), a form with `api_key`,
//! `api_secret`, `from`, `to` (international digits, no `+`), `text`, `type` (`unicode`
//! when the text needs UCS-2, else `text`), `client-ref` (otpd's message id, echoed in
//! receipts) and `callback` when `status_callback_url` is set.
//!
//! The reply is `200 {"message-count", "messages": [{"status", "message-id", …}]}`: status
//! `"0"` is accepted (the `message-id` names receipts), `"1"` (throttled) and `"5"`
//! (internal error) are transient, every other status (invalid parameters or credentials,
//! number barred, quota, invalid sender, …) is permanent. 429 and 5xx HTTP replies and
//! connection errors are transient.

use std::time::Duration;

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError};
use crate::sms::{self, Encoding};

/// Vonage's SMS API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";

/// SMS API statuses worth retrying: 1 throttled, 5 internal error.
const TRANSIENT_STATUSES: &[&str] = &["1", "5"];

/// Sends SMS through Vonage.
pub struct VonageProvider {
    name: String,
    channels: Vec<Channel>,
    base: String,
    api_key: String,
    api_secret: SecretString,
    from: String,
    callback: Option<String>,
    client: reqwest::Client,
}

impl VonageProvider {
    /// From its config entry: `api_key`, `api_secret` and `from` are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind vonage needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind vonage serves only channels = [\"sms\"]"
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("provider '{name}': {e}"))?;
        Ok(VonageProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            base: config
                .url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.into())
                .trim_end_matches('/')
                .to_string(),
            api_key: config.api_key.clone().ok_or_else(|| need("api_key"))?,
            api_secret: config
                .api_secret
                .clone()
                .ok_or_else(|| need("api_secret"))?,
            from: config.from.clone().ok_or_else(|| need("from"))?,
            callback: config.status_callback_url.clone(),
            client,
        })
    }
}

#[async_trait]
impl Provider for VonageProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let kind = match sms::analyze(&m.body).encoding {
            Encoding::Gsm7 => "text",
            Encoding::Ucs2 => "unicode",
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("api_key", &self.api_key),
            ("api_secret", self.api_secret.expose_secret()),
            ("from", &self.from),
            ("to", m.to.trim_start_matches('+')),
            ("text", m.body.as_str()),
            ("type", kind),
            ("client-ref", &m.message_id),
        ];
        if let Some(cb) = &self.callback {
            form.push(("callback", cb));
        }
        let reply = self
            .client
            .post(format!("{}/sms/json", self.base))
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Transient(format!("request failed: {}", e.without_url()))
            })?;
        let status = reply.status();
        if !status.is_success() {
            let msg = format!("Vonage HTTP {}", status.as_u16());
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
            .map_err(|_| ProviderError::Transient("Vonage reply is not JSON".into()))?;
        let first = json
            .get("messages")
            .and_then(|m| m.get(0))
            .ok_or_else(|| ProviderError::Transient("Vonage reply without messages".into()))?;
        let code = first.get("status").and_then(|s| s.as_str()).unwrap_or("");
        if code == "0" {
            return Ok(Accepted::Queued {
                provider_message_id: first
                    .get("message-id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            });
        }
        let msg = format!("Vonage status {code}");
        if TRANSIENT_STATUSES.contains(&code) {
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
    use axum::http::{Method, Uri};
    use serde_json::{Value, json};
    use zeroize::Zeroizing;

    use super::*;

    type Seen = Arc<Mutex<Vec<(Method, String, Vec<(String, String)>)>>>;

    #[derive(Clone)]
    struct Fake {
        seen: Seen,
        reply: Arc<Mutex<(u16, Value)>>,
    }

    async fn record(
        State(f): State<Fake>,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let form = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        f.seen
            .lock()
            .unwrap()
            .push((method, uri.path().to_string(), form));
        let (s, b) = f.reply.lock().unwrap().clone();
        (axum::http::StatusCode::from_u16(s).unwrap(), axum::Json(b))
    }

    fn ok_reply(status: &str) -> Value {
        json!({"message-count": "1", "messages": [{"to": "447700900000",
            "message-id": "0C000000217B7F02", "status": status,
            "remaining-balance": "15.53590000", "message-price": "0.03330000", "network": "23410"}]})
    }

    async fn fake() -> (Fake, VonageProvider) {
        let f = Fake {
            seen: Arc::default(),
            reply: Arc::new(Mutex::new((200, ok_reply("0")))),
        };
        let app = Router::new().fallback(record).with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let p = VonageProvider::new(&ProviderConfig {
            name: "vg".into(),
            kind: "vonage".into(),
            url: Some(url),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some("abcd1234".into()),
            api_secret: Some("vonage-secret-1".to_string().into()),
            from: Some("Acme".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/vg".into()),
            ..Default::default()
        })
        .unwrap();
        (f, p)
    }

    fn message(body: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: "dlv_1".into(),
            verification_id: "ver_1".into(),
            to: "+447700900000".into(),
            channel: Channel::Sms,
            subject: None,
            body: Zeroizing::new(body.into()),
            html: None,
            code: Zeroizing::new("123456".into()),
            locale: "en".into(),
        }
    }

    #[tokio::test]
    async fn posts_the_documented_form_and_reads_the_message_id() {
        let (f, p) = fake().await;
        let got = p.send(&message("Your code is 123456.")).await.unwrap();
        assert_eq!(
            got,
            Accepted::Queued {
                provider_message_id: Some("0C000000217B7F02".into())
            }
        );
        p.send(&message("رمز 123456")).await.unwrap();
        let seen = f.seen.lock().unwrap().clone();
        assert_eq!(seen[0].0, Method::POST);
        assert_eq!(seen[0].1, "/sms/json");
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            seen[0].2,
            pairs(&[
                ("api_key", "abcd1234"),
                ("api_secret", "vonage-secret-1"),
                ("from", "Acme"),
                ("to", "447700900000"),
                ("text", "Your code is 123456."),
                ("type", "text"),
                ("client-ref", "dlv_1"),
                ("callback", "https://otp.example.com/v1/receipts/vg"),
            ])
        );
        assert_eq!(seen[1].2[5], ("type".into(), "unicode".into()));
    }

    #[tokio::test]
    async fn documented_statuses_map_to_transient_or_permanent() {
        let (f, p) = fake().await;
        for (code, transient) in [
            ("1", true),
            ("5", true),
            ("2", false),
            ("3", false),
            ("4", false),
            ("7", false),
            ("9", false),
            ("15", false),
        ] {
            *f.reply.lock().unwrap() = (200, ok_reply(code));
            let err = p.send(&message("x")).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{code}: {err}"
            );
            assert!(err.to_string().contains(&format!("status {code}")));
            assert!(!err.to_string().contains("vonage-secret-1"));
        }
        *f.reply.lock().unwrap() = (500, json!({}));
        assert!(matches!(
            p.send(&message("x")).await,
            Err(ProviderError::Transient(_))
        ));
        *f.reply.lock().unwrap() = (401, json!({}));
        assert!(matches!(
            p.send(&message("x")).await,
            Err(ProviderError::Permanent(_))
        ));
    }
}
