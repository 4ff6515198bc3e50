//! The `infobip` provider: SMS through Infobip's SMS API v3, voice through its
//! text-to-speech API, WhatsApp authentication templates through its WhatsApp API, and
//! their delivery reports.
//!
//! Built from Infobip's API reference (<https://www.infobip.com/docs/api/channels/sms/sms-messaging/outbound-sms/send-sms-messages>,
//! <https://www.infobip.com/docs/api/channels/voice/send-advanced-voice-tts>) and the
//! models of its official Python client (`infobip-api-python-client`: `SmsRequest`,
//! `CallsAdvancedBody`, `SmsDeliveryResult`, `CallsReportResponse`). That client has no
//! model of the WhatsApp API; its WhatsApp request and report are those of Infobip's
//! generated clients for other languages (the OpenAPI models `WhatsAppBulkMessage`,
//! `WhatsAppMessage`, `WhatsAppTemplateContent`, `WhatsAppTemplateDataContent`,
//! `WhatsAppTemplateCopyCodeButtonContent`, `WhatsAppWebhookDeliveryReport`; `WhatsAppApi`
//! `sendWhatsAppTemplateMessage`) and Infobip's tutorial "Authenticate users with a
//! WhatsApp template message" (authentication templates are created with a `COPY_CODE`
//! button).
//!
//! - SMS: `POST {url}/sms/3/messages`, `Authorization: App <api_key>`, JSON
//!   `{"messages": [{"sender": from, "destinations": [{"to": "<digits>", "messageId":
//!   "<otpd's message id>"}], "content": {"text"}, "webhooks": {"delivery": {"url"},
//!   "contentType": "application/json"}}]}`.
//! - Voice: `POST {url}/tts/3/advanced`, JSON `{"messages": [{"from", "destinations": [{"to",
//!   "messageId"}], "text", "language", "notifyUrl", "notifyContentType":
//!   "application/json"}]}` with the locale's TTS language (`fr-CA` → `fr-ca`, `de-AT` → `de-at`,
//!   else its language, else `en`).
//! - WhatsApp: `POST {url}/whatsapp/1/message/template`, JSON `{"messages": [{"from":
//!   whatsapp_from, "to": "<digits>", "messageId", "content": {"templateName": template,
//!   "templateData": {"body": {"placeholders": [code]}, "buttons": [{"type": "COPY_CODE",
//!   "parameter": code}]}, "language"}, "notifyUrl"}]}`: the approved authentication
//!   template with the code as its one placeholder and as its copy-code button's
//!   parameter, in the message's locale mapped to a language the template is approved in
//!   (`template_languages`, Meta's codes, as for `whatsapp_cloud`).
//!
//! `url` is the account's own base URL (`https://xxxxx.api.infobip.com`). A 2xx reply is
//! accepted unless its message's `status.groupName` is `REJECTED` (permanent; e.g. an
//! invalid destination); 429 and 5xx (and no answer) are transient; other statuses (400
//! bad request, 401 bad key, 403) permanent, naming Infobip's `messageId` error code.
//! otpd names each message itself (`messageId`), so reports match it directly.
//!
//! Delivery reports (SMS, voice and WhatsApp alike: the WhatsApp report's fields are a
//! subset of the SMS report's) are `{"results": [{"messageId", "status":
//! {"groupName"}, "error": {"name"}}]}`, any number at once: `DELIVERED` is delivered;
//! `UNDELIVERABLE`, `EXPIRED`, `REJECTED` failed; `PENDING`/`ACCEPTED` intermediate.
//! Infobip signs nothing, so reports are believed only with the operator's
//! `receipt_token` in the report URL ([`super::callback`]).

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{ApiReply, callback, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};
use crate::render::whatsapp_language;

/// Infobip's text-to-speech languages (the `CallsLanguage` codes of its API).
const TTS_LANGUAGES: &[&str] = &[
    "ar", "bn", "bg", "ca", "zh-cn", "zh-tw", "hr", "cs", "da", "nl", "en", "en-au", "en-gb",
    "en-ca", "en-in", "en-ie", "fi", "fr", "fr-ca", "fr-ch", "de", "de-at", "de-ch", "el", "gu",
    "he", "hi", "hu", "is", "id", "it", "ja", "kn", "ko", "ms", "ml", "no", "pl", "pt-pt", "pt-br",
    "ro", "ru", "sk", "sl", "es", "es-ar", "es-mx", "sv", "ta", "te", "th", "tr", "uk", "vi",
    "ur-pk", "mr-in", "sw-ke", "sw-tz",
];

/// Sends SMS, voice calls and WhatsApp templates through Infobip.
pub struct InfobipProvider {
    name: String,
    channels: Vec<Channel>,
    base: String,
    from: String,
    voice_from: String,
    whatsapp_from: String,
    template: Option<String>,
    template_languages: Vec<String>,
    report_url: Option<String>,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl InfobipProvider {
    /// From its config entry: `url` (the account's base URL), `api_key` and `from` are
    /// required; `template` too for WhatsApp.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind infobip needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Voice | Channel::Whatsapp))
        {
            return Err(format!(
                "provider '{name}': kind infobip serves only channels \"sms\", \"voice\" and \"whatsapp\""
            ));
        }
        let base = config
            .url
            .clone()
            .ok_or_else(|| need("url (the account's base URL, https://xxxxx.api.infobip.com)"))?;
        let key = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key"))?;
        let from = config
            .from
            .clone()
            .ok_or_else(|| need("from (a sender id or number)"))?;
        let whatsapp = config.channels.contains(&Channel::Whatsapp);
        if whatsapp && config.template.is_none() {
            return Err(need(
                "template (the name of the approved WhatsApp authentication template) for channel \"whatsapp\"",
            ));
        }
        let headers = credential_header(config, "authorization", &format!("App {key}"))?;
        Ok(InfobipProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            base: base.trim_end_matches('/').to_string(),
            voice_from: config.voice_from.clone().unwrap_or_else(|| from.clone()),
            whatsapp_from: config.whatsapp_from.clone().unwrap_or_else(|| from.clone()),
            template: config.template.clone(),
            template_languages: super::whatsapp_cloud::check_languages(config)?,
            from,
            report_url: config.status_callback_url.clone(),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }

    fn sms_body(&self, m: &OutboundMessage) -> serde_json::Value {
        let mut message = serde_json::json!({
            "sender": self.from,
            "destinations": [{"to": m.to.trim_start_matches('+'), "messageId": m.message_id}],
            "content": {"text": m.body.as_str()},
        });
        if let Some(url) = &self.report_url {
            message["webhooks"] =
                serde_json::json!({"delivery": {"url": url}, "contentType": "application/json"});
        }
        serde_json::json!({"messages": [message]})
    }

    fn voice_body(&self, m: &OutboundMessage) -> serde_json::Value {
        let mut message = serde_json::json!({
            "from": self.voice_from,
            "destinations": [{"to": m.to.trim_start_matches('+'), "messageId": m.message_id}],
            "text": m.body.as_str(),
            "language": tts_language(&m.locale),
        });
        if let Some(url) = &self.report_url {
            message["notifyUrl"] = url.as_str().into();
            message["notifyContentType"] = "application/json".into();
        }
        serde_json::json!({"messages": [message]})
    }
}

impl InfobipProvider {
    fn whatsapp_body(&self, m: &OutboundMessage, template: &str) -> serde_json::Value {
        let code = m.code.as_str();
        let mut message = serde_json::json!({
            "from": self.whatsapp_from,
            "to": m.to.trim_start_matches('+'),
            "messageId": m.message_id,
            "content": {
                "templateName": template,
                "templateData": {
                    "body": {"placeholders": [code]},
                    "buttons": [{"type": "COPY_CODE", "parameter": code}],
                },
                "language": whatsapp_language(&m.locale, &self.template_languages),
            },
        });
        if let Some(url) = &self.report_url {
            message["notifyUrl"] = url.as_str().into();
        }
        serde_json::json!({"messages": [message]})
    }
}

/// The TTS language of a locale: `fr-CA` → `fr-ca` when Infobip has it, else `fr`, else
/// `en`.
pub fn tts_language(locale: &str) -> &'static str {
    let locale = locale.replace('_', "-").to_ascii_lowercase();
    let primary = locale.split('-').next().unwrap_or_default().to_string();
    TTS_LANGUAGES
        .iter()
        .find(|l| **l == locale)
        .or_else(|| TTS_LANGUAGES.iter().find(|l| **l == primary))
        .copied()
        .unwrap_or("en")
}

#[async_trait]
impl Provider for InfobipProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let (path, body) = match (m.channel, &self.template) {
            (Channel::Voice, _) => ("/tts/3/advanced", self.voice_body(m)),
            (Channel::Whatsapp, Some(template)) => (
                "/whatsapp/1/message/template",
                self.whatsapp_body(m, template),
            ),
            (Channel::Whatsapp, None) => {
                return Err(ProviderError::Permanent(
                    "no WhatsApp template is configured".into(),
                ));
            }
            _ => ("/sms/3/messages", self.sms_body(m)),
        };
        let url = format!("{}{path}", self.base);
        let reply = ApiReply::fetch(self.client.post(&url).json(&body)).await?;
        if !reply.status.is_success() {
            let detail = json_str(
                reply.json.as_ref(),
                "/requestError/serviceException/messageId",
            )
            .map(|c| format!(" {}", c.chars().take(40).collect::<String>()))
            .unwrap_or_default();
            return Err(super::status_error("Infobip", reply.status, &detail));
        }
        let group = json_str(reply.json.as_ref(), "/messages/0/status/groupName");
        if group.as_deref() == Some("REJECTED") {
            let name = json_str(reply.json.as_ref(), "/messages/0/status/name").unwrap_or_default();
            return Err(ProviderError::Permanent(format!(
                "Infobip rejected the message: {}",
                name.chars().take(40).collect::<String>()
            )));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/messages/0/messageId")
                .or_else(|| Some(m.message_id.clone())),
        })
    }

    fn parse_receipt_batch(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request)
                .and_then(|()| reports(request.body)),
        )
    }
}

/// The final reports of a delivery-report callback.
pub fn reports(body: &[u8]) -> Result<Vec<ParsedReceipt>, ReceiptError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ReceiptError::Malformed("the body is not JSON".into()))?;
    let results = json
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or_else(|| ReceiptError::Malformed("no results".into()))?;
    let mut out = Vec::new();
    for r in results {
        let Some(id) = json_str(Some(r), "/messageId") else {
            continue;
        };
        let group = json_str(Some(r), "/status/groupName").unwrap_or_default();
        let status = match group.as_str() {
            "DELIVERED" => ReceiptStatus::Delivered,
            "UNDELIVERABLE" | "EXPIRED" | "REJECTED" => ReceiptStatus::Failed,
            _ => ReceiptStatus::Pending,
        };
        let detail = json_str(Some(r), "/error/name")
            .or_else(|| json_str(Some(r), "/status/name"))
            .unwrap_or_default();
        out.push(ParsedReceipt {
            message_id: id,
            status,
            error: (status == ReceiptStatus::Failed).then(|| {
                format!(
                    "Infobip {group} {}",
                    detail.chars().take(60).collect::<String>()
                )
                .trim_end()
                .to_string()
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    const KEY: &str = "e2e0123456789abcdef0123456789abc-01234567-89ab-cdef-0123-456789abcdef";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "ib".into(),
            kind: "infobip".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms, Channel::Voice],
            timeout_ms: 2000,
            api_key: Some(KEY.into()),
            from: Some("InfoSMS".into()),
            voice_from: Some("41793026700".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/ib?token=t".into()),
            receipt_token: Some("t".to_string().into()),
            ..Default::default()
        }
    }

    fn accepted(id: &str) -> serde_json::Value {
        json!({"bulkId": "2034072219640523072", "messages": [{"messageId": id,
            "status": {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED",
                       "description": "Message sent to next instance"},
            "destination": "41793026727"}]})
    }

    #[tokio::test]
    async fn an_sms_is_the_documented_v3_request() {
        let f = FakeApi::start(200, accepted("dlv_1")).await;
        let p = InfobipProvider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+41793026727", "Your code is 123456.", "en");
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("dlv_1".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/sms/3/messages");
        assert_eq!(seen.header("authorization"), format!("App {KEY}"));
        assert_eq!(
            seen.json(),
            json!({"messages": [{"sender": "InfoSMS",
                "destinations": [{"to": "41793026727", "messageId": "dlv_1"}],
                "content": {"text": "Your code is 123456."},
                "webhooks": {"delivery": {"url": "https://otp.example.com/v1/receipts/ib?token=t"},
                             "contentType": "application/json"}}]})
        );
    }

    #[tokio::test]
    async fn a_call_is_the_documented_tts_request() {
        let f = FakeApi::start(200, accepted("dlv_1")).await;
        let p = InfobipProvider::new(&config(&f.url)).unwrap();
        let call = message(
            Channel::Voice,
            "+41793026727",
            "Your code is 1, 2, 3.",
            "fr-CA",
        );
        p.send(&call).await.unwrap();
        let seen = f.last();
        assert_eq!(seen.path, "/tts/3/advanced");
        assert_eq!(
            seen.json(),
            json!({"messages": [{"from": "41793026700",
                "destinations": [{"to": "41793026727", "messageId": "dlv_1"}],
                "text": "Your code is 1, 2, 3.", "language": "fr-ca",
                "notifyUrl": "https://otp.example.com/v1/receipts/ib?token=t",
                "notifyContentType": "application/json"}]})
        );
        assert_eq!(tts_language("de-BE"), "de");
        assert_eq!(tts_language("xx"), "en");
        assert_eq!(tts_language("pt_BR"), "pt-br");
    }

    // The shape of Infobip's generated WhatsApp models (`WhatsAppBulkMessage` →
    // `WhatsAppMessage` → `WhatsAppTemplateContent`, a `COPY_CODE` button).
    #[tokio::test]
    async fn a_whatsapp_code_is_the_authentication_template_request() {
        let f = FakeApi::start(200, accepted("dlv_1")).await;
        let mut c = config(&f.url);
        c.channels = vec![Channel::Sms, Channel::Whatsapp];
        c.whatsapp_from = Some("447860099299".into());
        c.template = Some("otp_copy_code".into());
        c.template_languages = vec!["en".into(), "pt_BR".into()];
        let p = InfobipProvider::new(&c).unwrap();
        let wa = message(Channel::Whatsapp, "+41793026727", "unused", "pt-BR");
        assert_eq!(
            p.send(&wa).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("dlv_1".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/whatsapp/1/message/template");
        assert_eq!(seen.header("authorization"), format!("App {KEY}"));
        assert_eq!(
            seen.json(),
            json!({"messages": [{"from": "447860099299", "to": "41793026727", "messageId": "dlv_1",
                "content": {"templateName": "otp_copy_code",
                    "templateData": {"body": {"placeholders": ["123456"]},
                                     "buttons": [{"type": "COPY_CODE", "parameter": "123456"}]},
                    "language": "pt_BR"},
                "notifyUrl": "https://otp.example.com/v1/receipts/ib?token=t"}]})
        );
        // A locale the template lacks falls back to its first language.
        p.send(&message(Channel::Whatsapp, "+41793026727", "", "de-AT"))
            .await
            .unwrap();
        assert_eq!(f.last().json()["messages"][0]["content"]["language"], "en");
        // A rejected template message (e.g. a number without WhatsApp) fails over.
        f.reply(200, json!({"messages": [{"messageId": "dlv_1", "to": "41793026727",
            "status": {"groupId": 5, "groupName": "REJECTED", "id": 52, "name": "REJECTED_DESTINATION"}}]}));
        assert_eq!(
            p.send(&wa).await,
            Err(ProviderError::Permanent(
                "Infobip rejected the message: REJECTED_DESTINATION".into()
            ))
        );
    }

    #[test]
    fn whatsapp_needs_a_template() {
        let mut c = config("http://x");
        c.channels = vec![Channel::Whatsapp];
        let err = InfobipProvider::new(&c).err().unwrap();
        assert!(err.contains("needs template"), "{err}");
        c.template = Some("otp".into());
        c.template_languages = vec!["xx_YY".into()];
        assert!(InfobipProvider::new(&c).is_err());
        c.channels = vec![Channel::Email];
        assert!(InfobipProvider::new(&c).is_err());
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let f = FakeApi::start(200, accepted("dlv_1")).await;
        let p = InfobipProvider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+41793026727", "x", "en");
        for (http, transient) in [
            (400, false),
            (401, false),
            (403, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(http, json!({"requestError": {"serviceException": {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}}}));
            let err = p.send(&sms).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(err.to_string().contains("UNAUTHORIZED"));
            assert!(!err.to_string().contains(KEY));
        }
        f.reply(200, json!({"messages": [{"messageId": "dlv_1", "status": {"groupId": 5, "groupName": "REJECTED", "id": 51, "name": "MISSING_TO"}}]}));
        assert_eq!(
            p.send(&sms).await,
            Err(ProviderError::Permanent(
                "Infobip rejected the message: MISSING_TO".into()
            ))
        );
    }

    #[test]
    fn config_check_names_each_missing_key() {
        for (key, strip) in [
            (
                "url",
                (|c: &mut ProviderConfig| c.url = None) as fn(&mut ProviderConfig),
            ),
            ("api_key", |c| c.api_key = None),
            ("from", |c| c.from = None),
        ] {
            let mut c = config("http://x");
            strip(&mut c);
            let err = InfobipProvider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {key}")), "{err}");
        }
    }

    #[test]
    fn reports_are_believed_with_the_token_and_read_in_batches() {
        let p = InfobipProvider::new(&config("http://x")).unwrap();
        // The shape of Infobip's delivery report example.
        let body = json!({"results": [
            {"bulkId": "BULK-1", "messageId": "dlv_1", "to": "41793026727",
             "sentAt": "2026-12-07T04:20:00.000+0000", "doneAt": "2026-12-07T04:20:02.000+0000",
             "messageCount": 1, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
             "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
             "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": false}},
            {"messageId": "dlv_2", "status": {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"},
             "error": {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "permanent": false}},
            {"messageId": "dlv_3", "status": {"groupId": 1, "groupName": "PENDING", "id": 3, "name": "PENDING_WAITING_DELIVERY"}}]})
        .to_string();
        let h = HeaderMap::new();
        let req = |query| ReceiptRequest {
            headers: &h,
            query,
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        };
        let got = p.parse_receipt_batch(&req("token=t")).unwrap().unwrap();
        assert_eq!(
            got.iter().map(|r| r.status).collect::<Vec<_>>(),
            [
                ReceiptStatus::Delivered,
                ReceiptStatus::Failed,
                ReceiptStatus::Pending
            ]
        );
        assert_eq!(
            got[1].error.as_deref(),
            Some("Infobip UNDELIVERABLE EC_ABSENT_SUBSCRIBER")
        );
        assert_eq!(
            p.parse_receipt_batch(&req("token=x")).unwrap(),
            Err(ReceiptError::Forged)
        );
        assert_eq!(
            p.parse_receipt_batch(&req("")).unwrap(),
            Err(ReceiptError::Forged)
        );
    }
}
