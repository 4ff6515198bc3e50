//! The `vonage` provider: SMS through Vonage's SMS API, voice calls through its Voice API
//! with an NCCO, WhatsApp authentication templates through its Messages API, and their
//! delivery receipts.
//!
//! - **sms** — `POST {url}/sms/json` (default `https://rest.nexmo.com`), a form with
//!   `api_key`, `api_secret`, `from`, `to` (international digits, no `+`), `text`, `type`
//!   (`unicode` when the text needs UCS-2, else `text`), `client-ref` (otpd's message id,
//!   echoed in receipts) and `callback` when `status_callback_url` is set. The reply is
//!   `200 {"message-count", "messages": [{"status", "message-id", …}]}`: status `"0"` is
//!   accepted, `"1"` (throttled) and `"5"` (internal error) are transient, every other
//!   status (invalid parameters or credentials, number barred, quota, …) is permanent.
//! - **voice** — `POST {url}/v1/calls` (default `https://api.nexmo.com`) with
//!   `Authorization: Bearer <application JWT>` and
//!   `{"to": [{"type": "phone", "number"}], "from": {"type": "phone", "number"},
//!   "ncco": [{"action": "talk", "text", "language"}], "event_url": [callback]}`;
//!   `201 {"uuid", "status", …}` is accepted.
//! - **whatsapp** — `POST {url}/v1/messages` with the same JWT and
//!   `{"message_type": "custom", "channel": "whatsapp", "to", "from", "client_ref",
//!   "custom": {"type": "template", "template": …}}` (the approved authentication
//!   template, code as body and button parameter); `202 {"message_uuid"}` is accepted.
//!
//! On every API, 408, 429 and 5xx replies and connection errors are transient, other
//! statuses permanent ([`super::status_error`]).
//!
//! **Receipts** reach `/v1/receipts/{name}` in three shapes, each authenticated
//! ([`signing`]): SMS delivery receipts (a GET query, a POST form or POST-JSON,
//! `messageId`, `status`,
//! `err-code`, `client-ref`) with a valid `sig` under `signature_secret` (or, when Vonage
//! does not sign them for the account, the operator's `receipt_token`); Voice call events
//! (`uuid`, `status`) and Messages status webhooks (`message_uuid`, `status`) with a valid
//! and fresh `Authorization: Bearer` JWT under `signature_secret` (issued within the last
//! five minutes: a captured webhook cannot be replayed later). Vonage signs Voice events
//! only when "signed callbacks" are switched on for the application (off by default), so
//! an unsigned Voice event (no `Authorization`) is believed when it carries the
//! `receipt_token`, which otpd adds to the call's `event_url` as `?token=` (see
//! <https://developer.vonage.com/en/getting-started/concepts/webhooks#decoding-signed-webhooks>).

pub mod signing;

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{ApiReply, callback, http_client, json_str, status_error, transport_error};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};
use crate::render::{whatsapp_auth_template, whatsapp_language};
use crate::sms::{self, Encoding};
use signing::{AppJwt, SigMethod};

/// Vonage's SMS API host, when `url` is not set.
pub const DEFAULT_SMS_URL: &str = "https://rest.nexmo.com";
/// Vonage's Voice and Messages API host, when `url` is not set.
pub const DEFAULT_API_URL: &str = "https://api.nexmo.com";

/// SMS API statuses worth retrying: 1 throttled, 5 internal error.
const TRANSIENT_STATUSES: &[&str] = &["1", "5"];

/// Sends SMS, calls and WhatsApp messages through Vonage.
pub struct VonageProvider {
    name: String,
    channels: Vec<Channel>,
    sms_base: String,
    api_base: String,
    sms_credentials: Option<(String, SecretString)>,
    from: Option<String>,
    voice_from: Option<String>,
    whatsapp_from: Option<String>,
    template: Option<String>,
    template_languages: Vec<String>,
    callback: Option<String>,
    signature: Option<(SecretString, SigMethod)>,
    receipt_token: Option<SecretString>,
    jwt: Option<AppJwt>,
    client: reqwest::Client,
}

impl VonageProvider {
    /// From its config entry. SMS needs `api_key`, `api_secret` and `from`; voice and
    /// WhatsApp need `application_id` and `private_key` (or `private_key_file`), plus a
    /// caller (`voice_from` / `whatsapp_from`, else `from`), and WhatsApp a `template`.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind vonage needs {what}");
        if let Some(c) = config
            .channels
            .iter()
            .find(|c| !matches!(c, Channel::Sms | Channel::Voice | Channel::Whatsapp))
        {
            return Err(format!(
                "provider '{name}': kind vonage serves sms, voice and whatsapp, not {c}"
            ));
        }
        let serves = |c: Channel| config.channels.contains(&c);
        let sms_credentials = match (&config.api_key, &config.api_secret) {
            (Some(k), Some(s)) => Some((k.clone(), s.clone())),
            _ if serves(Channel::Sms) => return Err(need("api_key and api_secret for sms")),
            _ => None,
        };
        if serves(Channel::Sms) && config.from.is_none() {
            return Err(need("from for sms"));
        }
        let jwt = match &config.application_id {
            Some(app) => Some(
                AppJwt::new(app, private_key(config)?.expose_secret().as_bytes())
                    .map_err(|e| format!("provider '{name}': {e}"))?,
            ),
            None if serves(Channel::Voice) || serves(Channel::Whatsapp) => {
                return Err(need(
                    "application_id and private_key for voice and whatsapp",
                ));
            }
            None => None,
        };
        let voice_from = config.voice_from.clone().or_else(|| config.from.clone());
        if serves(Channel::Voice) && voice_from.is_none() {
            return Err(need("voice_from (or from) for voice"));
        }
        let whatsapp_from = config.whatsapp_from.clone().or_else(|| config.from.clone());
        if serves(Channel::Whatsapp) && (whatsapp_from.is_none() || config.template.is_none()) {
            return Err(need("whatsapp_from (or from) and template for whatsapp"));
        }
        let method = match config.signature_method.as_deref() {
            None => SigMethod::Md5Hash,
            Some(m) => SigMethod::parse(m).ok_or_else(|| {
                format!("provider '{name}': signature_method must be md5hash, md5, sha1, sha256 or sha512")
            })?,
        };
        let base = |default: &str| {
            config
                .url
                .clone()
                .unwrap_or_else(|| default.into())
                .trim_end_matches('/')
                .to_string()
        };
        Ok(VonageProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            sms_base: base(DEFAULT_SMS_URL),
            api_base: base(DEFAULT_API_URL),
            sms_credentials,
            from: config.from.clone(),
            voice_from,
            whatsapp_from,
            template: config.template.clone(),
            template_languages: super::whatsapp_cloud::check_languages(config)?,
            callback: config.status_callback_url.clone(),
            signature: config.signature_secret.clone().map(|s| (s, method)),
            receipt_token: config.receipt_token.clone(),
            jwt,
            client: http_client(config, Default::default())?,
        })
    }

    async fn send_sms(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let (Some((key, secret)), Some(from)) = (&self.sms_credentials, &self.from) else {
            return Err(ProviderError::Permanent("sms is not configured".into()));
        };
        let kind = match sms::analyze(&m.body).encoding {
            Encoding::Gsm7 => "text",
            Encoding::Ucs2 => "unicode",
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("api_key", key),
            ("api_secret", secret.expose_secret()),
            ("from", from),
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
            .post(format!("{}/sms/json", self.sms_base))
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = reply.status();
        if !status.is_success() {
            return Err(status_error("Vonage", status, ""));
        }
        let json: Value = reply
            .json()
            .await
            .map_err(|_| ProviderError::Transient("Vonage reply is not JSON".into()))?;
        let first = json
            .pointer("/messages/0")
            .ok_or_else(|| ProviderError::Transient("Vonage reply without messages".into()))?;
        let code = first.get("status").and_then(|s| s.as_str()).unwrap_or("");
        if code == "0" {
            return Ok(Accepted::Queued {
                provider_message_id: json_str(Some(first), "/message-id"),
            });
        }
        let msg = format!("Vonage status {code}");
        if TRANSIENT_STATUSES.contains(&code) {
            Err(ProviderError::Transient(msg))
        } else {
            Err(ProviderError::Permanent(msg))
        }
    }

    /// POSTs JSON to the Voice or Messages API with a fresh application JWT; the reply's
    /// `id_pointer` names the message.
    async fn post_api(
        &self,
        path: &str,
        body: &Value,
        id_pointer: &str,
    ) -> Result<Accepted, ProviderError> {
        let jwt = self
            .jwt
            .as_ref()
            .ok_or_else(|| ProviderError::Permanent("no Vonage application".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let token = jwt.token(now).map_err(ProviderError::Permanent)?;
        let reply = ApiReply::fetch(
            self.client
                .post(format!("{}{path}", self.api_base))
                .bearer_auth(token)
                .json(body),
        )
        .await?;
        reply.accepted(id_pointer).ok_or_else(|| {
            // Vonage's errors are RFC 7807 problems: `title` names the cause.
            let detail = json_str(reply.json.as_ref(), "/title")
                .map(|t| format!(" ({})", t.chars().take(80).collect::<String>()))
                .unwrap_or_default();
            status_error("Vonage", reply.status, &detail)
        })
    }

    async fn call(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut body = json!({
            "to": [{"type": "phone", "number": m.to.trim_start_matches('+')}],
            "from": {"type": "phone", "number": self.voice_from.as_deref().unwrap_or_default().trim_start_matches('+')},
            "ncco": [{"action": "talk", "text": m.body.as_str(), "language": tts_language(&m.locale)}],
        });
        if let Some(cb) = &self.callback {
            body["event_url"] = json!([self.voice_event_url(cb)]);
        }
        self.post_api("/v1/calls", &body, "/uuid").await
    }

    async fn whatsapp(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let template = self.template.as_deref().unwrap_or_default();
        let language = whatsapp_language(&m.locale, &self.template_languages);
        let cloud = whatsapp_auth_template(&m.to, template, &language, &m.code);
        let body = json!({
            "message_type": "custom",
            "channel": "whatsapp",
            "to": m.to.trim_start_matches('+'),
            "from": self.whatsapp_from.as_deref().unwrap_or_default().trim_start_matches('+'),
            "client_ref": m.message_id,
            "custom": {"type": "template", "template": cloud["template"]},
        });
        self.post_api("/v1/messages", &body, "/message_uuid").await
    }

    /// The `event_url` of a call: the callback URL with `?token=<receipt_token>` added when
    /// a receipt token is set (Vonage signs voice events only when signed callbacks are on
    /// for the application; the token authenticates them otherwise).
    fn voice_event_url(&self, callback: &str) -> String {
        match &self.receipt_token {
            Some(token) => {
                let pair = form_urlencoded::Serializer::new(String::new())
                    .append_pair(callback::TOKEN_PARAM, token.expose_secret())
                    .finish();
                let sep = if callback.contains('?') { '&' } else { '?' };
                format!("{callback}{sep}{pair}")
            }
            None => callback.to_string(),
        }
    }

    fn receipt(&self, request: &ReceiptRequest<'_>) -> Result<ParsedReceipt, ReceiptError> {
        let params = callback::params(request)?;
        let get = |k: &str| callback::get(&params, k);
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if get("message_uuid").is_none() && get("uuid").is_some() && auth.is_none() {
            // An unsigned Voice event (signed callbacks off, Vonage's default): believed
            // only with the receipt token otpd put in the event_url.
            callback::check_token(self.receipt_token.as_ref(), request)?;
            return Ok(api_event(&params));
        }
        if get("message_uuid").is_some() || get("uuid").is_some() {
            // Messages or Voice webhook: a JWT under the signature secret.
            let (secret, _) = self.signature.as_ref().ok_or(ReceiptError::Forged)?;
            signing::check_webhook_jwt(
                secret.expose_secret(),
                auth,
                request.body,
                request.now.timestamp(),
            )?;
            return Ok(api_event(&params));
        }
        match &self.signature {
            Some((secret, method)) => {
                signing::check_sms_signature(*method, secret.expose_secret(), &params)?
            }
            None => callback::check_token(self.receipt_token.as_ref(), request)?,
        }
        sms_receipt(&params)
    }
}

/// The Private key PEM: `private_key`, else the file `private_key_file`.
fn private_key(config: &ProviderConfig) -> Result<SecretString, String> {
    let name = &config.name;
    if let Some(key) = &config.private_key {
        return Ok(key.clone());
    }
    let path = config.private_key_file.as_deref().ok_or_else(|| {
        format!("provider '{name}': kind vonage needs private_key or private_key_file with application_id")
    })?;
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|e| format!("provider '{name}': private_key_file: {e}"))
}

/// A Vonage text-to-speech language for otpd's locale (`fr` → `fr-FR`); a locale with a
/// region is used as is, and one without a known voice falls back to `en-US` (the digits
/// are still read).
fn tts_language(locale: &str) -> String {
    if locale.contains('-') {
        return locale.to_string();
    }
    match locale {
        "fr" => "fr-FR",
        "es" => "es-ES",
        "pt" => "pt-PT",
        "de" => "de-DE",
        "ar" => "ar",
        "hi" => "hi-IN",
        _ => "en-US",
    }
    .to_string()
}

/// An SMS API delivery receipt: `delivered` is delivered; `failed`, `rejected` and
/// `expired` failed; `accepted`, `buffered`, `unknown` intermediate. `client-ref` (otpd's
/// id, on every part of a long message) names the message, else `messageId`.
fn sms_receipt(params: &[(String, String)]) -> Result<ParsedReceipt, ReceiptError> {
    let id = callback::get(params, "client-ref")
        .filter(|v| !v.is_empty())
        .map_or_else(|| callback::require(params, "messageId"), Ok)?;
    let status = match callback::require(params, "status")? {
        "delivered" => ReceiptStatus::Delivered,
        "failed" | "rejected" | "expired" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    Ok(ParsedReceipt {
        message_id: id.to_string(),
        status,
        error: callback::get(params, "err-code")
            .filter(|c| !c.is_empty() && *c != "0")
            .map(|c| format!("Vonage err-code {c}")),
    })
}

/// A Voice call event (`completed` delivered; `busy`, `cancelled`, `failed`, `rejected`,
/// `timeout`, `unanswered` failed) or a Messages status (`delivered`/`read` delivered;
/// `rejected`/`undeliverable` failed).
fn api_event(params: &[(String, String)]) -> ParsedReceipt {
    let get = |k: &str| callback::get(params, k);
    let status = match get("status").unwrap_or_default() {
        "completed" | "delivered" | "read" => ReceiptStatus::Delivered,
        "busy" | "cancelled" | "failed" | "rejected" | "timeout" | "unanswered"
        | "undeliverable" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    let id = get("message_uuid")
        .or_else(|| get("uuid"))
        .unwrap_or_default();
    ParsedReceipt {
        message_id: id.to_string(),
        status,
        error: (status == ReceiptStatus::Failed)
            .then(|| format!("Vonage {}", get("status").unwrap_or_default())),
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
        match m.channel {
            Channel::Sms => self.send_sms(m).await,
            Channel::Voice => self.call(m).await,
            Channel::Whatsapp => self.whatsapp(m).await,
            other => Err(ProviderError::Permanent(format!(
                "Vonage does not serve {other}"
            ))),
        }
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(self.receipt(request))
    }
}

#[cfg(test)]
mod tests;
