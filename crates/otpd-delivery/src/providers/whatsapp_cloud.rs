//! The `whatsapp_cloud` provider: WhatsApp authentication templates through Meta's Cloud
//! API, and its status webhooks checked with `X-Hub-Signature-256`.
//!
//! `POST {url}/{phone_number_id}/messages` (default `url` `https://graph.facebook.com/v21.0`),
//! `Authorization: Bearer <access_token>`, the JSON of
//! [`crate::render::whatsapp_auth_template`]: the approved authentication `template`
//! in the message's language, the code as body parameter and copy-code button parameter.
//! The template language is the message's locale mapped to one the template is approved
//! in ([`crate::render::whatsapp_language`], `template_languages`: `fr-CA` → `fr`).
//! A 200 reply `{"messages": [{"id": "wamid…"}]}` is accepted; errors are
//! `{"error": {"code", "message", …}}`: HTTP 429, 5xx and the codes Meta documents as
//! temporary ([`TRANSIENT_CODES`]: throughput and rate limits 4, 80007, 130429, 131048,
//! 131056; service trouble 1, 2, 131000, 131016, 131057, 133004) are transient, the rest
//! permanent (131026 undeliverable, 100 invalid parameter, 132001 template missing, 190
//! expired token, …).
//!
//! Webhooks (`entry[].changes[].value`) are believed only with `X-Hub-Signature-256:
//! sha256=<HMAC-SHA256 of the raw body under the app secret>`. Meta batches them: every
//! status of every change of every entry is read (`status` `sent` / `delivered` / `read` /
//! `failed`, with `errors[].code`). Authentic webhooks that carry no status — incoming
//! messages, `value.errors`, other fields — are answered 200 and change nothing (Meta
//! retries anything else for days). Before it sends any, Meta verifies the webhook
//! URL with `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: otpd echoes the
//! challenge only when the token is the configured `verify_token`.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{ApiReply, http_client};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};
use crate::render::{whatsapp_auth_template, whatsapp_language};

/// The Graph API base, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com/v21.0";

/// Cloud API error codes worth retrying, from Meta's "WhatsApp error codes"
/// (<https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes>): 1 API
/// unknown, 2 API service, 4 too many calls, 80007 rate limit issues, 130429 rate limit
/// hit, 131000 something went wrong, 131016 service unavailable, 131048 spam rate limit,
/// 131056 pair rate limit, 131057 account in maintenance mode, 133004 server temporarily
/// unavailable.
pub const TRANSIENT_CODES: &[i64] = &[
    1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056, 131057, 133004,
];

/// Sends WhatsApp authentication templates through the Cloud API.
pub struct WhatsappCloudProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    access_token: SecretString,
    app_secret: Option<SecretString>,
    verify_token: Option<SecretString>,
    template: String,
    template_languages: Vec<String>,
    client: reqwest::Client,
}

impl WhatsappCloudProvider {
    /// From its config entry: `phone_number_id`, `access_token` and `template` are
    /// required; `app_secret` to accept status webhooks.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind whatsapp_cloud needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Whatsapp) {
            return Err(format!(
                "provider '{name}': kind whatsapp_cloud serves only channels = [\"whatsapp\"]"
            ));
        }
        let phone = config
            .phone_number_id
            .clone()
            .ok_or_else(|| need("phone_number_id"))?;
        if phone.is_empty() || !phone.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("provider '{name}': phone_number_id must be digits"));
        }
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let client = http_client(config, Default::default())?;
        Ok(WhatsappCloudProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/{phone}/messages", base.trim_end_matches('/')),
            access_token: config
                .access_token
                .clone()
                .ok_or_else(|| need("access_token"))?,
            app_secret: config.app_secret.clone(),
            verify_token: config.verify_token.clone(),
            template: config.template.clone().ok_or_else(|| need("template"))?,
            template_languages: check_languages(config)?,
            client,
        })
    }
}

/// `template_languages`, checked: Meta's codes (`en_US`, `fr`), none twice.
pub fn check_languages(config: &ProviderConfig) -> Result<Vec<String>, String> {
    for l in &config.template_languages {
        if !crate::render::WHATSAPP_LANGUAGES.contains(&l.as_str()) {
            return Err(format!(
                "provider '{}': template_languages: '{l}' is not a WhatsApp template language (Meta's codes, e.g. en_US, fr, pt_BR)",
                config.name
            ));
        }
    }
    Ok(config.template_languages.clone())
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, Meta's webhook signature.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[async_trait]
impl Provider for WhatsappCloudProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let language = whatsapp_language(&m.locale, &self.template_languages);
        let body = whatsapp_auth_template(&m.to, &self.template, &language, &m.code);
        let reply = ApiReply::fetch(
            self.client
                .post(&self.endpoint)
                .bearer_auth(self.access_token.expose_secret())
                .json(&body),
        )
        .await?;
        if let Some(accepted) = reply.accepted("/messages/0/id") {
            return Ok(accepted);
        }
        // Meta's temporary error codes are worth retrying whatever the HTTP status.
        Err(match reply.error("WhatsApp", "/error/code") {
            ProviderError::Permanent(msg)
                if reply
                    .code("/error/code")
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c)) =>
            {
                ProviderError::Transient(msg)
            }
            other => other,
        })
    }

    fn parse_receipt_batch(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        Some(self.receipts(request))
    }

    fn verify_subscription(&self, query: &str) -> Option<Result<String, ReceiptError>> {
        Some(self.subscription(query))
    }
}

/// Longest `hub.challenge` echoed (Meta sends a short number).
const MAX_CHALLENGE: usize = 128;

impl WhatsappCloudProvider {
    fn subscription(&self, query: &str) -> Result<String, ReceiptError> {
        let expected = self.verify_token.as_ref().ok_or(ReceiptError::Forged)?;
        let get = |k: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        let given = get("hub.verify_token").ok_or(ReceiptError::Forged)?;
        if !bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) {
            return Err(ReceiptError::Forged);
        }
        if get("hub.mode").as_deref() != Some("subscribe") {
            return Err(ReceiptError::Malformed("hub.mode must be subscribe".into()));
        }
        get("hub.challenge")
            .filter(|c| {
                !c.is_empty() && c.len() <= MAX_CHALLENGE && c.bytes().all(|b| b.is_ascii_graphic())
            })
            .ok_or_else(|| ReceiptError::Malformed("no usable hub.challenge".into()))
    }

    fn receipts(&self, request: &ReceiptRequest<'_>) -> Result<Vec<ParsedReceipt>, ReceiptError> {
        let secret = self.app_secret.as_ref().ok_or(ReceiptError::Forged)?;
        let given = request
            .headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .ok_or(ReceiptError::Forged)?;
        let expected = hub_signature(secret.expose_secret(), request.body);
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(ReceiptError::Forged);
        }
        let json: serde_json::Value = serde_json::from_slice(request.body)
            .map_err(|_| ReceiptError::Malformed("not JSON".into()))?;
        Ok(statuses(&json))
    }
}

/// Every final status of a webhook (`entry[].changes[].value.statuses[]`), in order;
/// statuses without an id and intermediate ones (`sent`) are left out.
pub fn statuses(json: &serde_json::Value) -> Vec<ParsedReceipt> {
    let list = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for entry in list(json, "entry") {
        for change in list(&entry, "changes") {
            let Some(value) = change.get("value") else {
                continue;
            };
            for st in list(value, "statuses") {
                let Some(id) = st.get("id").and_then(|v| v.as_str()) else {
                    continue;
                };
                let status = match st.get("status").and_then(|v| v.as_str()) {
                    Some("delivered" | "read") => ReceiptStatus::Delivered,
                    Some("failed") => ReceiptStatus::Failed,
                    _ => continue,
                };
                found.push(ParsedReceipt {
                    message_id: id.chars().take(256).collect(),
                    status,
                    error: st
                        .pointer("/errors/0/code")
                        .and_then(|c| c.as_i64())
                        .map(|c| format!("WhatsApp error {c}")),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    fn config(url: Option<String>) -> ProviderConfig {
        ProviderConfig {
            name: "wa".into(),
            kind: "whatsapp_cloud".into(),
            url,
            channels: vec![Channel::Whatsapp],
            timeout_ms: 2000,
            phone_number_id: Some("106540352242922".into()),
            access_token: Some("EAAG-token".to_string().into()),
            app_secret: Some("app-secret-1".to_string().into()),
            template: Some("otp_auth".into()),
            ..Default::default()
        }
    }

    async fn fake() -> (FakeApi, WhatsappCloudProvider) {
        let f = FakeApi::start(
            200,
            json!({"messaging_product": "whatsapp",
                   "contacts": [{"input": "14155550123", "wa_id": "14155550123"}],
                   "messages": [{"id": "wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI"}]}),
        )
        .await;
        let p = WhatsappCloudProvider::new(&config(Some(format!("{}/v21.0", f.url)))).unwrap();
        (f, p)
    }

    fn wa() -> OutboundMessage {
        message(
            Channel::Whatsapp,
            "+14155550123",
            "481516 is your code",
            "pt-BR",
        )
    }

    #[tokio::test]
    async fn sends_the_authentication_template_with_a_bearer_token() {
        let (f, p) = fake().await;
        let got = p.send(&wa()).await.unwrap();
        assert_eq!(
            got,
            Accepted::Queued {
                provider_message_id: Some("wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/v21.0/106540352242922/messages");
        assert_eq!(seen.header("authorization"), "Bearer EAAG-token");
        let body = seen.json();
        assert_eq!(
            body,
            whatsapp_auth_template("+14155550123", "otp_auth", "pt_BR", "123456")
        );
        assert_eq!(body["template"]["name"], "otp_auth");
        assert_eq!(body["template"]["language"]["code"], "pt_BR");
    }

    #[tokio::test]
    async fn documented_errors_map_to_transient_or_permanent() {
        let (f, p) = fake().await;
        for (http, code, transient) in [
            (429, 130429, true),
            (400, 131056, true),
            (500, 131000, true),
            // Meta's error-code page: 131016 "Service unavailable", 80007 "Rate limit
            // issues", 131048 "Spam rate limit hit", 131057 "Account in maintenance mode".
            (503, 131016, true),
            (400, 131016, true),
            (400, 80007, true),
            (400, 131048, true),
            (400, 131057, true),
            (400, 131026, false),
            (400, 100, false),
            (401, 190, false),
            (404, 132001, false),
        ] {
            f.reply(
                http,
                json!({"error": {"message": "x", "type": "OAuthException", "code": code, "fbtrace_id": "A"}}),
            );
            let err = p.send(&wa()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{code}: {err}"
            );
            assert!(err.to_string().contains(&code.to_string()));
        }
    }

    fn webhook(status: &str) -> String {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "106540352242922"},
            "statuses": [{"id": "wamid.X", "status": status, "timestamp": "1700000000",
                          "recipient_id": "14155550123",
                          "errors": if status == "failed" { json!([{"code": 131026, "title": "Message undeliverable"}]) } else { json!([]) }}]}}]}]})
        .to_string()
    }

    fn parse(
        p: &WhatsappCloudProvider,
        body: &str,
        sig: Option<&str>,
    ) -> Result<Vec<ParsedReceipt>, ReceiptError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(s) = sig {
            headers.insert("x-hub-signature-256", s.parse().unwrap());
        }
        p.parse_receipt_batch(&ReceiptRequest {
            headers: &headers,
            query: "",
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        })
        .unwrap()
    }

    fn signed(p: &WhatsappCloudProvider, body: &serde_json::Value) -> Vec<ParsedReceipt> {
        let body = body.to_string();
        parse(
            p,
            &body,
            Some(&hub_signature("app-secret-1", body.as_bytes())),
        )
        .unwrap()
    }

    /// A `messages` change value in the shape of Meta's "Webhooks payload examples"
    /// (https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples).
    fn change(extra: serde_json::Value) -> serde_json::Value {
        let mut value = json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}});
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        json!({"value": value, "field": "messages"})
    }

    fn status(id: &str, status: &str) -> serde_json::Value {
        json!({"id": id, "status": status, "timestamp": "1750263773", "recipient_id": "16505551234",
               "pricing": {"billable": true, "pricing_model": "PMP", "category": "authentication"}})
    }

    // Meta batches: several entries, several changes per entry, several statuses per
    // change (payload shape from Meta's webhook payload examples, linked above).
    #[test]
    fn every_status_of_every_change_of_every_entry_is_read() {
        let p = WhatsappCloudProvider::new(&config(None)).unwrap();
        let mut failed = status("wamid.D", "failed");
        failed["errors"] = json!([{"code": 131026, "title": "Message undeliverable",
            "message": "Message undeliverable", "error_data": {"details": "Message Undeliverable."}}]);
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "102290129340398", "changes": [
                change(json!({"statuses": [status("wamid.A", "sent"), status("wamid.A", "delivered"), status("wamid.B", "read")]})),
                change(json!({"statuses": [status("wamid.C", "delivered")]})),
            ]},
            {"id": "102290129340399", "changes": [change(json!({"statuses": [failed]}))]},
        ]});
        let got = signed(&p, &body);
        let ids: Vec<(&str, ReceiptStatus)> = got
            .iter()
            .map(|r| (r.message_id.as_str(), r.status))
            .collect();
        assert_eq!(
            ids,
            [
                ("wamid.A", ReceiptStatus::Delivered),
                ("wamid.B", ReceiptStatus::Delivered),
                ("wamid.C", ReceiptStatus::Delivered),
                ("wamid.D", ReceiptStatus::Failed),
            ]
        );
        assert_eq!(got[3].error.as_deref(), Some("WhatsApp error 131026"));
    }

    // Incoming messages and `value.errors` (Meta's payload examples "Text messages" and
    // "Unknown messages"/errors; error-codes page: errors surface in
    // entry.changes.value.errors) are authentic webhooks otpd does not use: no receipts,
    // no error (the server answers 200, so Meta does not retry them).
    #[test]
    fn webhooks_without_statuses_are_accepted_and_report_nothing() {
        let p = WhatsappCloudProvider::new(&config(None)).unwrap();
        let incoming = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change(json!({
            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551234"}],
            "messages": [{"from": "16315551234", "id": "wamid.in", "timestamp": "1750263773",
                          "text": {"body": "hi"}, "type": "text"}]}))]}]});
        assert_eq!(signed(&p, &incoming), vec![]);
        let errors = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change(json!({
            "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."}}]}))]}]});
        assert_eq!(signed(&p, &errors), vec![]);
        assert_eq!(
            signed(&p, &json!({"object": "whatsapp_business_account"})),
            vec![]
        );
        // Still authenticated, and still JSON.
        let body = incoming.to_string();
        assert_eq!(parse(&p, &body, None), Err(ReceiptError::Forged));
        let junk = "not json";
        assert!(matches!(
            parse(
                &p,
                junk,
                Some(&hub_signature("app-secret-1", junk.as_bytes()))
            ),
            Err(ReceiptError::Malformed(_))
        ));
    }

    // Template languages are Meta's codes ("Supported languages" page): a locale maps to
    // the template's own languages, with a fallback, never to one it lacks.
    #[tokio::test]
    async fn locales_map_to_the_templates_languages_with_a_fallback() {
        let approved = vec!["en_US".to_string(), "fr".to_string(), "pt_BR".to_string()];
        for (locale, want) in [
            ("fr-CA", "fr"),
            ("fr", "fr"),
            ("pt-BR", "pt_BR"),
            ("pt-PT", "en_US"),
            ("en-GB", "en_US"),
            ("sw", "en_US"),
        ] {
            assert_eq!(whatsapp_language(locale, &approved), want, "{locale}");
        }
        // Without a list: Meta's supported codes, then the language, then en_US.
        for (locale, want) in [
            ("fr-CA", "fr_CA"),
            ("fr-LU", "fr"),
            ("pt", "en_US"),
            ("pt-BR", "pt_BR"),
            ("en", "en"),
            ("xx-YY", "en_US"),
        ] {
            assert_eq!(whatsapp_language(locale, &[]), want, "{locale}");
        }
        let f = FakeApi::start(200, json!({"messages": [{"id": "wamid.1"}]})).await;
        let mut c = config(Some(f.url.clone()));
        c.template_languages = approved;
        let p = WhatsappCloudProvider::new(&c).unwrap();
        p.send(&message(Channel::Whatsapp, "+14155550123", "x", "fr-CA"))
            .await
            .unwrap();
        assert_eq!(f.last().json()["template"]["language"]["code"], "fr");
        c.template_languages = vec!["fr-CA".into()];
        assert!(WhatsappCloudProvider::new(&c).is_err());
    }

    #[test]
    fn the_webhook_subscription_check_echoes_the_challenge_only_for_the_token() {
        let mut c = config(None);
        c.verify_token = Some("verify-me".to_string().into());
        let p = WhatsappCloudProvider::new(&c).unwrap();
        let q = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me";
        assert_eq!(p.verify_subscription(q), Some(Ok("1158201444".into())));
        let wrong = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess";
        assert_eq!(
            p.verify_subscription(wrong),
            Some(Err(ReceiptError::Forged))
        );
        assert_eq!(
            p.verify_subscription("hub.mode=subscribe&hub.challenge=1"),
            Some(Err(ReceiptError::Forged))
        );
        let bad = "hub.mode=subscribe&hub.challenge=%3Cscript%3E%20x&hub.verify_token=verify-me";
        assert!(matches!(
            p.verify_subscription(bad),
            Some(Err(ReceiptError::Malformed(_)))
        ));
        let no_token = WhatsappCloudProvider::new(&config(None)).unwrap();
        assert_eq!(
            no_token.verify_subscription(q),
            Some(Err(ReceiptError::Forged))
        );
    }

    #[test]
    fn status_webhooks_are_verified_and_mapped() {
        let p = WhatsappCloudProvider::new(&config(None)).unwrap();
        let body = webhook("delivered");
        let sig = hub_signature("app-secret-1", body.as_bytes());
        let r = parse(&p, &body, Some(&sig)).unwrap();
        assert_eq!(r[0].message_id, "wamid.X");
        assert_eq!(r[0].status, ReceiptStatus::Delivered);
        let failed = webhook("failed");
        let r = parse(
            &p,
            &failed,
            Some(&hub_signature("app-secret-1", failed.as_bytes())),
        )
        .unwrap();
        assert_eq!(r[0].status, ReceiptStatus::Failed);
        assert_eq!(r[0].error.as_deref(), Some("WhatsApp error 131026"));
        let sent = webhook("sent");
        let r = parse(
            &p,
            &sent,
            Some(&hub_signature("app-secret-1", sent.as_bytes())),
        )
        .unwrap();
        assert_eq!(r, vec![], "an intermediate status reports nothing");
        assert_eq!(parse(&p, &body, None), Err(ReceiptError::Forged));
        assert_eq!(parse(&p, &failed, Some(&sig)), Err(ReceiptError::Forged));
        let wrong = hub_signature("other", body.as_bytes());
        assert_eq!(parse(&p, &body, Some(&wrong)), Err(ReceiptError::Forged));
    }
}
