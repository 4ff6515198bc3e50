//! The `postmark` provider: email through Postmark's Email API, and its Delivery and
//! Bounce webhooks, so that an email that bounces fails over like an SMS that fails.
//!
//! **Send** (<https://postmarkapp.com/developer/api/email-api>): `POST {url}/email`
//! (default `https://api.postmarkapp.com`), headers `X-Postmark-Server-Token: <api_key>`
//! and `Accept: application/json`, JSON `{"From", "To", "Subject", "TextBody",
//! "HtmlBody"?, "MessageStream": "outbound", "Metadata": {"otpd_message_id": "dlv_…"}}`.
//! A 2xx `{"ErrorCode": 0, "MessageID"}` is accepted; 429 and 5xx (and no answer) are
//! transient; other statuses permanent, naming Postmark's `ErrorCode` (422 with 300
//! invalid email request, 406 inactive recipient, 10 bad server token, …).
//!
//! **Webhooks** (<https://postmarkapp.com/developer/webhooks/delivery-webhook>,
//! <https://postmarkapp.com/developer/webhooks/bounce-webhook>): `{"RecordType":
//! "Delivery", "MessageID", …}` is delivered; `{"RecordType": "Bounce", "MessageID",
//! "Type", …}` failed (soft bounces too: the code will not arrive in time); other
//! record types (`Open`,
//! `Click`, `SpamComplaint`, `SubscriptionChange`) say nothing. Postmark signs nothing;
//! its webhook URLs carry HTTP Basic credentials, so webhooks are believed only with the
//! operator's `receipt_token` as the Basic password (or `?token=`) ([`super::callback`]).

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{ApiReply, callback, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// Postmark's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";

/// Sends email through Postmark.
pub struct PostmarkProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    from: String,
    stream: String,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl PostmarkProvider {
    /// From its config entry: `api_key` (the server token) and `from` (a confirmed sender
    /// signature) are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind postmark needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Email) {
            return Err(format!(
                "provider '{name}': kind postmark serves only channel \"email\""
            ));
        }
        let token = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key (the server API token)"))?;
        let from = config.from.clone().ok_or_else(|| {
            need("from (a confirmed sender, e.g. \"Acme <no-reply@acme.example>\")")
        })?;
        let mut headers = credential_header(config, "x-postmark-server-token", &token)?;
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(PostmarkProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/email", base.trim_end_matches('/')),
            from,
            stream: config
                .message_stream
                .clone()
                .unwrap_or_else(|| "outbound".into()),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }
}

#[async_trait]
impl Provider for PostmarkProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut body = serde_json::json!({
            "From": self.from,
            "To": m.to,
            "Subject": m.subject.as_deref().unwrap_or("Your verification code"),
            "TextBody": m.body.as_str(),
            "MessageStream": self.stream,
            "Metadata": {"otpd_message_id": m.message_id},
        });
        if let Some(html) = &m.html {
            body["HtmlBody"] = html.as_str().into();
        }
        let reply = ApiReply::fetch(self.client.post(&self.endpoint).json(&body)).await?;
        if !reply.status.is_success() {
            return Err(reply.error("Postmark", "/ErrorCode"));
        }
        if reply.code("/ErrorCode").unwrap_or(0) != 0 {
            return Err(reply.error("Postmark", "/ErrorCode"));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/MessageID"),
        })
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request)
                .and_then(|()| webhook(request.body)),
        )
    }
}

/// A Delivery or Bounce webhook's outcome for its message.
fn webhook(body: &[u8]) -> Result<ParsedReceipt, ReceiptError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ReceiptError::Malformed("the body is not JSON".into()))?;
    let id = json_str(Some(&json), "/MessageID")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ReceiptError::Malformed("no MessageID".into()))?;
    let kind = json_str(Some(&json), "/RecordType").unwrap_or_default();
    let status = match kind.as_str() {
        "Delivery" => ReceiptStatus::Delivered,
        "Bounce" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    let detail = json_str(Some(&json), "/Type").unwrap_or_default();
    Ok(ParsedReceipt {
        message_id: id,
        status,
        error: (status == ReceiptStatus::Failed).then(|| {
            format!(
                "Postmark {kind} {}",
                detail.chars().take(40).collect::<String>()
            )
            .trim_end()
            .to_string()
        }),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    const TOKEN: &str = "e2e-postmark-server-token";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "pm".into(),
            kind: "postmark".into(),
            url: Some(url.into()),
            channels: vec![Channel::Email],
            timeout_ms: 2000,
            api_key: Some(TOKEN.into()),
            from: Some("Acme <no-reply@acme.example>".into()),
            receipt_token: Some("hook-pass".to_string().into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn posts_the_documented_email() {
        let f = FakeApi::start(
            200,
            json!({"To": "alice@example.com", "SubmittedAt": "2026-12-07T04:20:00.0000000Z",
            "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "ErrorCode": 0, "Message": "OK"}),
        )
        .await;
        let p = PostmarkProvider::new(&config(&f.url)).unwrap();
        let mut m = message(
            Channel::Email,
            "alice@example.com",
            "Your code is 123456.",
            "en",
        );
        m.subject = Some("Your Acme code".into());
        assert_eq!(
            p.send(&m).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("b7bc2f4a-e38e-4336-af7d-e6c392c2f817".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/email");
        assert_eq!(seen.header("x-postmark-server-token"), TOKEN);
        assert_eq!(seen.header("accept"), "application/json");
        assert_eq!(
            seen.json(),
            json!({"From": "Acme <no-reply@acme.example>", "To": "alice@example.com",
                   "Subject": "Your Acme code", "TextBody": "Your code is 123456.",
                   "MessageStream": "outbound", "Metadata": {"otpd_message_id": "dlv_1"}})
        );
        for (http, transient) in [
            (401, false),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(http, json!({"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive."}));
            let err = p.send(&m).await.unwrap_err();
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
        let mut c = config("http://x");
        c.api_key = None;
        assert!(
            PostmarkProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs api_key")
        );
        let mut c = config("http://x");
        c.from = None;
        assert!(
            PostmarkProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs from")
        );
    }

    #[test]
    fn webhooks_are_believed_with_the_basic_password() {
        let p = PostmarkProvider::new(&config("http://x")).unwrap();
        let mut h = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("postmark:hook-pass");
        h.insert("authorization", format!("Basic {basic}").parse().unwrap());
        let parse = |h: &HeaderMap, body: &serde_json::Value| {
            let body = body.to_string();
            p.parse_receipt(&ReceiptRequest {
                headers: h,
                query: "",
                body: body.as_bytes(),
                now: chrono::Utc::now(),
            })
            .unwrap()
        };
        // Postmark's Delivery and Bounce webhook examples.
        let delivery = json!({"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
            "MessageID": "00000000-0000-0000-0000-000000000000", "Recipient": "john@example.com",
            "Tag": "welcome-email", "DeliveredAt": "2026-12-07T04:20:00Z", "Details": "Test delivery webhook details",
            "Metadata": {"otpd_message_id": "dlv_1"}});
        assert_eq!(
            parse(&h, &delivery).unwrap().status,
            ReceiptStatus::Delivered
        );
        let bounce = json!({"RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce",
            "MessageID": "00000000-0000-0000-0000-000000000001", "Description": "The server was unable to deliver your message",
            "Email": "john@example.com", "BouncedAt": "2026-12-07T04:20:00Z", "Inactive": true});
        let r = parse(&h, &bounce).unwrap();
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.error.as_deref(), Some("Postmark Bounce HardBounce"));
        assert_eq!(
            parse(&h, &json!({"RecordType": "Open", "MessageID": "x"}))
                .unwrap()
                .status,
            ReceiptStatus::Pending
        );
        assert_eq!(
            parse(&HeaderMap::new(), &delivery),
            Err(ReceiptError::Forged)
        );
    }
}
