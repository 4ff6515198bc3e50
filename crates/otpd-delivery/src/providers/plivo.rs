//! The `plivo` provider: SMS through Plivo's Message API, calls through its Call API,
//! and its callbacks checked with `X-Plivo-Signature-V3`.
//!
//! **Send** (<https://www.plivo.com/docs/messaging/api/message/send-a-message/>, and the
//! official `plivo` Python SDK's `messages.create`): `POST
//! {url}/v1/Account/{auth_id}/Message/` (default `https://api.plivo.com`), HTTP Basic with
//! the Auth ID and Auth Token, JSON `{"src": from, "dst": "+…", "text", "type": "sms",
//! "url": status_callback_url, "method": "POST", "log": "false", "trackable": false}`
//! (`log` off: Plivo keeps neither the text, which holds the code, nor the full number).
//! A 202 `{"message_uuid": ["…"]}` is accepted (the uuid names later callbacks); 429 and
//! 5xx (and no answer) are transient; other statuses (400 invalid parameters, 401 bad
//! credentials, 402 insufficient credit, 404) permanent.
//!
//! **Callbacks**: Plivo posts a form (`MessageUUID`, `ParentMessageUUID` for parts of a
//! long message, `Status`, `ErrorCode`, …) to `url`, signed with the Auth Token
//! (`X-Plivo-Signature-V3`, `X-Plivo-Signature-V3-Nonce`; the SDK's
//! `validate_v3_signature`): base64 of HMAC-SHA256 over the callback URL without its
//! query, then `?` and its query parameters sorted (`k=v` joined by `&`), then `.` when
//! there was a query, then the body's parameters sorted as `kv` without separators, then
//! `.` and the nonce. The header may carry several signatures, comma-separated.
//! `delivered` is delivered; `failed`, `undelivered` and `rejected` failed; `queued` and
//! `sent` intermediate.
//!
//! **Calls** (<https://www.plivo.com/docs/voice/api/call/make-a-call/>, and the SDK's
//! `calls.create`): `POST {url}/v1/Account/{auth_id}/Call/`, JSON `{"from": voice_from,
//! "to", "answer_url", "answer_method": "POST", "hangup_url": status_callback_url,
//! "hangup_method": "POST", "ring_timeout", "time_limit", …}` with the SDK's other
//! defaults spelt out (`ring_method`, `fallback_method`, `machine_detection_time`,
//! `machine_detection_method`, `error_if_parent_not_found`). Plivo takes no text with the
//! call: when the callee answers it fetches Plivo XML from `answer_url`. That URL is
//! otpd's `answer_url` (`/v1/voice/NAME`) with `?m=<message id>&t=<token>`, the token the
//! call's text sealed under the server secret ([`crate::call_script`]), so any node answers
//! and Plivo's logs never hold the code. The fetch is believed only with a valid V3
//! signature over that URL ([`PlivoProvider::answer_call`]); otpd then answers
//! `<Response><Speak language="…" voice="WOMAN">text</Speak></Response>` (the text
//! already reads the digits one by one, twice). Ringing and talking fit within the
//! route's receipt wait ([`super::twilio::call_limits`]). The `201 {"request_uuid"}`
//! names the call; its hangup callback (`RequestUUID`, `CallStatus`) is the receipt:
//! `completed` delivered; `busy`, `failed`, `timeout`, `no-answer`, `cancel` failed.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{ApiReply, callback, http_client, json_str};
use crate::call_script;
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, AnswerError, CallAnswer, OutboundMessage, ParsedReceipt, Provider, ProviderError,
    ReceiptError, ReceiptRequest, ReceiptStatus,
};

/// The languages of Plivo's `<Speak>` (its basic `WOMAN` voice); a locale maps to itself,
/// else to the first of its language, else to `en-US`.
const SPEAK_LANGUAGES: &[&str] = &[
    "en-US", "en-GB", "en-AU", "en-CA", "cs-CZ", "da-DK", "de-DE", "el-GR", "es-ES", "es-US",
    "fi-FI", "fr-FR", "fr-CA", "hu-HU", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL",
    "pt-BR", "pt-PT", "ru-RU", "sv-SE", "tr-TR", "zh-CN",
];

/// Plivo's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.plivo.com";

/// Sends SMS and calls through Plivo.
pub struct PlivoProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    call_endpoint: String,
    auth_id: String,
    auth_token: SecretString,
    from: String,
    voice_from: String,
    callback: Option<String>,
    answer_url: Option<String>,
    client: reqwest::Client,
}

impl PlivoProvider {
    /// From its config entry: `auth_id`, `auth_token` and `from` are required;
    /// `status_callback_url` (the public URL of `/v1/receipts/NAME`) enables receipts;
    /// calls need `answer_url` (the public URL of `/v1/voice/NAME`).
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind plivo needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Voice))
        {
            return Err(format!(
                "provider '{name}': kind plivo serves only channels \"sms\" and \"voice\""
            ));
        }
        if config.channels.contains(&Channel::Voice) && config.answer_url.is_none() {
            return Err(need(
                "answer_url (the public URL of /v1/voice/NAME, which Plivo fetches when a call is answered) for channel \"voice\"",
            ));
        }
        if let Some(url) = &config.answer_url
            && (url.contains('?') || url.contains('#'))
        {
            return Err(format!(
                "provider '{name}': answer_url takes no query or fragment (otpd adds its own)"
            ));
        }
        let auth_id = config.auth_id.clone().ok_or_else(|| need("auth_id"))?;
        if auth_id.is_empty() || !auth_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "provider '{name}': auth_id is the Plivo Auth ID (letters and digits)"
            ));
        }
        let auth_token = config
            .auth_token
            .clone()
            .ok_or_else(|| need("auth_token"))?;
        let from = config
            .from
            .clone()
            .ok_or_else(|| need("from (a Plivo number or sender id)"))?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let base = base.trim_end_matches('/');
        Ok(PlivoProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{base}/v1/Account/{auth_id}/Message/"),
            call_endpoint: format!("{base}/v1/Account/{auth_id}/Call/"),
            auth_id,
            auth_token,
            voice_from: config.voice_from.clone().unwrap_or_else(|| from.clone()),
            from,
            callback: config.status_callback_url.clone(),
            answer_url: config.answer_url.clone(),
            client: http_client(config, reqwest::header::HeaderMap::new())?,
        })
    }
}

/// The string Plivo's V3 signature covers for a `POST` of `params` (the form) to `url`,
/// before `.nonce`.
pub fn v3_base(url: &str, params: &[(String, String)]) -> Option<String> {
    let url = url.split('#').next()?;
    let (mut base, raw_query) = match url.split_once('?') {
        Some((base, query)) => (base.to_string(), query),
        None => (url.to_string(), ""),
    };
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let query: Vec<String> = query
        .into_iter()
        .flat_map(|(k, mut vs)| {
            vs.sort();
            vs.into_iter().map(move |v| format!("{k}={v}"))
        })
        .collect();
    let query = query.join("&");
    if !query.is_empty() || !params.is_empty() {
        base.push('?');
        base.push_str(&query);
    }
    if !query.is_empty() && !params.is_empty() {
        base.push('.');
    }
    let mut body: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in params {
        body.entry(k.as_str()).or_default().push(v.as_str());
    }
    for (k, mut vs) in body {
        vs.sort();
        for v in vs {
            base.push_str(k);
            base.push_str(v);
        }
    }
    Some(base)
}

/// Plivo's `<Speak>` language for a locale: `fr-CA` → `fr-CA`, `fr` or `fr-BE` → `fr-FR`,
/// others → `en-US`.
pub fn speak_language(locale: &str) -> &'static str {
    crate::render::closest_language(locale, SPEAK_LANGUAGES, "en-US")
}

/// The Plivo XML that speaks `text` in `language`, as the SDK's `plivoxml` writes it
/// (`&`, `<` and `>` escaped in the text).
pub fn speak_xml(text: &str, language: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    format!(
        "<Response><Speak voice=\"WOMAN\" language=\"{language}\" loop=\"1\">{escaped}</Speak></Response>"
    )
}

/// `X-Plivo-Signature-V3` of a `POST` of `params` to `url` with `nonce`.
pub fn v3_signature(
    token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> Option<String> {
    let base = v3_base(url, params)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).ok()?;
    mac.update(base.as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Provider for PlivoProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        if m.channel == Channel::Voice {
            return self.call(m).await;
        }
        let mut body = serde_json::json!({
            "src": self.from,
            "dst": m.to,
            "text": m.body.as_str(),
            "type": "sms",
            "method": "POST",
            "log": "false",
            "trackable": false,
        });
        if let Some(cb) = &self.callback {
            body["url"] = cb.as_str().into();
        }
        let reply = self.post(&self.endpoint, &body).await?;
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/message_uuid/0"),
        })
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(self.callback_receipt(request))
    }

    fn answer_call(
        &self,
        request: &ReceiptRequest<'_>,
        sealer: &otpd_core::secret::Sealer,
    ) -> Option<Result<CallAnswer, AnswerError>> {
        Some(self.answer(request, sealer))
    }
}

impl PlivoProvider {
    /// POSTs `body` to one of Plivo's endpoints with the account's Basic auth; a refusal
    /// is an error with Plivo's `error` text.
    async fn post(&self, url: &str, body: &serde_json::Value) -> Result<ApiReply, ProviderError> {
        let request = self
            .client
            .post(url)
            .basic_auth(&self.auth_id, Some(self.auth_token.expose_secret()))
            .json(body);
        let reply = ApiReply::fetch(request).await?;
        if !reply.status.is_success() {
            let detail = json_str(reply.json.as_ref(), "/error")
                .map(|e| format!(": {}", e.chars().take(120).collect::<String>()))
                .unwrap_or_default();
            return Err(super::status_error("Plivo", reply.status, &detail));
        }
        Ok(reply)
    }

    /// Places a call whose text Plivo fetches from `answer_url`.
    async fn call(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let (Some(answer_url), Some(script)) = (&self.answer_url, &m.call_script) else {
            return Err(ProviderError::Permanent(
                "a Plivo call needs answer_url and a sealed call script".into(),
            ));
        };
        let (ring, talk) = super::twilio::call_limits(m.receipt_wait);
        let answer = format!(
            "{answer_url}?m={}&t={script}&l={}",
            m.message_id,
            speak_language(&m.locale)
        );
        let mut body = serde_json::json!({
            "from": self.voice_from,
            "to": m.to,
            "answer_url": answer,
            "answer_method": "POST",
            "ring_method": "POST",
            "hangup_method": "POST",
            "fallback_method": "POST",
            "time_limit": talk,
            "machine_detection_time": 5000,
            "machine_detection_method": "POST",
            "ring_timeout": ring,
            "error_if_parent_not_found": false,
        });
        if let Some(cb) = &self.callback {
            body["hangup_url"] = cb.as_str().into();
        }
        let reply = self.post(&self.call_endpoint, &body).await?;
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/request_uuid"),
        })
    }

    /// Whether a request to `url` (its query included) carries a valid V3 signature;
    /// the form parameters of its body when it does.
    fn verified(
        &self,
        url: &str,
        request: &ReceiptRequest<'_>,
    ) -> Result<Vec<(String, String)>, ReceiptError> {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ReceiptError::Forged)
        };
        let given = header("x-plivo-signature-v3")?;
        let nonce = header("x-plivo-signature-v3-nonce")?;
        let body = std::str::from_utf8(request.body)
            .map_err(|_| ReceiptError::Malformed("the body is not UTF-8".into()))?;
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = v3_signature(self.auth_token.expose_secret(), url, &params, nonce)
            .ok_or(ReceiptError::Forged)?;
        let signed = given
            .split(',')
            .any(|s| bool::from(s.trim().as_bytes().ct_eq(expected.as_bytes())));
        if signed {
            Ok(params)
        } else {
            Err(ReceiptError::Forged)
        }
    }

    /// Plivo's fetch of a call's XML: a signed request to `answer_url?m=…&t=…&l=…`.
    fn answer(
        &self,
        request: &ReceiptRequest<'_>,
        sealer: &otpd_core::secret::Sealer,
    ) -> Result<CallAnswer, AnswerError> {
        let answer_url = self.answer_url.as_deref().ok_or(AnswerError::NotFound)?;
        let url = if request.query.is_empty() {
            answer_url.to_string()
        } else {
            format!("{answer_url}?{}", request.query)
        };
        self.verified(&url, request)
            .map_err(|_| AnswerError::Unauthenticated)?;
        let query: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| callback::get(&query, k).ok_or(AnswerError::NotFound);
        let text = call_script::open(sealer, get("m")?, get("t")?, request.now)
            .map_err(|_| AnswerError::NotFound)?;
        let language = speak_language(callback::get(&query, "l").unwrap_or("en-US"));
        Ok(CallAnswer {
            content_type: "application/xml",
            body: zeroize::Zeroizing::new(speak_xml(&text, language)),
        })
    }

    /// A signed delivery callback: a message's status, or a call's hangup.
    fn callback_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Result<ParsedReceipt, ReceiptError> {
        let url = self.callback.as_deref().ok_or(ReceiptError::Forged)?;
        // The form's own parameters (the callback URL's query is part of `url`).
        let params = self.verified(url, request)?;
        if let Some(status) = callback::get(&params, "CallStatus") {
            return call_receipt(&params, status);
        }
        let id = callback::get(&params, "ParentMessageUUID")
            .filter(|v| !v.is_empty())
            .map_or_else(|| callback::require(&params, "MessageUUID"), Ok)?;
        let raw = callback::require(&params, "Status")?;
        let status = match raw.to_ascii_lowercase().as_str() {
            "delivered" => ReceiptStatus::Delivered,
            "failed" | "undelivered" | "rejected" => ReceiptStatus::Failed,
            _ => ReceiptStatus::Pending,
        };
        let code = callback::get(&params, "ErrorCode").unwrap_or_default();
        Ok(ParsedReceipt {
            message_id: id.to_string(),
            status,
            error: (status == ReceiptStatus::Failed).then(|| {
                format!("Plivo {raw} {}", code.chars().take(20).collect::<String>())
                    .trim_end()
                    .to_string()
            }),
        })
    }
}

/// A call's hangup callback (`RequestUUID`, `CallStatus`, `HangupCauseName`).
fn call_receipt(params: &[(String, String)], status: &str) -> Result<ParsedReceipt, ReceiptError> {
    let id = callback::require(params, "RequestUUID")?;
    let status_now = match status.to_ascii_lowercase().as_str() {
        "completed" => ReceiptStatus::Delivered,
        "busy" | "failed" | "timeout" | "no-answer" | "cancel" | "canceled" => {
            ReceiptStatus::Failed
        }
        _ => ReceiptStatus::Pending,
    };
    let cause = callback::get(params, "HangupCauseName").unwrap_or_default();
    Ok(ParsedReceipt {
        message_id: id.to_string(),
        status: status_now,
        error: (status_now == ReceiptStatus::Failed).then(|| {
            format!(
                "Plivo call {status} {}",
                cause.chars().take(40).collect::<String>()
            )
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
    use crate::providers::testing::{FakeApi, message, pairs};

    const AUTH_ID: &str = "MAXXXXXXXXXXXXXXXXXX";
    const TOKEN: &str = "plivo-auth-token-1";
    const CB: &str = "https://otp.example.com/v1/receipts/plivo";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "plivo".into(),
            kind: "plivo".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            auth_id: Some(AUTH_ID.into()),
            auth_token: Some(TOKEN.to_string().into()),
            from: Some("+14155550000".into()),
            status_callback_url: Some(CB.into()),
            ..Default::default()
        }
    }

    async fn fake() -> (FakeApi, PlivoProvider) {
        let f = FakeApi::start(
            202,
            json!({"api_id": "d1f2c3", "message": "message(s) queued",
                   "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}),
        )
        .await;
        let p = PlivoProvider::new(&config(&f.url)).unwrap();
        (f, p)
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_basic_auth() {
        let (f, p) = fake().await;
        let sms = message(Channel::Sms, "+14155550100", "Your code is 123456.", "en");
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("db3ce55a-7f1d-11e1-8ea7-1231380bc196".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, format!("/v1/Account/{AUTH_ID}/Message/"));
        assert_eq!(
            seen.header("authorization"),
            format!("Basic {}", STANDARD.encode(format!("{AUTH_ID}:{TOKEN}")))
        );
        assert_eq!(seen.header("content-type"), "application/json");
        assert_eq!(
            seen.json(),
            json!({"src": "+14155550000", "dst": "+14155550100", "text": "Your code is 123456.",
                   "type": "sms", "url": CB, "method": "POST", "log": "false", "trackable": false})
        );
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let (f, p) = fake().await;
        let sms = message(Channel::Sms, "+14155550100", "x", "en");
        for (http, transient) in [
            (400, false),
            (401, false),
            (402, false),
            (404, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(http, json!({"api_id": "x", "error": "invalid dst"}));
            let err = p.send(&sms).await.unwrap_err();
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
        for (key, strip) in [
            (
                "auth_id",
                (|c: &mut ProviderConfig| c.auth_id = None) as fn(&mut ProviderConfig),
            ),
            ("auth_token", |c| c.auth_token = None),
            ("from", |c| c.from = None),
        ] {
            let mut c = config("http://x");
            strip(&mut c);
            let err = PlivoProvider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {key}")), "{err}");
        }
        let mut c = config("http://x");
        c.channels = vec![Channel::Voice];
        assert!(PlivoProvider::new(&c).is_err(), "voice without answer_url");
    }

    const ANSWER: &str = "https://otp.example.com/v1/voice/plivo";

    fn voice_config(url: &str) -> ProviderConfig {
        ProviderConfig {
            channels: vec![Channel::Sms, Channel::Voice],
            voice_from: Some("+14155550001".into()),
            answer_url: Some(ANSWER.into()),
            ..config(url)
        }
    }

    fn secret() -> otpd_core::secret::ServerSecret {
        otpd_core::secret::ServerSecret::from_text("a test secret of enough length").unwrap()
    }

    #[tokio::test]
    async fn a_call_is_the_sdks_request_with_a_sealed_answer_url() {
        let f = FakeApi::start(
            201,
            json!({"api_id": "a1", "message": "call fired", "request_uuid": "9834029e-58b6-11e1-b8b7-a5bd0e4e126f"}),
        )
        .await;
        let p = PlivoProvider::new(&voice_config(&f.url)).unwrap();
        let mut call = message(
            Channel::Voice,
            "+14155550100",
            "Your code is 4, 8, 1, 5, 1, 6.",
            "fr-CA",
        );
        let now = chrono::Utc::now();
        let script = call_script::seal(
            secret().sealer(),
            "dlv_1",
            &call.body,
            now + chrono::Duration::minutes(5),
        );
        call.call_script = Some(script.clone());
        call.receipt_wait = std::time::Duration::from_secs(60);
        assert_eq!(
            p.send(&call).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("9834029e-58b6-11e1-b8b7-a5bd0e4e126f".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, format!("/v1/Account/{AUTH_ID}/Call/"));
        assert_eq!(
            seen.header("authorization"),
            format!("Basic {}", STANDARD.encode(format!("{AUTH_ID}:{TOKEN}")))
        );
        let (ring, talk) = crate::providers::twilio::call_limits(call.receipt_wait);
        assert_eq!(
            seen.json(),
            json!({"from": "+14155550001", "to": "+14155550100",
                   "answer_url": format!("{ANSWER}?m=dlv_1&t={script}&l=fr-CA"),
                   "answer_method": "POST", "ring_method": "POST",
                   "hangup_url": CB, "hangup_method": "POST", "fallback_method": "POST",
                   "time_limit": talk, "machine_detection_time": 5000,
                   "machine_detection_method": "POST", "ring_timeout": ring,
                   "error_if_parent_not_found": false})
        );
        assert!(!String::from_utf8_lossy(&seen.body).contains("4, 8, 1"));
        // Without a script (a worker that sealed none), no call is placed.
        call.call_script = None;
        assert!(matches!(
            p.send(&call).await,
            Err(ProviderError::Permanent(_))
        ));
    }

    fn answer_request<'a>(
        headers: &'a HeaderMap,
        query: &'a str,
        body: &'a [u8],
    ) -> ReceiptRequest<'a> {
        ReceiptRequest {
            headers,
            query,
            body,
            now: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_call_says_its_script_only_to_a_signed_fetch_of_a_token_that_opens() {
        let p = PlivoProvider::new(&voice_config("http://x")).unwrap();
        let secret = secret();
        let now = chrono::Utc::now();
        let token = call_script::seal(
            secret.sealer(),
            "dlv_1",
            "Your code is 4, 8, 1. <Again> & 4, 8, 1.",
            now + chrono::Duration::minutes(5),
        );
        let query = format!("m=dlv_1&t={token}&l=fr-CA");
        // Plivo's answer request: the call's parameters as a form.
        let body = "CallUUID=c-1&RequestUUID=r-1&From=14155550001&To=14155550100&CallStatus=in-progress&Direction=outbound&Event=StartApp";
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let nonce = "05429567804466091622"; // the one `signed` sends
        let sig = v3_signature(TOKEN, &format!("{ANSWER}?{query}"), &params, nonce).unwrap();
        let h = signed(body, &sig);
        let answer = p
            .answer_call(
                &answer_request(&h, &query, body.as_bytes()),
                secret.sealer(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(answer.content_type, "application/xml");
        assert_eq!(
            answer.body.as_str(),
            "<Response><Speak voice=\"WOMAN\" language=\"fr-CA\" loop=\"1\">Your code is 4, 8, 1. &lt;Again&gt; &amp; 4, 8, 1.</Speak></Response>"
        );
        // Unsigned, signed with another key, or for another query: not from Plivo.
        let none = HeaderMap::new();
        let other = signed(
            body,
            &v3_signature("other", &format!("{ANSWER}?{query}"), &params, nonce).unwrap(),
        );
        for (headers, q) in [
            (&none, query.as_str()),
            (&other, query.as_str()),
            (&h, "m=dlv_1&t=x&l=fr-CA"),
        ] {
            assert_eq!(
                p.answer_call(
                    &answer_request(headers, q, body.as_bytes()),
                    secret.sealer()
                )
                .unwrap(),
                Err(AnswerError::Unauthenticated)
            );
        }
        // Signed, but a token moved to another message, or one that has expired.
        for (q, at) in [
            (format!("m=dlv_2&t={token}&l=fr-CA"), now),
            (query.clone(), now + chrono::Duration::minutes(6)),
        ] {
            let sig = v3_signature(TOKEN, &format!("{ANSWER}?{q}"), &params, nonce).unwrap();
            let h = signed(body, &sig);
            let mut req = answer_request(&h, &q, body.as_bytes());
            req.now = at;
            assert_eq!(
                p.answer_call(&req, secret.sealer()).unwrap(),
                Err(AnswerError::NotFound)
            );
        }
        assert_eq!(speak_language("de-AT"), "de-DE");
        assert_eq!(speak_language("pt_BR"), "pt-BR");
        assert_eq!(speak_language("sw"), "en-US");
    }

    #[test]
    fn a_signed_hangup_is_the_calls_receipt() {
        let p = PlivoProvider::new(&voice_config("http://x")).unwrap();
        let nonce = "05429567804466091622";
        for (status, cause, expected) in [
            ("completed", "Normal Hangup", ReceiptStatus::Delivered),
            ("no-answer", "No Answer", ReceiptStatus::Failed),
            ("busy", "Busy Line", ReceiptStatus::Failed),
        ] {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("CallUUID", "c-1"),
                    ("RequestUUID", "r-1"),
                    ("CallStatus", status),
                    ("HangupCauseName", cause),
                    ("Duration", "12"),
                ])
                .finish();
            let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let h = signed(&body, &v3_signature(TOKEN, CB, &params, nonce).unwrap());
            let r = p
                .parse_receipt(&callback_request(&h, body.as_bytes()))
                .unwrap()
                .unwrap();
            assert_eq!(r.message_id, "r-1");
            assert_eq!(r.status, expected, "{status}");
            if expected == ReceiptStatus::Failed {
                assert_eq!(r.error.unwrap(), format!("Plivo call {status} {cause}"));
            }
        }
    }

    #[test]
    fn voice_needs_an_answer_url_without_a_query() {
        let mut c = voice_config("http://x");
        c.answer_url = None;
        let err = PlivoProvider::new(&c).err().unwrap();
        assert!(err.contains("needs answer_url"), "{err}");
        c.answer_url = Some(format!("{ANSWER}?x=1"));
        assert!(PlivoProvider::new(&c).is_err());
        c.channels = vec![Channel::Email];
        c.answer_url = Some(ANSWER.into());
        assert!(PlivoProvider::new(&c).is_err());
    }

    fn callback_request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> ReceiptRequest<'a> {
        ReceiptRequest {
            headers,
            query: "",
            body,
            now: chrono::Utc::now(),
        }
    }

    fn signed(body: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-plivo-signature-v3", signature.parse().unwrap());
        h.insert(
            "x-plivo-signature-v3-nonce",
            "05429567804466091622".parse().unwrap(),
        );
        let _ = body;
        h
    }

    // The vector: the official SDK's construction (plivo 4.63.0, utils/signature_v3.py:
    // `construct_post_url` then `get_signature_v3`) for this URL, form and nonce.
    #[test]
    fn the_v3_base_string_is_the_sdks() {
        let params = pairs(&[
            ("To", "14155550100"),
            ("Status", "delivered"),
            ("MessageUUID", "u-1"),
            ("A", "2"),
            ("A", "1"),
        ]);
        assert_eq!(
            v3_base("https://otp.example.com/v1/receipts/plivo?z=1&b=x", &params).unwrap(),
            "https://otp.example.com/v1/receipts/plivo?b=x&z=1.A1A2MessageUUIDu-1StatusdeliveredTo14155550100"
        );
        assert_eq!(
            v3_base("https://otp.example.com/v1/receipts/plivo", &params).unwrap(),
            "https://otp.example.com/v1/receipts/plivo?A1A2MessageUUIDu-1StatusdeliveredTo14155550100"
        );
        assert_eq!(
            v3_base("https://otp.example.com:8443/r?t=1", &[]).unwrap(),
            "https://otp.example.com:8443/r?t=1"
        );
    }

    #[test]
    fn signed_callbacks_are_receipts_and_forged_ones_are_not() {
        let p = PlivoProvider::new(&config("http://x")).unwrap();
        let body = "To=14155550100&From=14155550000&Status=undelivered&MessageUUID=db3ce55a&ErrorCode=30&Units=1";
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let sig = v3_signature(TOKEN, CB, &params, "05429567804466091622").unwrap();
        let h = signed(body, &format!("bm90LXRoaXM=,{sig}"));
        let r = p
            .parse_receipt(&callback_request(&h, body.as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!(r.message_id, "db3ce55a");
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.error.as_deref(), Some("Plivo undelivered 30"));
        let tampered = body.replace("undelivered", "delivered");
        assert_eq!(
            p.parse_receipt(&callback_request(&h, tampered.as_bytes()))
                .unwrap(),
            Err(ReceiptError::Forged)
        );
        let none = HeaderMap::new();
        assert_eq!(
            p.parse_receipt(&callback_request(&none, body.as_bytes()))
                .unwrap(),
            Err(ReceiptError::Forged)
        );
        let wrong_key = v3_signature("other", CB, &params, "05429567804466091622").unwrap();
        assert_eq!(
            p.parse_receipt(&callback_request(
                &signed(body, &wrong_key),
                body.as_bytes()
            ))
            .unwrap(),
            Err(ReceiptError::Forged)
        );
    }
}
