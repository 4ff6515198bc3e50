//! The `twilio` provider: SMS and WhatsApp through Twilio's Programmable Messaging API,
//! voice through its Calls API with TwiML, and status callbacks checked with
//! `X-Twilio-Signature`.
//!
//! - `POST {url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic
//!   (`AccountSid:AuthToken`), form `To`, `From`, `Body` (WhatsApp: both numbers prefixed
//!   `whatsapp:`), `StatusCallback` when `status_callback_url` is set;
//! - `POST {url}/2010-04-01/Accounts/{AccountSid}/Calls.json`, form `To`, `From`, `Twiml`
//!   (`<Response><Say language="…">script</Say></Response>`), `StatusCallback`.
//!
//! Replies: 201 with `{"sid", "status"}` is accepted (the `sid` names later receipts); 429
//! and 5xx are transient; other 4xx permanent (e.g. 21211 invalid `To`, 21610
//! unsubscribed recipient, 20003 bad credentials), with Twilio's `code` in the error.
//! Twilio offers no idempotency key on these APIs, so a retry after a timeout may send
//! twice (the same code: harmless for the user).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::{ApiReply, http_client};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};
use crate::render::html_escape;

/// Twilio's API host, when `url` is not set (tests point `url` at a local server).
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Sends through Twilio.
pub struct TwilioProvider {
    name: String,
    channels: Vec<Channel>,
    base: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
    status_callback: Option<String>,
    client: reqwest::Client,
}

/// `X-Twilio-Signature` of a form POST to `url`: base64 of HMAC-SHA1 keyed by the auth
/// token over the URL followed by each name and value, sorted (Twilio's
/// `RequestValidator`). Used both to check Twilio's callbacks and to sign otpd's own
/// Twilio-style status callbacks.
pub fn signature(key: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

impl TwilioProvider {
    /// From its config entry: `account_sid`, `auth_token` and `from` are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind twilio needs {what}");
        let account_sid = config
            .account_sid
            .clone()
            .ok_or_else(|| need("account_sid"))?;
        if !account_sid.starts_with("AC") || !account_sid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(format!("provider '{name}': account_sid must look like AC…"));
        }
        let auth_token = config
            .auth_token
            .clone()
            .ok_or_else(|| need("auth_token"))?;
        let from = config.from.clone().ok_or_else(|| need("from"))?;
        if let Some(c) = config
            .channels
            .iter()
            .find(|c| !matches!(c, Channel::Sms | Channel::Whatsapp | Channel::Voice))
        {
            return Err(format!("provider '{name}': twilio does not serve {c}"));
        }
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into())
            .trim_end_matches('/')
            .to_string();
        let client = http_client(config, Default::default())?;
        Ok(TwilioProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            base,
            account_sid,
            auth_token,
            from,
            status_callback: config.status_callback_url.clone(),
            client,
        })
    }

    /// The TwiML of a voice call saying `script`.
    fn twiml(script: &str, locale: &str) -> String {
        format!(
            "<Response><Say language=\"{}\">{}</Say></Response>",
            html_escape(locale),
            html_escape(script)
        )
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let (resource, mut form): (&str, Vec<(&str, String)>) = match m.channel {
            Channel::Voice => (
                "Calls.json",
                vec![
                    ("To", m.to.clone()),
                    ("From", self.from.clone()),
                    ("Twiml", Self::twiml(&m.body, &m.locale)),
                ],
            ),
            Channel::Whatsapp => (
                "Messages.json",
                vec![
                    ("To", format!("whatsapp:{}", m.to)),
                    ("From", format!("whatsapp:{}", self.from)),
                    ("Body", m.body.to_string()),
                ],
            ),
            _ => (
                "Messages.json",
                vec![
                    ("To", m.to.clone()),
                    ("From", self.from.clone()),
                    ("Body", m.body.to_string()),
                ],
            ),
        };
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.clone()));
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.base, self.account_sid
        );
        let reply = ApiReply::fetch(
            self.client
                .post(&url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .form(&form),
        )
        .await?;
        reply
            .accepted("/sid")
            .ok_or_else(|| reply.error("Twilio", "/code"))
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(self.receipt(request))
    }
}

impl TwilioProvider {
    fn receipt(&self, request: &ReceiptRequest<'_>) -> Result<ParsedReceipt, ReceiptError> {
        // Without the URL Twilio signed, no callback can be verified: none is believed.
        let url = self
            .status_callback
            .as_deref()
            .ok_or(ReceiptError::Forged)?;
        let given = request
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(ReceiptError::Forged)?;
        let params: Vec<(String, String)> = form_urlencoded::parse(request.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = signature(self.auth_token.expose_secret(), url, &params);
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(ReceiptError::Forged);
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (sid, status) = match (get("MessageSid"), get("CallSid")) {
            (Some(sid), _) => {
                let s = get("MessageStatus").unwrap_or_default();
                let status = match s {
                    "delivered" | "read" => ReceiptStatus::Delivered,
                    "failed" | "undelivered" => ReceiptStatus::Failed,
                    _ => ReceiptStatus::Pending,
                };
                (sid, status)
            }
            (None, Some(sid)) => {
                let s = get("CallStatus").unwrap_or_default();
                let status = match s {
                    "completed" => ReceiptStatus::Delivered,
                    "busy" | "no-answer" | "failed" | "canceled" => ReceiptStatus::Failed,
                    _ => ReceiptStatus::Pending,
                };
                (sid, status)
            }
            (None, None) => {
                return Err(ReceiptError::Malformed("no MessageSid or CallSid".into()));
            }
        };
        Ok(ParsedReceipt {
            message_id: sid.to_string(),
            status,
            error: get("ErrorCode")
                .filter(|c| !c.is_empty())
                .map(|c| format!("Twilio error {c}")),
        })
    }
}

#[cfg(test)]
mod tests;
