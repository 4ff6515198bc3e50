//! The `twilio` provider: SMS and WhatsApp through Twilio's Programmable Messaging API,
//! voice through its Calls API with TwiML, and status callbacks checked with
//! `X-Twilio-Signature`.
//!
//! - `POST {url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic with the
//!   Account SID and Auth Token, or with an API key (`SK…`) and its secret
//!   (<https://www.twilio.com/docs/iam/api-keys>); form `To`, then `MessagingServiceSid`
//!   when `messaging_service_sid` is set (US A2P 10DLC, sender pools; a service's messaging
//!   configuration for the destination country wins for SMS) or else `From`, then
//!   the content: `Body` with the text, or — always for WhatsApp, and for SMS when
//!   `sms_content_sid` is set — an approved Content template as `ContentSid` (`HX…`, per
//!   locale when `content_sids` has one) with `ContentVariables` `{"1": "<code>"}`
//!   (<https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder>;
//!   since April 2025 a business-initiated free-form WhatsApp `Body` fails with 63016).
//!   WhatsApp numbers are prefixed `whatsapp:`. `StatusCallback` when
//!   `status_callback_url` is set.
//! - `POST {url}/2010-04-01/Accounts/{AccountSid}/Calls.json`, form `To`, `From`, `Twiml`
//!   (`<Response><Say voice="Polly.…" language="…">script</Say></Response>` with a voice
//!   Twilio documents for the locale, [`voice_for`]), `Timeout` (seconds of ringing) and
//!   `TimeLimit` (seconds of talk) chosen so the call is over before the route's receipt
//!   wait ends ([`call_limits`]: a ringing call never overlaps the next provider), and
//!   `StatusCallback`.
//!
//! Replies: 201 with `{"sid", "status"}` is accepted (the `sid` names later receipts); 429
//! and 5xx are transient; other 4xx permanent (e.g. 21211 invalid `To`, 21610
//! unsubscribed recipient, 20003 bad credentials), with Twilio's `code` in the error.
//! Twilio offers no idempotency key on these APIs, so a retry after a timeout may send
//! twice (the same code: harmless for the user). Status callbacks are always signed with
//! the Auth Token (also when sends use an API key), so receipts need `auth_token`.

use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Who the API requests authenticate as: (Account SID or API key SID, secret).
    login: (String, SecretString),
    /// The Auth Token, which signs status callbacks.
    auth_token: Option<SecretString>,
    sender: Sender,
    voice_from: Option<String>,
    content_sid: Option<String>,
    content_sids: BTreeMap<String, String>,
    sms_content_sid: Option<String>,
    status_callback: Option<String>,
    client: reqwest::Client,
}

/// Where messages come from: a number (`From`) or a Messaging Service.
enum Sender {
    From(String),
    Service(String),
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

/// Whether `sid` is a Twilio SID of `prefix` (`AC`, `SK`, `MG`, `HX`): the prefix and 32
/// hex digits.
fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<Say>` voices for locales, from Twilio's text-to-speech voice list
/// (<https://www.twilio.com/docs/voice/twiml/say/text-speech#available-voices-and-languages>,
/// Amazon Polly standard voices): (language, voice). `language` must be the voice's own
/// language: an invalid pair makes `<Say>` fail silently while the call completes.
const VOICES: &[(&str, &str)] = &[
    ("arb", "Polly.Zeina"),
    ("cmn-CN", "Polly.Zhiyu"),
    ("cy-GB", "Polly.Gwyneth"),
    ("da-DK", "Polly.Naja"),
    ("de-DE", "Polly.Marlene"),
    ("en-AU", "Polly.Nicole"),
    ("en-GB", "Polly.Amy"),
    ("en-IN", "Polly.Raveena"),
    ("en-US", "Polly.Joanna"),
    ("es-ES", "Polly.Conchita"),
    ("es-MX", "Polly.Mia"),
    ("es-US", "Polly.Penelope"),
    ("fr-CA", "Polly.Chantal"),
    ("fr-FR", "Polly.Celine"),
    ("hi-IN", "Polly.Aditi"),
    ("is-IS", "Polly.Dora"),
    ("it-IT", "Polly.Carla"),
    ("ja-JP", "Polly.Mizuki"),
    ("ko-KR", "Polly.Seoyeon"),
    ("nb-NO", "Polly.Liv"),
    ("nl-NL", "Polly.Lotte"),
    ("pl-PL", "Polly.Ewa"),
    ("pt-BR", "Polly.Vitoria"),
    ("pt-PT", "Polly.Ines"),
    ("ro-RO", "Polly.Carmen"),
    ("ru-RU", "Polly.Tatyana"),
    ("sv-SE", "Polly.Astrid"),
    ("tr-TR", "Polly.Filiz"),
];

/// The language of [`VOICES`] for a locale without a region (or with one Twilio has no
/// voice for).
const LANGUAGE_DEFAULTS: &[(&str, &str)] = &[
    ("ar", "arb"),
    ("cy", "cy-GB"),
    ("da", "da-DK"),
    ("de", "de-DE"),
    ("en", "en-US"),
    ("es", "es-ES"),
    ("fr", "fr-FR"),
    ("hi", "hi-IN"),
    ("is", "is-IS"),
    ("it", "it-IT"),
    ("ja", "ja-JP"),
    ("ko", "ko-KR"),
    ("nb", "nb-NO"),
    ("nl", "nl-NL"),
    ("no", "nb-NO"),
    ("pl", "pl-PL"),
    ("pt", "pt-PT"),
    ("ro", "ro-RO"),
    ("ru", "ru-RU"),
    ("sv", "sv-SE"),
    ("tr", "tr-TR"),
    ("zh", "cmn-CN"),
];

/// The documented (language, voice) pair for a locale: the locale itself (`fr-CA`), else
/// its language's default (`fr-BE` → `fr-FR`), else `en-US` (the digits are still read).
pub fn voice_for(locale: &str) -> (&'static str, &'static str) {
    let locale = locale.replace('_', "-");
    let exact = VOICES
        .iter()
        .find(|(lang, _)| lang.eq_ignore_ascii_case(&locale));
    if let Some((lang, voice)) = exact {
        return (lang, voice);
    }
    let primary = locale.split('-').next().unwrap_or_default();
    let language = LANGUAGE_DEFAULTS
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(primary))
        .map_or("en-US", |(_, lang)| lang);
    VOICES
        .iter()
        .find(|(lang, _)| *lang == language)
        .map_or(("en-US", "Polly.Joanna"), |(lang, voice)| (lang, voice))
}

/// Most seconds a call may talk once answered (`TimeLimit`): the script reads the code
/// twice in well under this.
pub const CALL_TIME_LIMIT: u64 = 30;
/// Seconds Twilio may add to the ring `Timeout` (its documented buffer), plus the time
/// the final status callback takes to arrive.
const RING_SLACK: u64 = 10;
/// Twilio's default ring time, kept as the most otpd asks for.
const MAX_RING: u64 = 60;
/// The least ring time otpd asks for (a shorter receipt wait still gets this).
const MIN_RING: u64 = 5;
/// The least talk time otpd allows (the code read twice, slowly).
const MIN_TALK: u64 = 15;
/// The shortest receipt wait in which a call can ring, talk and report before the next
/// provider is tried; a voice route through Twilio should wait at least this long.
pub const MIN_VOICE_RECEIPT_WAIT: u64 = MIN_RING + MIN_TALK + RING_SLACK;

/// `(Timeout, TimeLimit)` of a call under a receipt wait: ringing plus Twilio's buffer plus
/// talking plus the callback's way back fit within the wait, so the call has ended before
/// the next provider is tried (`Timeout` between 5 and 60 s; see
/// <https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource>).
/// A wait shorter than [`MIN_VOICE_RECEIPT_WAIT`] gets the least ring and talk times.
pub fn call_limits(receipt_wait: Duration) -> (u64, u64) {
    // Ringing and talking share what the wait leaves after the buffer: talk as long as
    // [`CALL_TIME_LIMIT`] when the wait allows, shorter (down to [`MIN_TALK`]) when not.
    let budget = receipt_wait.as_secs().saturating_sub(RING_SLACK);
    let talk = CALL_TIME_LIMIT
        .min(budget.saturating_sub(MIN_RING))
        .max(MIN_TALK);
    let ring = budget.saturating_sub(talk).clamp(MIN_RING, MAX_RING);
    (ring, talk)
}

impl TwilioProvider {
    /// From its config entry: `account_sid`, credentials (`auth_token`, or `api_key` +
    /// `api_secret`), a sender (`from` or `messaging_service_sid`; voice always needs
    /// `from`) and, for WhatsApp, a Content template (`content_sid` or `content_sids`).
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
        if let Some(c) = config
            .channels
            .iter()
            .find(|c| !matches!(c, Channel::Sms | Channel::Whatsapp | Channel::Voice))
        {
            return Err(format!("provider '{name}': twilio does not serve {c}"));
        }
        let serves = |c: Channel| config.channels.contains(&c);
        let login = match (&config.api_key, &config.api_secret, &config.auth_token) {
            (Some(key), Some(secret), _) => {
                if !is_sid(key, "SK") {
                    return Err(format!(
                        "provider '{name}': api_key must be a Twilio API key SID (SK followed by 32 hex digits)"
                    ));
                }
                (key.clone(), secret.clone())
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(need("both api_key (SK…) and api_secret, or neither"));
            }
            (None, None, Some(token)) => (account_sid.clone(), token.clone()),
            (None, None, None) => return Err(need("auth_token (or api_key and api_secret)")),
        };
        if config.status_callback_url.is_some() && config.auth_token.is_none() {
            return Err(need(
                "auth_token with status_callback_url: Twilio signs status callbacks with the Auth Token, also when sends use an API key",
            ));
        }
        let sender = match (&config.messaging_service_sid, &config.from) {
            (Some(sid), _) => {
                if !is_sid(sid, "MG") {
                    return Err(format!(
                        "provider '{name}': messaging_service_sid must look like MG followed by 32 hex digits"
                    ));
                }
                Sender::Service(sid.clone())
            }
            (None, Some(from)) => Sender::From(from.clone()),
            (None, None) => return Err(need("from or messaging_service_sid")),
        };
        if serves(Channel::Voice) && config.from.is_none() {
            return Err(need(
                "from for voice (a Twilio number: calls are not sent through a Messaging Service)",
            ));
        }
        let templates = config
            .content_sid
            .iter()
            .chain(config.content_sids.values())
            .chain(config.sms_content_sid.iter());
        for sid in templates {
            if !is_sid(sid, "HX") {
                return Err(format!(
                    "provider '{name}': Content template '{sid}' must look like HX followed by 32 hex digits"
                ));
            }
        }
        if serves(Channel::Whatsapp) && config.content_sid.is_none() {
            return Err(need(
                "content_sid for whatsapp: an approved WhatsApp authentication template (HX…) of Twilio's Content Template Builder; Twilio refuses free-form WhatsApp text (error 63016)",
            ));
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
            login,
            auth_token: config.auth_token.clone(),
            sender,
            voice_from: config.from.clone(),
            content_sid: config.content_sid.clone(),
            content_sids: config
                .content_sids
                .iter()
                .map(|(k, v)| (k.replace('_', "-").to_ascii_lowercase(), v.clone()))
                .collect(),
            sms_content_sid: config.sms_content_sid.clone(),
            status_callback: config.status_callback_url.clone(),
            client,
        })
    }

    /// The TwiML of a voice call saying `script` with the locale's documented voice.
    fn twiml(script: &str, locale: &str) -> String {
        let (language, voice) = voice_for(locale);
        format!(
            "<Response><Say voice=\"{voice}\" language=\"{language}\">{}</Say></Response>",
            html_escape(script)
        )
    }

    /// The WhatsApp Content template for a locale: `content_sids` for the locale, then
    /// for its language, else `content_sid`.
    fn whatsapp_template(&self, locale: &str) -> Option<&str> {
        let locale = locale.replace('_', "-").to_ascii_lowercase();
        let primary = locale.split('-').next().unwrap_or_default().to_string();
        self.content_sids
            .get(&locale)
            .or_else(|| self.content_sids.get(&primary))
            .or(self.content_sid.as_ref())
            .map(String::as_str)
    }

    /// The sender fields: `MessagingServiceSid`, or `From` (prefixed for WhatsApp).
    fn sender(&self, prefix: &str) -> (&'static str, String) {
        match &self.sender {
            Sender::Service(sid) => ("MessagingServiceSid", sid.clone()),
            Sender::From(from) => ("From", format!("{prefix}{from}")),
        }
    }
}

/// `ContentVariables` of otpd's templates: the code as variable `1`.
fn content_variables(code: &str) -> String {
    serde_json::json!({ "1": code }).to_string()
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
        let (resource, form): (&str, Vec<(&str, String)>) = match m.channel {
            Channel::Voice => {
                let from = self
                    .voice_from
                    .clone()
                    .ok_or_else(|| ProviderError::Permanent("voice needs a from number".into()))?;
                let (ring, talk) = call_limits(m.receipt_wait);
                (
                    "Calls.json",
                    vec![
                        ("To", m.to.clone()),
                        ("From", from),
                        ("Twiml", Self::twiml(&m.body, &m.locale)),
                        ("Timeout", ring.to_string()),
                        ("TimeLimit", talk.to_string()),
                    ],
                )
            }
            Channel::Whatsapp => {
                let template = self.whatsapp_template(&m.locale).ok_or_else(|| {
                    ProviderError::Permanent("no WhatsApp Content template".into())
                })?;
                (
                    "Messages.json",
                    vec![
                        ("To", format!("whatsapp:{}", m.to)),
                        self.sender("whatsapp:"),
                        ("ContentSid", template.to_string()),
                        ("ContentVariables", content_variables(&m.code)),
                    ],
                )
            }
            _ => {
                // The service's messaging configuration for the destination wins over the
                // provider's own sender.
                let sender = match &m.messaging_service_sid {
                    Some(sid) => ("MessagingServiceSid", sid.clone()),
                    None => self.sender(""),
                };
                let mut form = vec![("To", m.to.clone()), sender];
                match &self.sms_content_sid {
                    Some(sid) => {
                        form.push(("ContentSid", sid.clone()));
                        form.push(("ContentVariables", content_variables(&m.code)));
                    }
                    None => form.push(("Body", m.body.to_string())),
                }
                ("Messages.json", form)
            }
        };
        let mut form = form;
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
                .basic_auth(&self.login.0, Some(self.login.1.expose_secret()))
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
        let token = self.auth_token.as_ref().ok_or(ReceiptError::Forged)?;
        let given = request
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(ReceiptError::Forged)?;
        let params: Vec<(String, String)> = form_urlencoded::parse(request.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = signature(token.expose_secret(), url, &params);
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
