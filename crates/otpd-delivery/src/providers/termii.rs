//! The `termii` provider: SMS and voice OTP calls in Nigeria and Africa through Termii,
//! and its delivery-report events checked with `X-Termii-Signature`.
//!
//! Built from Termii's developer documentation: "Messaging API"
//! (<https://developers.termii.com/messaging-api>), "Voice Call"
//! (<https://developers.termii.com/voice-call>) and "Events and Reports"
//! (<https://developer.termii.com/events-and-reports>); Termii publishes no official SDK
//! on PyPI or npm.
//!
//! - SMS: `POST {url}/api/sms/send` (default `https://api.ng.termii.com`; each account has
//!   its own base URL in the dashboard), JSON `{"api_key", "to": "<digits>", "from", "sms",
//!   "type": "plain", "channel": route}` with route `dnd` (default: Termii's transactional
//!   route, the one it requires for OTPs; `generic` is promotional and blocked for DND
//!   numbers and at night on MTN) or `generic`.
//! - Voice: `POST {url}/api/sms/otp/call`, JSON `{"api_key", "phone_number": "<digits>",
//!   "code"}`: Termii's voice channel reads the code (4 to 8 digits; the code is sent as a
//!   string of digits so that a leading zero survives). A code Termii cannot read (not 4–8
//!   digits) is a permanent error, so the route moves on.
//!
//! A 2xx reply with a `message_id` (or `message_id_str`) is accepted; 429 and 5xx (and no
//! answer) are transient; other statuses (400 invalid sender or number, 401 bad key, 404)
//! permanent.
//!
//! Events: Termii posts delivery reports (`{"type": "outbound", "message_id", "status",
//! …}`) to the webhook URL set in its console, signed with `X-Termii-Signature`: the
//! HMAC-SHA512 of the body under the account's secret key (`signature_secret`; hex, or
//! base64). `Delivered` (or `DELIVERED | Message delivered to handset`) is delivered;
//! `Message Failed`, `Rejected`, `Expired` and `DND Active on Phone Number` failed;
//! `Message Sent` and others intermediate. Without a secret, reports need the
//! `receipt_token` in the webhook URL.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha512;
use subtle::ConstantTimeEq;

use super::{ApiReply, callback, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// Termii's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.ng.termii.com";

/// Sends SMS and voice OTP calls through Termii.
pub struct TermiiProvider {
    name: String,
    channels: Vec<Channel>,
    base: String,
    api_key: SecretString,
    from: String,
    route: String,
    secret: Option<SecretString>,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl TermiiProvider {
    /// From its config entry: `api_key` and (for SMS) `from` are required; `route` is
    /// `dnd` (default) or `generic`.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind termii needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Voice))
        {
            return Err(format!(
                "provider '{name}': kind termii serves only channels \"sms\" and \"voice\""
            ));
        }
        let api_key = config
            .api_secret
            .clone()
            .or_else(|| config.api_key.clone().map(SecretString::from))
            .ok_or_else(|| need("api_key"))?;
        let from = match (&config.from, config.channels.contains(&Channel::Sms)) {
            (Some(f), _) => f.clone(),
            (None, false) => String::new(),
            (None, true) => {
                return Err(need(
                    "from (a sender id registered with Termii, 3 to 11 characters)",
                ));
            }
        };
        let route = config.route.clone().unwrap_or_else(|| "dnd".into());
        if !matches!(route.as_str(), "dnd" | "generic") {
            return Err(format!(
                "provider '{name}': route must be \"dnd\" (transactional) or \"generic\""
            ));
        }
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(TermiiProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            base: base.trim_end_matches('/').to_string(),
            api_key,
            from,
            route,
            secret: config.signature_secret.clone(),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, reqwest::header::HeaderMap::new())?,
        })
    }
}

#[async_trait]
impl Provider for TermiiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let to = m.to.trim_start_matches('+');
        let (path, body) = if m.channel == Channel::Voice {
            let code = m.code.as_str();
            if !(4..=8).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ProviderError::Permanent(
                    "Termii voice reads only codes of 4 to 8 digits".into(),
                ));
            }
            (
                "/api/sms/otp/call",
                serde_json::json!({
                    "api_key": self.api_key.expose_secret(),
                    "phone_number": to,
                    "code": code,
                }),
            )
        } else {
            (
                "/api/sms/send",
                serde_json::json!({
                    "api_key": self.api_key.expose_secret(),
                    "to": to,
                    "from": self.from,
                    "sms": m.body.as_str(),
                    "type": "plain",
                    "channel": self.route,
                }),
            )
        };
        let url = format!("{}{path}", self.base);
        let reply = ApiReply::fetch(self.client.post(&url).json(&body)).await?;
        if !reply.status.is_success() {
            return Err(super::status_error("Termii", reply.status, ""));
        }
        let id = json_str(reply.json.as_ref(), "/message_id_str")
            .or_else(|| json_str(reply.json.as_ref(), "/message_id"))
            .or_else(|| {
                reply
                    .json
                    .as_ref()
                    .and_then(|j| j.get("message_id"))
                    .filter(|v| v.is_number())
                    .map(|v| v.to_string())
            });
        if id.is_none() {
            return Err(ProviderError::Permanent(
                "Termii did not accept the message".into(),
            ));
        }
        Ok(Accepted::Queued {
            provider_message_id: id,
        })
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            self.authenticate(request)
                .and_then(|()| event(request.body)),
        )
    }
}

impl TermiiProvider {
    /// `X-Termii-Signature` under the secret key, or (without one) the receipt token.
    fn authenticate(&self, request: &ReceiptRequest<'_>) -> Result<(), ReceiptError> {
        let Some(secret) = &self.secret else {
            return callback::check_token(self.receipt_token.as_ref(), request);
        };
        let given = request
            .headers
            .get("x-termii-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(ReceiptError::Forged)?
            .trim();
        let mac = signature(secret.expose_secret(), request.body).ok_or(ReceiptError::Forged)?;
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        let ok = bool::from(given.to_ascii_lowercase().as_bytes().ct_eq(hex.as_bytes()))
            || bool::from(given.as_bytes().ct_eq(STANDARD.encode(&mac).as_bytes()));
        if ok {
            Ok(())
        } else {
            Err(ReceiptError::Forged)
        }
    }
}

/// HMAC-SHA512 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(body);
    Some(mac.finalize().into_bytes().to_vec())
}

/// A delivery-report event's outcome.
fn event(body: &[u8]) -> Result<ParsedReceipt, ReceiptError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ReceiptError::Malformed("the body is not JSON".into()))?;
    let id = json_str(Some(&json), "/message_id")
        .or_else(|| {
            json.get("message_id")
                .filter(|v| v.is_number())
                .map(|v| v.to_string())
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ReceiptError::Malformed("no message_id".into()))?;
    let raw = json_str(Some(&json), "/status").unwrap_or_default();
    let lower = raw.to_ascii_lowercase();
    let status = if lower.starts_with("delivered") {
        ReceiptStatus::Delivered
    } else if lower.contains("failed")
        || lower.starts_with("rejected")
        || lower.starts_with("expired")
        || lower.starts_with("dnd active")
    {
        ReceiptStatus::Failed
    } else {
        ReceiptStatus::Pending
    };
    Ok(ParsedReceipt {
        message_id: id,
        status,
        error: (status == ReceiptStatus::Failed)
            .then(|| format!("Termii {}", raw.chars().take(60).collect::<String>())),
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    const KEY: &str = "TLe2eTermiiApiKey0123456789";
    const SECRET: &str = "termii-secret-key";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "termii".into(),
            kind: "termii".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms, Channel::Voice],
            timeout_ms: 2000,
            api_key: Some(KEY.into()),
            from: Some("Acme".into()),
            signature_secret: Some(SECRET.to_string().into()),
            ..Default::default()
        }
    }

    fn sent() -> serde_json::Value {
        // Termii's sample response.
        json!({"code": "ok", "message_id": "9122821270554876574", "message_id_str": "9122821270554876574",
               "message": "Successfully Sent", "balance": 9, "user": "Peter Mcleish"})
    }

    #[tokio::test]
    async fn an_sms_is_the_documented_request_on_the_dnd_route() {
        let f = FakeApi::start(200, sent()).await;
        let p = TermiiProvider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+2347880234567", "Your code is 123456.", "en");
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("9122821270554876574".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/api/sms/send");
        assert_eq!(
            seen.json(),
            json!({"api_key": KEY, "to": "2347880234567", "from": "Acme", "sms": "Your code is 123456.",
                   "type": "plain", "channel": "dnd"})
        );
        // A numeric message_id too large for a double is read exactly.
        f.reply(200, json!({"code": "ok", "message_id": 9122821270554876574_u64, "message": "Successfully Sent"}));
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("9122821270554876574".into())
            }
        );
    }

    #[tokio::test]
    async fn a_call_reads_the_code_with_the_voice_call_api() {
        let f = FakeApi::start(200, json!({"code": "ok", "message_id": "453166532802459832",
            "pinId": "29ae67c2-c8e1-4165-8a51-8d3d7c298081", "message": "Successfully Sent", "balance": 77.5, "user": "Termii Test"})).await;
        let p = TermiiProvider::new(&config(&f.url)).unwrap();
        let mut call = message(Channel::Voice, "+2349800000000", "ignored", "en");
        call.code = zeroize::Zeroizing::new("012345".into());
        p.send(&call).await.unwrap();
        let seen = f.last();
        assert_eq!(seen.path, "/api/sms/otp/call");
        assert_eq!(
            seen.json(),
            json!({"api_key": KEY, "phone_number": "2349800000000", "code": "012345"})
        );
        call.code = zeroize::Zeroizing::new("A1B2C3".into());
        assert!(matches!(
            p.send(&call).await,
            Err(ProviderError::Permanent(_))
        ));
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let f = FakeApi::start(200, sent()).await;
        let p = TermiiProvider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+2347880234567", "x", "en");
        for (http, transient) in [
            (400, false),
            (401, false),
            (404, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(http, json!({"message": "Invalid Sender Id"}));
            let err = p.send(&sms).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains(KEY));
        }
        f.reply(200, json!({"message": "Insufficient balance"}));
        assert!(matches!(
            p.send(&sms).await,
            Err(ProviderError::Permanent(_))
        ));
    }

    #[test]
    fn config_check_names_each_missing_key() {
        let mut c = config("http://x");
        c.api_key = None;
        assert!(
            TermiiProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs api_key")
        );
        let mut c = config("http://x");
        c.from = None;
        assert!(
            TermiiProvider::new(&c)
                .err()
                .unwrap()
                .contains("needs from")
        );
        c.channels = vec![Channel::Voice];
        assert!(TermiiProvider::new(&c).is_ok(), "voice needs no sender id");
        let mut c = config("http://x");
        c.route = Some("whatsapp".into());
        assert!(TermiiProvider::new(&c).err().unwrap().contains("route"));
    }

    fn report(status: &str) -> String {
        // Termii's "Webhook Notification Data" sample.
        json!({"type": "outbound", "id": "7f5d0d43-5f5c-4a4c-92b1-94f5f1b0f3e6", "message_id": "5964465985113503103",
               "receiver": "2343459509389", "sender": "N-Alert", "message": "Your code is 234153.",
               "sent_at": "2020-12-16 11:34:36", "cost": "3.9", "status": status, "channel": "dnd"})
        .to_string()
    }

    fn parse(
        p: &TermiiProvider,
        sig: Option<String>,
        body: &str,
    ) -> Result<ParsedReceipt, ReceiptError> {
        let mut h = HeaderMap::new();
        if let Some(s) = sig {
            h.insert("x-termii-signature", s.parse().unwrap());
        }
        p.parse_receipt(&ReceiptRequest {
            headers: &h,
            query: "",
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        })
        .unwrap()
    }

    fn hex_sig(secret: &str, body: &str) -> String {
        signature(secret, body.as_bytes())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn signed_events_are_receipts_and_forged_ones_are_not() {
        let p = TermiiProvider::new(&config("http://x")).unwrap();
        for (status, outcome) in [
            ("Delivered", ReceiptStatus::Delivered),
            (
                "DELIVERED | Message delivered to handset",
                ReceiptStatus::Delivered,
            ),
            ("Message Failed", ReceiptStatus::Failed),
            ("DND Active on Phone Number", ReceiptStatus::Failed),
            ("Rejected", ReceiptStatus::Failed),
            ("Expired", ReceiptStatus::Failed),
            ("Message Sent", ReceiptStatus::Pending),
        ] {
            let body = report(status);
            let r = parse(&p, Some(hex_sig(SECRET, &body)), &body).unwrap();
            assert_eq!(r.status, outcome, "{status}");
            assert_eq!(r.message_id, "5964465985113503103");
        }
        let body = report("Delivered");
        let b64 = STANDARD.encode(signature(SECRET, body.as_bytes()).unwrap());
        assert!(parse(&p, Some(b64), &body).is_ok(), "base64 too");
        assert_eq!(
            parse(&p, Some(hex_sig("other", &body)), &body),
            Err(ReceiptError::Forged)
        );
        assert_eq!(parse(&p, None, &body), Err(ReceiptError::Forged));
        assert_eq!(
            parse(&p, Some(hex_sig(SECRET, &body)), &report("Rejected")),
            Err(ReceiptError::Forged)
        );
    }
}
