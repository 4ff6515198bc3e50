//! The `msg91` provider: SMS in India through MSG91's Flow API, with a DLT-registered
//! template per locale, and its delivery webhooks.
//!
//! Built from MSG91's "Send SMS via FLOW" reference
//! (<https://control.msg91.com/apidoc/textsms/send-sms-flow.php>), its template help
//! (<https://msg91.com/help/template/how-to-create-flow-id-to-send-sms-via-api>) and its
//! webhook help (<https://msg91.com/help/webhooks/how-can-i-get-the-delivery-reports-on-my-webhook-url>);
//! MSG91 publishes no official SDK on PyPI or npm.
//!
//! Indian regulation (TRAI's DLT) lets an SMS through only when its sender id (header)
//! and its exact text are registered under the sender's principal entity id. In MSG91 a
//! *template* carries that registration: its DLT template id, the sender id mapped to the
//! entity, and the approved text with variables (`##OTP##`); MSG91 shows "Verified by
//! DLT" once it matches. otpd therefore sends no free text: it picks the MSG91 template
//! of the message's locale (`templates = { en = "…", hi = "…" }`, by locale, then
//! language, then `template`) and fills its variable (`template_variable`, default
//! `OTP`) with the code. `dlt_entity_id` and `dlt_template_ids` document the
//! registration the templates must match; `config check` refuses a locale whose template
//! has no DLT template id.
//!
//! **Send**: `POST {url}/api/v5/flow/` (default `https://control.msg91.com`), header
//! `authkey: <api_key>`, JSON `{"template_id", "sender": from, "short_url": "0",
//! "recipients": [{"mobiles": "91…", "<template_variable>": "<code>"}]}`. A 2xx
//! `{"type": "success", "message": "<request id>"}` is accepted (the request id names the
//! webhooks); `{"type": "error", "message", "code"}` (MSG91 answers many errors with 200)
//! is permanent; 429 and 5xx (and no answer) transient.
//!
//! **Webhooks** (the SMS webhook of MSG91's panel, version 3: JSON `{"requestId",
//! "number", "status", "desc"}`; version 2: a form whose `data` is a JSON array of
//! `{"requestId", "report": [{"status", "desc", "number"}]}`): status `1` is delivered;
//! `2` failed, `9` NDNC, `16`/`25` rejected and `17` blocked failed; others intermediate.
//! MSG91 signs nothing, so webhooks are believed only with the operator's `receipt_token`
//! in the webhook URL ([`super::callback`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{ApiReply, callback, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// MSG91's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://control.msg91.com";

/// Sends SMS through MSG91.
pub struct Msg91Provider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    sender: String,
    default_template: Option<String>,
    templates: BTreeMap<String, String>,
    variable: String,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl Msg91Provider {
    /// From its config entry: `api_key` (the authkey), `from` (the DLT-registered sender
    /// id), `dlt_entity_id` and a template (`template` or `templates`) whose DLT template
    /// id is in `dlt_template_ids` are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind msg91 needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind msg91 serves only channel \"sms\""
            ));
        }
        let key = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key (the MSG91 authkey)"))?;
        let sender = config
            .from
            .clone()
            .ok_or_else(|| need("from (the sender id registered on DLT, 6 characters)"))?;
        let entity = config
            .dlt_entity_id
            .as_deref()
            .ok_or_else(|| need("dlt_entity_id (the principal entity id registered on DLT)"))?;
        if entity.is_empty() || !entity.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "provider '{name}': dlt_entity_id is the numeric DLT principal entity id"
            ));
        }
        if config.template.is_none() && config.templates.is_empty() {
            return Err(need(
                "template (an MSG91 template id) or templates (per locale)",
            ));
        }
        // Each MSG91 template must name its DLT registration.
        let mut all: Vec<(&str, &str)> = config
            .templates
            .iter()
            .map(|(l, t)| (l.as_str(), t.as_str()))
            .collect();
        if let Some(t) = &config.template {
            all.push(("default", t.as_str()));
        }
        for (locale, template) in all {
            if !config.dlt_template_ids.contains_key(template) {
                return Err(format!(
                    "provider '{name}': the MSG91 template {template:?} ({locale}) needs its DLT template id in dlt_template_ids"
                ));
            }
        }
        let headers = credential_header(config, "authkey", &key)?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(Msg91Provider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/api/v5/flow/", base.trim_end_matches('/')),
            sender,
            default_template: config.template.clone(),
            templates: config.templates.clone(),
            variable: config
                .template_variable
                .clone()
                .unwrap_or_else(|| "OTP".into()),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }

    /// The template of a locale: the locale itself, its language, else the default.
    fn template_for(&self, locale: &str) -> Option<&str> {
        let language = locale.split(['-', '_']).next().unwrap_or_default();
        self.templates
            .iter()
            .find(|(l, _)| l.eq_ignore_ascii_case(locale))
            .or_else(|| {
                self.templates
                    .iter()
                    .find(|(l, _)| l.eq_ignore_ascii_case(language))
            })
            .map(|(_, t)| t.as_str())
            .or(self.default_template.as_deref())
    }
}

#[async_trait]
impl Provider for Msg91Provider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let template = self.template_for(&m.locale).ok_or_else(|| {
            ProviderError::Permanent(format!("MSG91 has no template for locale {}", m.locale))
        })?;
        let mut recipient = serde_json::Map::new();
        recipient.insert("mobiles".into(), m.to.trim_start_matches('+').into());
        recipient.insert(self.variable.clone(), m.code.as_str().into());
        let body = serde_json::json!({
            "template_id": template,
            "sender": self.sender,
            "short_url": "0",
            "recipients": [recipient],
        });
        let reply = ApiReply::fetch(self.client.post(&self.endpoint).json(&body)).await?;
        let detail = || {
            json_str(reply.json.as_ref(), "/code")
                .or_else(|| reply.code("/code").map(|c| c.to_string()))
                .map(|c| format!(" code {}", c.chars().take(12).collect::<String>()))
                .unwrap_or_default()
        };
        if !reply.status.is_success() {
            return Err(super::status_error("MSG91", reply.status, &detail()));
        }
        if json_str(reply.json.as_ref(), "/type").as_deref() != Some("success") {
            return Err(ProviderError::Permanent(format!(
                "MSG91 refused the message{}",
                detail()
            )));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/message"),
        })
    }

    fn parse_receipt_batch(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request)
                .and_then(|()| webhook_reports(request)),
        )
    }
}

/// Every report of an MSG91 SMS webhook (version 3: one JSON object; version 2: a form
/// whose `data` holds a JSON array of requests with their `report`s).
pub fn webhook_reports(request: &ReceiptRequest<'_>) -> Result<Vec<ParsedReceipt>, ReceiptError> {
    let body = request.body.trim_ascii_start();
    let mut out = Vec::new();
    if body.starts_with(b"{") || body.starts_with(b"[") {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| ReceiptError::Malformed("the body is not JSON".into()))?;
        let items = json.as_array().cloned().unwrap_or_else(|| vec![json]);
        for item in &items {
            if let Some(r) = report(item, item) {
                out.push(r);
            }
        }
        return Ok(out);
    }
    let params = callback::params(request)?;
    let data = callback::require(&params, "data")?;
    let requests: Vec<serde_json::Value> = serde_json::from_str(data)
        .map_err(|_| ReceiptError::Malformed("data is not a JSON array".into()))?;
    for req in &requests {
        for item in req
            .get("report")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(r) = report(req, item) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// One report: the request id from `request`, the status from `item`.
fn report(request: &serde_json::Value, item: &serde_json::Value) -> Option<ParsedReceipt> {
    let id = json_str(Some(request), "/requestId")?;
    let code = item
        .get("status")
        .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
        .unwrap_or_default();
    let status = match code.as_str() {
        "1" => ReceiptStatus::Delivered,
        "2" | "9" | "16" | "17" | "25" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    let desc = json_str(Some(item), "/desc").unwrap_or_default();
    Some(ParsedReceipt {
        message_id: id,
        status,
        error: (status == ReceiptStatus::Failed).then(|| {
            format!("MSG91 {code} {}", desc.chars().take(60).collect::<String>())
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

    const KEY: &str = "e2e-msg91-authkey";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "msg91".into(),
            kind: "msg91".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some(KEY.into()),
            from: Some("ACMEIN".into()),
            dlt_entity_id: Some("1201159543060917386".into()),
            template: Some("6561e0d0d6fc0539a7253ef2".into()),
            templates: BTreeMap::from([("hi".to_string(), "6561e0d0d6fc0539a7253ef3".to_string())]),
            dlt_template_ids: BTreeMap::from([
                (
                    "6561e0d0d6fc0539a7253ef2".to_string(),
                    "1207170124467412345".to_string(),
                ),
                (
                    "6561e0d0d6fc0539a7253ef3".to_string(),
                    "1207170124467412346".to_string(),
                ),
            ]),
            receipt_token: Some("tok".to_string().into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn posts_the_documented_flow_with_the_locales_template_and_the_code() {
        let f = FakeApi::start(
            200,
            json!({"message": "3465686b6c34353536373839", "type": "success"}),
        )
        .await;
        let p = Msg91Provider::new(&config(&f.url)).unwrap();
        let sms = message(
            Channel::Sms,
            "+919812345678",
            "Your code is 123456.",
            "hi-IN",
        );
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("3465686b6c34353536373839".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/api/v5/flow/");
        assert_eq!(seen.header("authkey"), KEY);
        assert_eq!(
            seen.json(),
            json!({"template_id": "6561e0d0d6fc0539a7253ef3", "sender": "ACMEIN", "short_url": "0",
                   "recipients": [{"mobiles": "919812345678", "OTP": "123456"}]})
        );
        p.send(&message(Channel::Sms, "+919812345678", "x", "en"))
            .await
            .unwrap();
        assert_eq!(f.last().json()["template_id"], "6561e0d0d6fc0539a7253ef2");
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let f = FakeApi::start(
            200,
            json!({"type": "error", "message": "Invalid template", "code": "418"}),
        )
        .await;
        let p = Msg91Provider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+919812345678", "x", "en");
        assert_eq!(
            p.send(&sms).await,
            Err(ProviderError::Permanent(
                "MSG91 refused the message code 418".into()
            ))
        );
        for (http, transient) in [
            (400, false),
            (401, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(
                http,
                json!({"type": "error", "message": "x", "code": "106"}),
            );
            let err = p.send(&sms).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains(KEY));
        }
    }

    #[test]
    fn config_check_names_each_missing_key_and_unregistered_templates() {
        for (key, strip) in [
            (
                "api_key",
                (|c: &mut ProviderConfig| c.api_key = None) as fn(&mut ProviderConfig),
            ),
            ("from", |c| c.from = None),
            ("dlt_entity_id", |c| c.dlt_entity_id = None),
            ("template", |c| {
                c.template = None;
                c.templates.clear();
            }),
        ] {
            let mut c = config("http://x");
            strip(&mut c);
            let err = Msg91Provider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {key}")), "{err}");
        }
        let mut c = config("http://x");
        c.dlt_template_ids.remove("6561e0d0d6fc0539a7253ef3");
        assert!(
            Msg91Provider::new(&c)
                .err()
                .unwrap()
                .contains("(hi) needs its DLT template id")
        );
    }

    #[test]
    fn webhooks_of_both_versions_are_read_with_the_token() {
        let p = Msg91Provider::new(&config("http://x")).unwrap();
        let h = HeaderMap::new();
        let parse = |query: &str, body: &str| {
            p.parse_receipt_batch(&ReceiptRequest {
                headers: &h,
                query,
                body: body.as_bytes(),
                now: chrono::Utc::now(),
            })
            .unwrap()
        };
        // Version 3 (MSG91's sample).
        let v3 = json!({"date": "2024-05-22 09:58:16", "number": "9195XXXX6558", "senderId": "ACMEIN",
            "amount": "0.01", "requestId": "346XXXXXXXXXXXX130", "INMSID": "0", "CRQID": "0",
            "credit": "1", "userId": "27XXXX", "campaignName": "Sendhttp", "status": "1", "desc": "DELIVERED"}).to_string();
        let got = parse("token=tok", &v3).unwrap();
        assert_eq!(
            got,
            vec![ParsedReceipt {
                message_id: "346XXXXXXXXXXXX130".into(),
                status: ReceiptStatus::Delivered,
                error: None
            }]
        );
        assert_eq!(parse("", &v3), Err(ReceiptError::Forged));
        assert_eq!(parse("token=no", &v3), Err(ReceiptError::Forged));
        // Version 2: a form with data.
        let data = json!([{"senderId": "ACMEIN", "requestId": "346XXXXXXXXXXXX131", "report": [
            {"date": "2024-05-22 10:06:20", "number": "9195XXXX6558", "status": "17", "desc": "BLOCKED", "failedReason": "Blocked number"}],
            "userId": "27XXXX", "campaignName": "Sendhttp"}]).to_string();
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", &data)
            .finish();
        let got = parse("token=tok", &form).unwrap();
        assert_eq!(got[0].status, ReceiptStatus::Failed);
        assert_eq!(got[0].error.as_deref(), Some("MSG91 17 BLOCKED"));
    }
}
