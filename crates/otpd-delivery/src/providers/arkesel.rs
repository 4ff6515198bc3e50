//! The `arkesel` provider: SMS through Arkesel's SMS API v2 (Ghana and West Africa), and
//! its delivery webhooks.
//!
//! `POST {url}/api/v2/sms/send` (default `https://sms.arkesel.com`), header
//! `api-key: <api_key>`, JSON `{"sender", "message", "recipients": ["233…"],
//! "callback_url"?}` (numbers in international digits, no `+`). A reply
//! `{"status": "success", "data": [{"recipient", "id"}]}` is accepted (the `id` names the
//! message); 408, 429, 5xx and connection errors are transient; other statuses (401 bad
//! key, 402 insufficient balance, 422 invalid sender or numbers) are permanent, as is a
//! 2xx reply without `"status": "success"`.
//!
//! Delivery webhooks come to the `callback_url` with the message's `sms_id` (or `id`) and
//! `status` (in the query string, a form or JSON): `DELIVERED` is delivered; `FAILED`,
//! `UNDELIVERED`, `REJECTED`, `EXPIRED` failed; anything else (`SENT`, `SUBMITTED`, …)
//! intermediate. Arkesel signs nothing, so a webhook is believed only with the operator's
//! `receipt_token` in the URL ([`super::callback`]).

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{ApiReply, callback, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// Arkesel's host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://sms.arkesel.com";

/// Sends SMS through Arkesel.
pub struct ArkeselProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    sender: String,
    callback: Option<String>,
    receipt_token: Option<SecretString>,
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
        let headers = credential_header(config, "api-key", &key)?;
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
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
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
        let reply = ApiReply::fetch(self.client.post(&self.endpoint).json(&body)).await?;
        let accepted = reply
            .accepted("/data/0/id")
            .ok_or_else(|| reply.error("Arkesel", "/code"))?;
        if json_str(reply.json.as_ref(), "/status").as_deref() != Some("success") {
            return Err(ProviderError::Permanent(
                "Arkesel did not accept the message".into(),
            ));
        }
        Ok(accepted)
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request)
                .and_then(|()| delivery_webhook(&callback::params(request)?)),
        )
    }
}

/// An Arkesel delivery webhook's message id and status.
fn delivery_webhook(params: &[(String, String)]) -> Result<ParsedReceipt, ReceiptError> {
    let id = callback::get(params, "sms_id")
        .filter(|v| !v.is_empty())
        .map_or_else(|| callback::require(params, "id"), Ok)?;
    let raw = callback::require(params, "status")?;
    let status = match raw.to_ascii_uppercase().as_str() {
        "DELIVERED" | "DELIVRD" => ReceiptStatus::Delivered,
        "FAILED" | "UNDELIVERED" | "UNDELIV" | "REJECTED" | "EXPIRED" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    Ok(ParsedReceipt {
        message_id: id.to_string(),
        status,
        error: (status == ReceiptStatus::Failed)
            .then(|| format!("Arkesel {}", raw.chars().take(40).collect::<String>())),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "ark".into(),
            kind: "arkesel".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some("ark-key-1".into()),
            from: Some("Acme".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/ark?token=tok-1".into()),
            receipt_token: Some("tok-1".to_string().into()),
            ..Default::default()
        }
    }

    async fn fake() -> (FakeApi, ArkeselProvider) {
        let f = FakeApi::start(
            200,
            json!({"status": "success", "data": [{"recipient": "233544919953",
                   "id": "9b752841-7ee7-4d40-b4fe-768bfb1da4f0"}]}),
        )
        .await;
        let p = ArkeselProvider::new(&config(&f.url)).unwrap();
        (f, p)
    }

    fn sms() -> OutboundMessage {
        message(Channel::Sms, "+233544919953", "Your code is 123456.", "en")
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_the_api_key_header() {
        let (f, p) = fake().await;
        assert_eq!(
            p.send(&sms()).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("9b752841-7ee7-4d40-b4fe-768bfb1da4f0".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/api/v2/sms/send");
        assert_eq!(seen.header("api-key"), "ark-key-1");
        assert_eq!(
            seen.json(),
            json!({"sender": "Acme", "message": "Your code is 123456.",
                   "recipients": ["233544919953"],
                   "callback_url": "https://otp.example.com/v1/receipts/ark?token=tok-1"})
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
            f.reply(http, json!({"status": "error", "message": "x"}));
            let err = p.send(&sms()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains("ark-key-1"));
        }
        f.reply(200, json!({"status": "error"}));
        assert!(matches!(
            p.send(&sms()).await,
            Err(ProviderError::Permanent(_))
        ));
    }

    fn parse(p: &ArkeselProvider, query: &str, body: &str) -> Result<ParsedReceipt, ReceiptError> {
        let h = reqwest::header::HeaderMap::new();
        p.parse_receipt(&ReceiptRequest {
            headers: &h,
            query,
            body: body.as_bytes(),
        })
        .unwrap()
    }

    #[test]
    fn delivery_webhooks_need_the_token_and_map_statuses() {
        let p = ArkeselProvider::new(&config("http://127.0.0.1:9")).unwrap();
        let id = "9b752841-7ee7-4d40-b4fe-768bfb1da4f0";
        let r = parse(&p, &format!("token=tok-1&sms_id={id}&status=DELIVERED"), "").unwrap();
        assert_eq!(
            (r.message_id.as_str(), r.status),
            (id, ReceiptStatus::Delivered)
        );
        let body: Value = json!({"sms_id": id, "status": "FAILED"});
        let r = parse(&p, "token=tok-1", &body.to_string()).unwrap();
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.error.as_deref(), Some("Arkesel FAILED"));
        let r = parse(&p, "token=tok-1", &format!("id={id}&status=SUBMITTED")).unwrap();
        assert_eq!(r.status, ReceiptStatus::Pending);
        assert_eq!(
            parse(&p, &format!("sms_id={id}&status=DELIVERED"), ""),
            Err(ReceiptError::Forged)
        );
        assert_eq!(
            parse(&p, &format!("token=tok-2&sms_id={id}&status=DELIVERED"), ""),
            Err(ReceiptError::Forged)
        );
        assert!(matches!(
            parse(&p, "token=tok-1&status=DELIVERED", ""),
            Err(ReceiptError::Malformed(_))
        ));
        let mut c = config("http://127.0.0.1:9");
        c.receipt_token = None;
        let p = ArkeselProvider::new(&c).unwrap();
        assert_eq!(
            parse(&p, &format!("token=tok-1&sms_id={id}&status=DELIVERED"), ""),
            Err(ReceiptError::Forged)
        );
    }
}
