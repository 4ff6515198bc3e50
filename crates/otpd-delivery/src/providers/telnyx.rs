//! The `telnyx` provider: SMS through Telnyx's Messaging API v2, and its delivery webhooks
//! checked with their Ed25519 signatures.
//!
//! **Send** (<https://developers.telnyx.com/api-reference/messages/send-a-message>, and the
//! official `telnyx` Python SDK's `messages.send`): `POST {url}/v2/messages` (default
//! `https://api.telnyx.com`), `Authorization: Bearer <api_key>`, JSON `{"from", "to":
//! "+…", "text", "messaging_profile_id"?, "webhook_url"?}` (`from` may be left out when
//! the messaging profile picks the sender), with `Idempotency-Key: <otpd's message id>` so
//! that a retry after a timeout is not sent twice. A 2xx `{"data": {"id"}}` is accepted; 429 and
//! 5xx (and no answer) are transient; other statuses (400, 401, 403, 404, 422 with
//! `{"errors": [{"code", "title"}]}`, e.g. 40300 blocked, 40310 invalid `to`) permanent.
//!
//! **Webhooks** (<https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks>):
//! JSON `{"data": {"event_type", "payload": {"id", "to": [{"status"}], "errors"}}}`,
//! signed with Telnyx's Ed25519 key: `telnyx-signature-ed25519` is the base64 signature
//! of `"{telnyx-timestamp}|{raw body}"`, checked with `public_key` (base64, from the
//! Mission Control portal) as the SDK's `verify_webhook_signature` does, and refused when
//! the timestamp is more than 300 s away from now. `message.finalized` with `delivered`
//! is delivered; with `delivery_failed` or `sending_failed` failed; other statuses
//! (`delivery_unconfirmed`: the carrier sends no receipts) and events (`message.sent`)
//! say nothing.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::channel::Channel;
use secrecy::ExposeSecret;

use super::{ApiReply, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// Telnyx's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com";
/// Most seconds between a webhook's timestamp and its arrival (the SDK's tolerance).
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

/// Sends SMS through Telnyx.
pub struct TelnyxProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    from: Option<String>,
    messaging_profile_id: Option<String>,
    webhook_url: Option<String>,
    /// The Ed25519 public key of webhooks.
    public_key: Option<[u8; 32]>,
    client: reqwest::Client,
}

impl TelnyxProvider {
    /// From its config entry: `api_key` and `from` or `messaging_profile_id` are required;
    /// `public_key` enables receipts.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind telnyx needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind telnyx serves only channel \"sms\""
            ));
        }
        let key = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key (an API v2 key)"))?;
        if config.from.is_none() && config.messaging_profile_id.is_none() {
            return Err(need(
                "from (a Telnyx number or sender id) or messaging_profile_id",
            ));
        }
        let public_key = match &config.public_key {
            Some(k) => Some(
                STANDARD
                    .decode(k.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        format!("provider '{name}': public_key is not a base64 Ed25519 public key (32 bytes)")
                    })?,
            ),
            None => None,
        };
        let headers = credential_header(config, "authorization", &format!("Bearer {key}"))?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(TelnyxProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/v2/messages", base.trim_end_matches('/')),
            from: config.from.clone(),
            messaging_profile_id: config.messaging_profile_id.clone(),
            webhook_url: config.status_callback_url.clone(),
            public_key,
            client: http_client(config, headers)?,
        })
    }
}

#[async_trait]
impl Provider for TelnyxProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut body = serde_json::json!({"to": m.to, "text": m.body.as_str()});
        if let Some(from) = &self.from {
            body["from"] = from.as_str().into();
        }
        if let Some(profile) = &self.messaging_profile_id {
            body["messaging_profile_id"] = profile.as_str().into();
        }
        if let Some(url) = &self.webhook_url {
            body["webhook_url"] = url.as_str().into();
        }
        // A retry after a timeout is not sent twice.
        let request = self
            .client
            .post(&self.endpoint)
            .header("idempotency-key", &m.message_id)
            .json(&body);
        let reply = ApiReply::fetch(request).await?;
        if !reply.status.is_success() {
            let detail = json_str(reply.json.as_ref(), "/errors/0/code")
                .map(|c| format!(" code {}", c.chars().take(12).collect::<String>()))
                .unwrap_or_default();
            return Err(super::status_error("Telnyx", reply.status, &detail));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/data/id"),
        })
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            self.verify(request)
                .and_then(|()| webhook_receipt(request.body)),
        )
    }
}

impl TelnyxProvider {
    /// Checks a webhook's Ed25519 signature and timestamp.
    fn verify(&self, request: &ReceiptRequest<'_>) -> Result<(), ReceiptError> {
        let key = self.public_key.as_ref().ok_or(ReceiptError::Forged)?;
        verify_signature(key, request)
    }
}

/// Checks `telnyx-signature-ed25519` over `"{telnyx-timestamp}|{body}"` with `key`, and
/// the timestamp against the request's arrival.
pub fn verify_signature(key: &[u8; 32], request: &ReceiptRequest<'_>) -> Result<(), ReceiptError> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(ReceiptError::Forged)
    };
    let signature = STANDARD
        .decode(header("telnyx-signature-ed25519")?.trim())
        .map_err(|_| ReceiptError::Forged)?;
    let timestamp = header("telnyx-timestamp")?;
    let at: i64 = timestamp.trim().parse().map_err(|_| ReceiptError::Forged)?;
    if (request.now.timestamp() - at).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return Err(ReceiptError::Forged);
    }
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + request.body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'|');
    signed.extend_from_slice(request.body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(&signed, &signature)
        .map_err(|_| ReceiptError::Forged)
}

/// A messaging webhook's outcome for its message.
fn webhook_receipt(body: &[u8]) -> Result<ParsedReceipt, ReceiptError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ReceiptError::Malformed("the body is not JSON".into()))?;
    let data = json
        .get("data")
        .ok_or_else(|| ReceiptError::Malformed("no data".into()))?;
    let id = json_str(Some(data), "/payload/id")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ReceiptError::Malformed("no data.payload.id".into()))?;
    let event = json_str(Some(data), "/event_type").unwrap_or_default();
    let raw = json_str(Some(data), "/payload/to/0/status").unwrap_or_default();
    let status = match (event.as_str(), raw.as_str()) {
        ("message.finalized", "delivered") => ReceiptStatus::Delivered,
        ("message.finalized", "delivery_failed" | "sending_failed") => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    let code = json_str(Some(data), "/payload/errors/0/code").unwrap_or_default();
    Ok(ParsedReceipt {
        message_id: id,
        status,
        error: (status == ReceiptStatus::Failed).then(|| {
            format!("Telnyx {raw} {}", code.chars().take(12).collect::<String>())
                .trim_end()
                .to_string()
        }),
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    const KEY: &str = "KEY0123456789ABCDEF_e2e";

    /// An Ed25519 key pair made from a fixed seed (RFC 8032, test 1's secret key).
    fn key_pair() -> ring::signature::Ed25519KeyPair {
        let seed: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
                        [i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap()
    }

    fn config(url: &str) -> ProviderConfig {
        use ring::signature::KeyPair;
        ProviderConfig {
            name: "telnyx".into(),
            kind: "telnyx".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some(KEY.into()),
            from: Some("+18445550001".into()),
            messaging_profile_id: Some("40017f8e-49bd-4f16-9e3d-ef103f916228".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/telnyx".into()),
            public_key: Some(STANDARD.encode(key_pair().public_key().as_ref())),
            ..Default::default()
        }
    }

    #[test]
    fn the_test_key_is_rfc_8032s() {
        use ring::signature::KeyPair;
        // RFC 8032, 7.1, TEST 1: the public key of that secret key.
        let hex: String = key_pair()
            .public_key()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_the_bearer_key() {
        let f = FakeApi::start(200, json!({"data": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "record_type": "message"}})).await;
        let p = TelnyxProvider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+18445550100", "Your code is 123456.", "en");
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("40385f64-5717-4562-b3fc-2c963f66afa6".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/v2/messages");
        assert_eq!(seen.header("authorization"), format!("Bearer {KEY}"));
        assert_eq!(seen.header("idempotency-key"), "dlv_1");
        assert_eq!(
            seen.json(),
            json!({"from": "+18445550001", "to": "+18445550100", "text": "Your code is 123456.",
                   "messaging_profile_id": "40017f8e-49bd-4f16-9e3d-ef103f916228",
                   "webhook_url": "https://otp.example.com/v1/receipts/telnyx"})
        );
        for (http, transient) in [
            (400, false),
            (401, false),
            (403, false),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(
                http,
                json!({"errors": [{"code": "40310", "title": "Invalid 'to' address"}]}),
            );
            let err = p.send(&sms).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(err.to_string().contains("40310"));
            assert!(!err.to_string().contains(KEY));
        }
    }

    #[test]
    fn config_check_names_each_missing_key() {
        let mut c = config("http://x");
        c.api_key = None;
        assert!(
            TelnyxProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs api_key")
        );
        let mut c = config("http://x");
        c.from = None;
        c.messaging_profile_id = None;
        assert!(
            TelnyxProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs from")
        );
        let mut c = config("http://x");
        c.public_key = Some("bm90IGEga2V5".into());
        assert!(
            TelnyxProvider::new(&c)
                .err()
                .unwrap()
                .contains("public_key")
        );
    }

    fn webhook(event: &str, status: &str) -> String {
        // The shape of Telnyx's "message.finalized" example.
        json!({"data": {"event_type": event, "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
            "occurred_at": "2026-12-07T04:20:00.000+00:00", "record_type": "event",
            "payload": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "direction": "outbound",
                "type": "SMS", "to": [{"phone_number": "+18445550100", "status": status}],
                "errors": if status == "delivered" { json!([]) } else { json!([{"code": "40008", "title": "Undeliverable"}]) }}},
            "meta": {"attempt": 1, "delivered_to": "https://otp.example.com/v1/receipts/telnyx"}})
        .to_string()
    }

    fn signed(body: &str, at: i64) -> HeaderMap {
        let sig = key_pair().sign(format!("{at}|{body}").as_bytes());
        let mut h = HeaderMap::new();
        h.insert(
            "telnyx-signature-ed25519",
            STANDARD.encode(sig.as_ref()).parse().unwrap(),
        );
        h.insert("telnyx-timestamp", at.to_string().parse().unwrap());
        h
    }

    fn parse(p: &TelnyxProvider, h: &HeaderMap, body: &str) -> Result<ParsedReceipt, ReceiptError> {
        p.parse_receipt(&ReceiptRequest {
            headers: h,
            query: "",
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        })
        .unwrap()
    }

    #[test]
    fn signed_webhooks_are_receipts_and_nothing_else_is() {
        let p = TelnyxProvider::new(&config("http://x")).unwrap();
        let now = chrono::Utc::now().timestamp();
        for (event, status, outcome) in [
            ("message.finalized", "delivered", ReceiptStatus::Delivered),
            (
                "message.finalized",
                "delivery_failed",
                ReceiptStatus::Failed,
            ),
            ("message.finalized", "sending_failed", ReceiptStatus::Failed),
            (
                "message.finalized",
                "delivery_unconfirmed",
                ReceiptStatus::Pending,
            ),
            ("message.sent", "sent", ReceiptStatus::Pending),
        ] {
            let body = webhook(event, status);
            let r = parse(&p, &signed(&body, now), &body).unwrap();
            assert_eq!(r.status, outcome, "{event} {status}");
            assert_eq!(r.message_id, "40385f64-5717-4562-b3fc-2c963f66afa6");
        }
        let body = webhook("message.finalized", "delivery_failed");
        assert_eq!(
            parse(&p, &signed(&body, now), &body)
                .unwrap()
                .error
                .as_deref(),
            Some("Telnyx delivery_failed 40008")
        );
        let good = webhook("message.finalized", "delivered");
        let h = signed(&good, now);
        assert_eq!(
            parse(&p, &h, &good.replace("delivered\"", "delivered \"")),
            Err(ReceiptError::Forged),
            "tampered"
        );
        assert_eq!(
            parse(&p, &signed(&good, now - 301), &good),
            Err(ReceiptError::Forged),
            "too old"
        );
        assert_eq!(
            parse(&p, &HeaderMap::new(), &good),
            Err(ReceiptError::Forged),
            "unsigned"
        );
        let mut c = config("http://x");
        c.public_key = None;
        let keyless = TelnyxProvider::new(&c).unwrap();
        assert_eq!(
            parse(&keyless, &h, &good),
            Err(ReceiptError::Forged),
            "no key configured"
        );
    }
}
