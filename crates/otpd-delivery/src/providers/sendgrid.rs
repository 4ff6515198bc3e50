//! The `sendgrid` provider: email through SendGrid's v3 Mail Send API, and its Event
//! Webhook (delivered, bounce, dropped) checked with its ECDSA signature, so that an email
//! that bounces fails over like an SMS that fails.
//!
//! **Send** (<https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>):
//! `POST {url}/v3/mail/send` (default `https://api.sendgrid.com`), `Authorization: Bearer
//! <api_key>`, JSON `{"personalizations": [{"to": [{"email"}]}], "from": {"email",
//! "name"?}, "subject", "content": [{"type": "text/plain", "value"}, {"type": "text/html",
//! "value"}?], "custom_args": {"otpd_message_id": "dlv_…"}}` (as the official SDK's `Mail`
//! builds it; the `custom_args` come back in every event, so events name otpd's message). A 2xx (202) is accepted, named
//! by its `X-Message-Id`; 429 and 5xx (and no answer) are transient; other statuses (400
//! invalid request, 401/403 bad key or unverified sender, 413) permanent.
//!
//! **Events** (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event>):
//! a JSON array of events (`event`: `processed`, `deferred`, `delivered`, `bounce`,
//! `dropped`, `open`, …) with the custom arg `otpd_message_id`. `delivered` is delivered;
//! `bounce` and `dropped` failed; the rest intermediate. Believed only when signed: the
//! signed Event Webhook's `X-Twilio-Email-Event-Webhook-Signature` is a base64 DER ECDSA
//! P-256 / SHA-256 signature of `X-Twilio-Email-Event-Webhook-Timestamp` followed by the
//! raw body, checked with `public_key` (the verification key of the settings page: base64
//! of the key's DER SubjectPublicKeyInfo), as the official SDK's
//! `EventWebhook.verify_signature` does. Without a key, events need the `receipt_token`
//! in the webhook URL.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{callback, credential_header, http_client, json_str, transport_error};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// SendGrid's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";
/// The custom arg naming otpd's message in events.
pub const MESSAGE_ID_ARG: &str = "otpd_message_id";

/// Sends email through SendGrid.
pub struct SendgridProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    from: serde_json::Value,
    /// The uncompressed P-256 point of the Event Webhook's verification key.
    public_key: Option<Vec<u8>>,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

/// `"Name <addr@host>"` or `"addr@host"` as SendGrid's `{"email", "name"?}`.
pub fn address(from: &str) -> serde_json::Value {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(l), Some(r)) if l < r => {
            let name = from[..l].trim().trim_matches('"').trim();
            let email = from[l + 1..r].trim();
            if name.is_empty() {
                serde_json::json!({"email": email})
            } else {
                serde_json::json!({"email": email, "name": name})
            }
        }
        _ => serde_json::json!({"email": from.trim()}),
    }
}

impl SendgridProvider {
    /// From its config entry: `api_key` and `from` (a verified sender) are required;
    /// `public_key` (or `receipt_token`) authenticates events.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind sendgrid needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Email) {
            return Err(format!(
                "provider '{name}': kind sendgrid serves only channel \"email\""
            ));
        }
        let key = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key"))?;
        let from = config.from.as_deref().ok_or_else(|| {
            need("from (a verified sender, e.g. \"Acme <no-reply@acme.example>\")")
        })?;
        let public_key = match &config.public_key {
            Some(k) => Some(p256_point(k).ok_or_else(|| {
                format!("provider '{name}': public_key is not SendGrid's verification key (base64 of an ECDSA P-256 public key)")
            })?),
            None => None,
        };
        let headers = credential_header(config, "authorization", &format!("Bearer {key}"))?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(SendgridProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/v3/mail/send", base.trim_end_matches('/')),
            from: address(from),
            public_key,
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }
}

/// The uncompressed point of a base64 DER SubjectPublicKeyInfo of a P-256 key.
fn p256_point(base64_der: &str) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let der = STANDARD.decode(base64_der.trim()).ok()?;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).ok()?;
    let point = spki.subject_public_key.data.to_vec();
    (point.len() == 65 && point[0] == 4).then_some(point)
}

#[async_trait]
impl Provider for SendgridProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut content = vec![serde_json::json!({"type": "text/plain", "value": m.body.as_str()})];
        if let Some(html) = &m.html {
            content.push(serde_json::json!({"type": "text/html", "value": html.as_str()}));
        }
        let body = serde_json::json!({
            "personalizations": [{"to": [{"email": m.to}]}],
            "from": self.from,
            "subject": m.subject.as_deref().unwrap_or("Your verification code"),
            "content": content,
            "custom_args": {MESSAGE_ID_ARG: m.message_id},
        });
        let reply = self
            .client
            .post(&self.endpoint)
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = reply.status();
        let id = reply
            .headers()
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            let json: Option<serde_json::Value> = reply.json().await.ok();
            let detail = json_str(json.as_ref(), "/errors/0/field")
                .map(|f| format!(" ({})", f.chars().take(40).collect::<String>()))
                .unwrap_or_default();
            return Err(super::status_error("SendGrid", status, &detail));
        }
        Ok(Accepted::Queued {
            provider_message_id: id,
        })
    }

    fn parse_receipt_batch(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        Some(
            self.authenticate(request)
                .and_then(|()| events(request.body)),
        )
    }
}

impl SendgridProvider {
    /// The Event Webhook's ECDSA signature, or (without a key) the receipt token.
    fn authenticate(&self, request: &ReceiptRequest<'_>) -> Result<(), ReceiptError> {
        let Some(key) = &self.public_key else {
            return callback::check_token(self.receipt_token.as_ref(), request);
        };
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ReceiptError::Forged)
        };
        let signature = STANDARD
            .decode(header("x-twilio-email-event-webhook-signature")?.trim())
            .map_err(|_| ReceiptError::Forged)?;
        let timestamp = header("x-twilio-email-event-webhook-timestamp")?;
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(request.body);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
            .verify(&signed, &signature)
            .map_err(|_| ReceiptError::Forged)
    }
}

/// The events of an Event Webhook post that name an otpd message.
fn events(body: &[u8]) -> Result<Vec<ParsedReceipt>, ReceiptError> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|_| ReceiptError::Malformed("the body is not a JSON array of events".into()))?;
    Ok(events
        .iter()
        .filter_map(|e| {
            let id = json_str(Some(e), &format!("/{MESSAGE_ID_ARG}"))?;
            let kind = json_str(Some(e), "/event").unwrap_or_default();
            let status = match kind.as_str() {
                "delivered" => ReceiptStatus::Delivered,
                "bounce" | "dropped" => ReceiptStatus::Failed,
                _ => ReceiptStatus::Pending,
            };
            let reason = json_str(Some(e), "/type")
                .or_else(|| json_str(Some(e), "/reason"))
                .unwrap_or_default();
            Some(ParsedReceipt {
                message_id: id,
                status,
                error: (status == ReceiptStatus::Failed).then(|| {
                    format!(
                        "SendGrid {kind} {}",
                        reason.chars().take(60).collect::<String>()
                    )
                    .trim_end()
                    .to_string()
                }),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    const KEY: &str = "SG.e2e-key.0123456789";
    /// The public half of testdata/sendgrid-test-key.pem (base64 DER SPKI).
    const PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMT2WAKSMhu5vRXodDzh/G4xCn3qOnLxgl1tIQwADyIZehDuvPhUxgCW0+OiUvfex8YgIjBZl4AWp0ashwVpwGw==";
    const PRIVATE: &str = include_str!("../../testdata/sendgrid-test-key.pem");

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "sg".into(),
            kind: "sendgrid".into(),
            url: Some(url.into()),
            channels: vec![Channel::Email],
            timeout_ms: 2000,
            api_key: Some(KEY.into()),
            from: Some("Acme Login <no-reply@acme.example>".into()),
            public_key: Some(PUBLIC.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn posts_the_documented_mail_send() {
        let f = FakeApi::start(202, json!(null)).await;
        let p = SendgridProvider::new(&config(&f.url)).unwrap();
        let mut m = message(
            Channel::Email,
            "alice@example.com",
            "Your code is 123456.",
            "en",
        );
        m.subject = Some("Your Acme code".into());
        m.html = Some(zeroize::Zeroizing::new("<p>123456</p>".into()));
        p.send(&m).await.unwrap();
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/v3/mail/send");
        assert_eq!(seen.header("authorization"), format!("Bearer {KEY}"));
        assert_eq!(
            seen.json(),
            json!({"personalizations": [{"to": [{"email": "alice@example.com"}]}],
                   "custom_args": {"otpd_message_id": "dlv_1"},
                   "from": {"email": "no-reply@acme.example", "name": "Acme Login"},
                   "subject": "Your Acme code",
                   "content": [{"type": "text/plain", "value": "Your code is 123456."},
                               {"type": "text/html", "value": "<p>123456</p>"}]})
        );
        for (http, transient) in [
            (400, false),
            (401, false),
            (403, false),
            (413, false),
            (429, true),
            (500, true),
        ] {
            f.reply(
                http,
                json!({"errors": [{"message": "x", "field": "from.email"}]}),
            );
            let err = p.send(&m).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains(KEY));
        }
        assert_eq!(
            address("no-reply@acme.example"),
            json!({"email": "no-reply@acme.example"})
        );
    }

    #[test]
    fn config_check_names_each_missing_key() {
        let mut c = config("http://x");
        c.api_key = None;
        assert!(
            SendgridProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs api_key")
        );
        let mut c = config("http://x");
        c.from = None;
        assert!(
            SendgridProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs from")
        );
        let mut c = config("http://x");
        c.public_key = Some("bm90IGEga2V5".into());
        assert!(
            SendgridProvider::new(&c)
                .err()
                .unwrap()
                .contains("public_key")
        );
    }

    /// Signs as SendGrid does: ECDSA P-256 / SHA-256 over timestamp + body, DER, base64.
    fn sign(timestamp: &str, body: &str) -> String {
        let b64: String = PRIVATE
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(b64).unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let sig = pair
            .sign(
                &ring::rand::SystemRandom::new(),
                format!("{timestamp}{body}").as_bytes(),
            )
            .unwrap();
        STANDARD.encode(sig.as_ref())
    }

    fn parse(
        p: &SendgridProvider,
        h: &HeaderMap,
        body: &str,
    ) -> Result<Vec<ParsedReceipt>, ReceiptError> {
        p.parse_receipt_batch(&ReceiptRequest {
            headers: h,
            query: "",
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        })
        .unwrap()
    }

    #[test]
    fn signed_events_are_receipts_and_forged_ones_are_not() {
        let p = SendgridProvider::new(&config("http://x")).unwrap();
        // Shapes of SendGrid's Event Webhook reference.
        let body = json!([
            {"email": "alice@example.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
             "event": "processed", "category": "cat facts", "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A==",
             "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000", "otpd_message_id": "dlv_1"},
            {"email": "alice@example.com", "timestamp": 1513299570, "event": "delivered", "response": "250 OK",
             "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001", "otpd_message_id": "dlv_1"},
            {"email": "bob@example.com", "timestamp": 1513299571, "event": "bounce", "type": "bounce",
             "reason": "500 unknown recipient", "status": "5.0.0", "otpd_message_id": "dlv_2"},
            {"email": "carol@example.com", "timestamp": 1513299572, "event": "dropped", "reason": "Bounced Address", "otpd_message_id": "dlv_3"},
            {"email": "someone@example.com", "timestamp": 1513299573, "event": "delivered"}])
        .to_string();
        let mut h = HeaderMap::new();
        h.insert(
            "x-twilio-email-event-webhook-timestamp",
            "1600112502".parse().unwrap(),
        );
        h.insert(
            "x-twilio-email-event-webhook-signature",
            sign("1600112502", &body).parse().unwrap(),
        );
        let got = parse(&p, &h, &body).unwrap();
        assert_eq!(
            got.iter()
                .map(|r| (r.message_id.as_str(), r.status))
                .collect::<Vec<_>>(),
            [
                ("dlv_1", ReceiptStatus::Pending),
                ("dlv_1", ReceiptStatus::Delivered),
                ("dlv_2", ReceiptStatus::Failed),
                ("dlv_3", ReceiptStatus::Failed)
            ]
        );
        assert_eq!(got[2].error.as_deref(), Some("SendGrid bounce bounce"));
        assert_eq!(
            parse(&p, &h, &body.replace("delivered", "deferred")),
            Err(ReceiptError::Forged)
        );
        let mut later = h.clone();
        later.insert(
            "x-twilio-email-event-webhook-timestamp",
            "1600112503".parse().unwrap(),
        );
        assert_eq!(parse(&p, &later, &body), Err(ReceiptError::Forged));
        assert_eq!(
            parse(&p, &HeaderMap::new(), &body),
            Err(ReceiptError::Forged)
        );
    }
}
