//! The `telnyx` provider: SMS through Telnyx's Messaging API v2, calls through its Call
//! Control API, and their webhooks checked with their Ed25519 signatures.
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
//!
//! **Calls** (Call Control, <https://developers.telnyx.com/api-reference/call-commands/dial>,
//! and the SDK's `calls.dial`, `calls.actions.speak`, `calls.actions.hangup`): `POST
//! {url}/v2/calls` with `{"connection_id": application_id, "from": voice_from, "to",
//! "client_state", "command_id": "<message id>", "timeout_secs", "time_limit_secs",
//! "webhook_url": status_callback_url, "webhook_url_method": "POST"}`. Telnyx takes no
//! text with the call: otpd says it when the call is answered. `client_state` (which
//! Telnyx returns in every webhook of the call) is base64 of `"otpd1 <message id>
//! <language> <token>"`, the token the call's text sealed under the server secret
//! ([`crate::call_script`]): any node handles the call's webhooks and Telnyx never holds
//! the code outside the speak command. On a signed `call.answered` otpd opens the token
//! and sends `POST /v2/calls/{call_control_id}/actions/speak` (`payload`, `voice`
//! `female`, the locale's `language`, `payload_type` `text`); on `call.speak.ended`
//! (`completed`) it hangs up (`…/actions/hangup`) and records the message delivered; a
//! `call.hangup` before that (`busy`, `no_answer`, `timeout`, `call_rejected`, …) fails
//! it; `normal_clearing` says nothing. A token that does not open (expired) gets the call
//! hung up and leaves the message to its receipt wait.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::channel::Channel;
use secrecy::ExposeSecret;

use super::{ApiReply, credential_header, http_client, json_str};
use crate::call_script;
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// The languages of Telnyx's basic `speak` voices (the SDK's `language` values).
const SPEAK_LANGUAGES: &[&str] = &[
    "en-US",
    "en-GB",
    "en-AU",
    "en-IN",
    "en-GB-WLS",
    "arb",
    "cmn-CN",
    "cy-GB",
    "da-DK",
    "de-DE",
    "es-ES",
    "es-MX",
    "es-US",
    "fr-FR",
    "fr-CA",
    "hi-IN",
    "is-IS",
    "it-IT",
    "ja-JP",
    "ko-KR",
    "nb-NO",
    "nl-NL",
    "pl-PL",
    "pt-BR",
    "pt-PT",
    "ro-RO",
    "ru-RU",
    "sv-SE",
    "tr-TR",
];
/// The tag that opens otpd's `client_state` (its format version).
const CLIENT_STATE_TAG: &str = "otpd1";

/// Telnyx's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com";
/// Most seconds between a webhook's timestamp and its arrival (the SDK's tolerance).
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

/// Sends SMS and calls through Telnyx.
pub struct TelnyxProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    /// The API base (`https://api.telnyx.com`), for the call commands.
    base: String,
    /// The Call Control application (`connection_id`) of calls.
    connection_id: Option<String>,
    voice_from: Option<String>,
    from: Option<String>,
    messaging_profile_id: Option<String>,
    webhook_url: Option<String>,
    /// The Ed25519 public key of webhooks.
    public_key: Option<[u8; 32]>,
    client: reqwest::Client,
}

impl TelnyxProvider {
    /// From its config entry: `api_key` and `from` or `messaging_profile_id` are required;
    /// `public_key` enables receipts; calls need `application_id` (the Call Control
    /// application), a caller (`voice_from` or `from`), `public_key` and
    /// `status_callback_url`.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind telnyx needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Voice))
        {
            return Err(format!(
                "provider '{name}': kind telnyx serves only channels \"sms\" and \"voice\""
            ));
        }
        if config.channels.contains(&Channel::Voice) {
            let voice = |what: &str| need(&format!("{what} for channel \"voice\""));
            if config.application_id.is_none() {
                return Err(voice(
                    "application_id (the Call Control application's id, sent as connection_id)",
                ));
            }
            if config.voice_from.is_none() && config.from.is_none() {
                return Err(voice("voice_from or from (a Telnyx number to call from)"));
            }
            if config.public_key.is_none() {
                return Err(voice(
                    "public_key (otpd speaks the code only on a signed call.answered)",
                ));
            }
            if config.status_callback_url.is_none() {
                return Err(voice(
                    "status_callback_url (the public URL of /v1/receipts/NAME, the calls' webhook_url)",
                ));
            }
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
            base: base.trim_end_matches('/').to_string(),
            connection_id: config.application_id.clone(),
            voice_from: config.voice_from.clone().or_else(|| config.from.clone()),
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
        if m.channel == Channel::Voice {
            return self.dial(m).await;
        }
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

    async fn call_webhook(
        &self,
        request: &ReceiptRequest<'_>,
        sealer: &otpd_core::secret::Sealer,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        let json: serde_json::Value = serde_json::from_slice(request.body).ok()?;
        let event = json_str(Some(&json), "/data/event_type")?;
        if !event.starts_with("call.") {
            return None;
        }
        if let Err(e) = self.verify(request) {
            return Some(Err(e));
        }
        Some(Ok(self.call_event(&event, &json, request, sealer).await))
    }
}

/// What otpd put in a call's `client_state`: the message, the language to speak, the
/// sealed script.
struct CallState {
    message_id: String,
    language: String,
    token: String,
}

impl CallState {
    /// `client_state`: base64 of `"otpd1 <message id> <language> <token>"`.
    fn encode(&self) -> String {
        STANDARD.encode(format!(
            "{CLIENT_STATE_TAG} {} {} {}",
            self.message_id, self.language, self.token
        ))
    }

    /// The state of a call otpd placed (`None` for any other call on the application).
    fn decode(client_state: &str) -> Option<CallState> {
        let raw = String::from_utf8(STANDARD.decode(client_state).ok()?).ok()?;
        let mut parts = raw.split(' ');
        if parts.next()? != CLIENT_STATE_TAG {
            return None;
        }
        let state = CallState {
            message_id: parts.next()?.to_string(),
            language: parts.next()?.to_string(),
            token: parts.next()?.to_string(),
        };
        parts.next().is_none().then_some(state)
    }
}

/// The `speak` language for a locale: `fr-CA` → `fr-CA`, `fr` → `fr-FR`, `de-AT` →
/// `de-DE`, others → `en-US`.
pub fn speak_language(locale: &str) -> &'static str {
    crate::render::closest_language(locale, SPEAK_LANGUAGES, "en-US")
}

impl TelnyxProvider {
    /// Places a call; its text is said when Telnyx reports it answered.
    async fn dial(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let (Some(connection_id), Some(from), Some(token)) =
            (&self.connection_id, &self.voice_from, &m.call_script)
        else {
            return Err(ProviderError::Permanent(
                "a Telnyx call needs application_id, a from number and a sealed call script".into(),
            ));
        };
        let (ring, talk) = super::twilio::call_limits(m.receipt_wait);
        let state = CallState {
            message_id: m.message_id.clone(),
            language: speak_language(&m.locale).to_string(),
            token: token.clone(),
        };
        let mut body = serde_json::json!({
            "connection_id": connection_id,
            "from": from,
            "to": m.to,
            "client_state": state.encode(),
            "command_id": m.message_id,
            "timeout_secs": ring,
            "time_limit_secs": talk,
            "webhook_url_method": "POST",
        });
        if let Some(url) = &self.webhook_url {
            body["webhook_url"] = url.as_str().into();
        }
        let request = self
            .client
            .post(format!("{}/v2/calls", self.base))
            .json(&body);
        let reply = ApiReply::fetch(request).await?;
        if !reply.status.is_success() {
            let detail = json_str(reply.json.as_ref(), "/errors/0/code")
                .map(|c| format!(" code {}", c.chars().take(12).collect::<String>()))
                .unwrap_or_default();
            return Err(super::status_error("Telnyx", reply.status, &detail));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/data/call_leg_id"),
        })
    }

    /// Sends a call command (`speak`, `hangup`); whether Telnyx took it.
    async fn command(
        &self,
        call_control_id: &str,
        action: &str,
        body: serde_json::Value,
    ) -> Result<(), String> {
        if call_control_id.is_empty()
            || !call_control_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
        {
            return Err("a call_control_id otpd cannot put in a URL".into());
        }
        let url = format!("{}/v2/calls/{call_control_id}/actions/{action}", self.base);
        let reply = ApiReply::fetch(self.client.post(url).json(&body))
            .await
            .map_err(|e| e.to_string())?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(format!("Telnyx {action} HTTP {}", reply.status.as_u16()))
        }
    }

    /// A signed call event of a call otpd placed: the command it calls for, and the
    /// receipt it is.
    async fn call_event(
        &self,
        event: &str,
        json: &serde_json::Value,
        request: &ReceiptRequest<'_>,
        sealer: &otpd_core::secret::Sealer,
    ) -> Vec<ParsedReceipt> {
        let payload = json.pointer("/data/payload");
        let Some(state) = json_str(payload, "/client_state").and_then(|s| CallState::decode(&s))
        else {
            return Vec::new();
        };
        let call = json_str(payload, "/call_control_id").unwrap_or_default();
        let client_state = state.encode();
        let receipt = |status, error: Option<String>| ParsedReceipt {
            message_id: state.message_id.clone(),
            status,
            error,
        };
        match event {
            "call.answered" => {
                let Ok(text) =
                    call_script::open(sealer, &state.message_id, &state.token, request.now)
                else {
                    // Expired (or not otpd's): nothing is said; the receipt wait moves on.
                    let _ = self
                        .command(
                            &call,
                            "hangup",
                            serde_json::json!({"client_state": client_state}),
                        )
                        .await;
                    return Vec::new();
                };
                let speak = serde_json::json!({
                    "payload": text.as_str(),
                    "voice": "female",
                    "language": state.language,
                    "payload_type": "text",
                    "client_state": client_state,
                    "command_id": format!("{}-speak", state.message_id),
                });
                match self.command(&call, "speak", speak).await {
                    Ok(()) => Vec::new(),
                    Err(e) => {
                        let _ = self
                            .command(
                                &call,
                                "hangup",
                                serde_json::json!({"client_state": client_state}),
                            )
                            .await;
                        vec![receipt(ReceiptStatus::Failed, Some(e))]
                    }
                }
            }
            "call.speak.ended" => {
                if json_str(payload, "/status").is_some_and(|s| s != "completed") {
                    return Vec::new();
                }
                let _ = self
                    .command(
                        &call,
                        "hangup",
                        serde_json::json!({"client_state": client_state,
                                           "command_id": format!("{}-hangup", state.message_id)}),
                    )
                    .await;
                vec![receipt(ReceiptStatus::Delivered, None)]
            }
            "call.hangup" => {
                let cause = json_str(payload, "/hangup_cause").unwrap_or_default();
                if cause.is_empty() || cause == "normal_clearing" {
                    return Vec::new();
                }
                vec![receipt(
                    ReceiptStatus::Failed,
                    Some(format!(
                        "Telnyx call {}",
                        cause.chars().take(40).collect::<String>()
                    )),
                )]
            }
            _ => Vec::new(),
        }
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

    fn voice_config(url: &str) -> ProviderConfig {
        ProviderConfig {
            channels: vec![Channel::Sms, Channel::Voice],
            application_id: Some("1293384261075731499".into()),
            voice_from: Some("+18445550002".into()),
            ..config(url)
        }
    }

    fn call_event(event: &str, client_state: &str, extra: serde_json::Value) -> String {
        // The shape of Telnyx's Call Control webhooks (`call.answered` example).
        let mut payload = json!({"call_control_id": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",
            "call_leg_id": "428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
            "call_session_id": "428c31b6-abf3-3bc1-b7f4-5013ef9657c1",
            "client_state": client_state, "connection_id": "1293384261075731499",
            "from": "+18445550002", "to": "+18445550100", "state": "answered"});
        for (k, v) in extra.as_object().unwrap() {
            payload[k] = v.clone();
        }
        json!({"data": {"event_type": event, "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "occurred_at": "2026-12-07T04:20:00.000+00:00", "payload": payload,
            "record_type": "event"}, "meta": {"attempt": 1, "delivered_to": "https://otp.example.com/v1/receipts/telnyx"}})
        .to_string()
    }

    #[tokio::test]
    async fn a_call_is_dialled_then_spoken_to_on_a_signed_answer_and_hung_up() {
        let f = FakeApi::start(
            200,
            json!({"data": {"call_control_id": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",
                "call_leg_id": "428c31b6-7af4-4bcb-b7f5-5013ef9657c1", "is_alive": false,
                "record_type": "call"}}),
        )
        .await;
        let p = TelnyxProvider::new(&voice_config(&f.url)).unwrap();
        let secret =
            otpd_core::secret::ServerSecret::from_text("a test secret of enough length").unwrap();
        let now = chrono::Utc::now();
        let mut call = message(
            Channel::Voice,
            "+18445550100",
            "Your code is 4, 8, 1. Again: 4, 8, 1.",
            "fr-CA",
        );
        call.call_script = Some(call_script::seal(
            secret.sealer(),
            "dlv_1",
            &call.body,
            now + chrono::Duration::minutes(5),
        ));
        p.send(&call).await.unwrap();
        let dial = f.last();
        assert_eq!(dial.path, "/v2/calls");
        assert_eq!(dial.header("authorization"), format!("Bearer {KEY}"));
        let body = dial.json();
        let state = body["client_state"].as_str().unwrap().to_string();
        let (ring, talk) = crate::providers::twilio::call_limits(call.receipt_wait);
        assert_eq!(
            body,
            json!({"connection_id": "1293384261075731499", "from": "+18445550002",
                   "to": "+18445550100", "client_state": state, "command_id": "dlv_1",
                   "timeout_secs": ring, "time_limit_secs": talk,
                   "webhook_url": "https://otp.example.com/v1/receipts/telnyx",
                   "webhook_url_method": "POST"})
        );
        let decoded = String::from_utf8(STANDARD.decode(&state).unwrap()).unwrap();
        assert!(decoded.starts_with("otpd1 dlv_1 fr-CA "), "{decoded}");
        assert!(!decoded.contains("4, 8, 1"));

        let at = now.timestamp();
        let hook = |body: &str, h: &HeaderMap| {
            let body = body.to_string();
            let h = h.clone();
            let p = &p;
            let secret = &secret;
            async move {
                p.call_webhook(
                    &ReceiptRequest {
                        headers: &h,
                        query: "",
                        body: body.as_bytes(),
                        now,
                    },
                    secret.sealer(),
                )
                .await
            }
        };
        // Unsigned: nothing said, nothing sent.
        let answered = call_event("call.answered", &state, json!({}));
        assert_eq!(
            hook(&answered, &HeaderMap::new()).await,
            Some(Err(ReceiptError::Forged))
        );
        assert_eq!(f.seen().len(), 1);
        // Signed: the text is spoken on the call.
        assert_eq!(
            hook(&answered, &signed(&answered, at)).await,
            Some(Ok(vec![]))
        );
        let speak = f.last();
        assert_eq!(
            speak.path,
            "/v2/calls/v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg/actions/speak"
        );
        assert_eq!(
            speak.json(),
            json!({"payload": "Your code is 4, 8, 1. Again: 4, 8, 1.", "voice": "female",
                   "language": "fr-CA", "payload_type": "text", "client_state": state,
                   "command_id": "dlv_1-speak"})
        );
        // Said: hung up, delivered.
        let ended = call_event("call.speak.ended", &state, json!({"status": "completed"}));
        assert_eq!(
            hook(&ended, &signed(&ended, at)).await,
            Some(Ok(vec![ParsedReceipt {
                message_id: "dlv_1".into(),
                status: ReceiptStatus::Delivered,
                error: None
            }]))
        );
        assert!(f.last().path.ends_with("/actions/hangup"));
        assert_eq!(
            f.last().json(),
            json!({"client_state": state, "command_id": "dlv_1-hangup"})
        );
        // Never answered: failed.
        let missed = call_event("call.hangup", &state, json!({"hangup_cause": "no_answer"}));
        assert_eq!(
            hook(&missed, &signed(&missed, at)).await,
            Some(Ok(vec![ParsedReceipt {
                message_id: "dlv_1".into(),
                status: ReceiptStatus::Failed,
                error: Some("Telnyx call no_answer".into())
            }]))
        );
        let cleared = call_event(
            "call.hangup",
            &state,
            json!({"hangup_cause": "normal_clearing"}),
        );
        assert_eq!(
            hook(&cleared, &signed(&cleared, at)).await,
            Some(Ok(vec![]))
        );
        // Another application's call, and messaging webhooks, are not call events of otpd's.
        let foreign = call_event("call.answered", &STANDARD.encode("hello"), json!({}));
        let before = f.seen().len();
        assert_eq!(
            hook(&foreign, &signed(&foreign, at)).await,
            Some(Ok(vec![]))
        );
        assert_eq!(f.seen().len(), before);
        let sms = webhook("message.finalized", "delivered");
        assert_eq!(hook(&sms, &signed(&sms, at)).await, None);
        // An expired script: hung up, nothing said.
        let stale = call_script::seal(
            secret.sealer(),
            "dlv_1",
            "x",
            now - chrono::Duration::seconds(1),
        );
        let stale_state = CallState {
            message_id: "dlv_1".into(),
            language: "en-US".into(),
            token: stale,
        }
        .encode();
        let late = call_event("call.answered", &stale_state, json!({}));
        assert_eq!(hook(&late, &signed(&late, at)).await, Some(Ok(vec![])));
        assert!(f.last().path.ends_with("/actions/hangup"));
        assert_eq!(speak_language("de-AT"), "de-DE");
        assert_eq!(speak_language("sw"), "en-US");
    }

    #[test]
    fn voice_needs_an_application_a_key_and_a_webhook_url() {
        for (what, strip) in [
            (
                "application_id",
                (|c: &mut ProviderConfig| c.application_id = None) as fn(&mut ProviderConfig),
            ),
            ("public_key", |c| c.public_key = None),
            ("status_callback_url", |c| c.status_callback_url = None),
            ("voice_from", |c| {
                c.voice_from = None;
                c.from = None;
            }),
        ] {
            let mut c = voice_config("http://x");
            strip(&mut c);
            let err = TelnyxProvider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {what}")), "{err}");
        }
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
