//! The `africastalking` provider: SMS through Africa's Talking's messaging API, its
//! delivery reports, and USSD.
//!
//! **SMS**: `POST {url}/version1/messaging` (default `https://api.africastalking.com`; the
//! sandbox is `https://api.sandbox.africastalking.com`), headers `apiKey: <api_key>` and
//! `Accept: application/json`, form `username`, `to` (E.164), `message`, `from` (sender
//! id or short code, optional). The reply is `201 {"SMSMessageData": {"Message",
//! "Recipients": [{"statusCode", "status", "number", "cost", "messageId"}]}}`: recipient
//! status codes 100 (processed), 101 (sent) and 102 (queued) are accepted; 500 (internal
//! error) and 501 (gateway error) are transient; the others (401 risk hold, 402 invalid
//! sender id, 403 invalid number, 404 unsupported number type, 405 insufficient balance,
//! 406 blacklisted, 407 could not route, 409 do-not-disturb, 502 rejected by gateway)
//! are permanent. HTTP 408, 429, 5xx and connection errors are transient, other HTTP
//! errors permanent.
//!
//! **Delivery reports** are form POSTs with `id` (the `messageId`), `status`,
//! `phoneNumber`, `networkCode`, `failureReason`: `Success` is delivered, `Failed` and
//! `Rejected` failed, `Sent`/`Submitted`/`Buffered` intermediate. Africa's Talking signs
//! nothing, so a report is believed only with the operator's `receipt_token` in the
//! callback URL ([`super::callback`]).
//!
//! **USSD** is pulled by the user: they dial the service code and Africa's Talking POSTs
//! `sessionId`, `serviceCode`, `phoneNumber`, `text` to otpd's USSD callback, which
//! answers `text/plain` `END <message>`. So a `ussd` send calls nothing: the message is
//! held (sealed, in the delivery) until that number dials in ([`UssdSession`]); a user who
//! does not dial before the receipt timeout gets the code by the next provider or channel.

use async_trait::async_trait;
use otpd_core::channel::Channel;
use reqwest::header::{ACCEPT, HeaderValue};
use secrecy::SecretString;

use super::{callback, credential_header, http_client, status_error, transport_error};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus, UssdSession,
};

/// Africa's Talking's API host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.africastalking.com";

/// Recipient status codes that mean accepted.
const ACCEPTED_CODES: &[i64] = &[100, 101, 102];
/// Recipient status codes worth retrying.
const TRANSIENT_CODES: &[i64] = &[500, 501];

/// Sends SMS and serves USSD sessions through Africa's Talking.
pub struct AfricasTalkingProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    username: String,
    from: Option<String>,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl AfricasTalkingProvider {
    /// From its config entry: `username` and `api_key` are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind africastalking needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Ussd))
        {
            return Err(format!(
                "provider '{name}': kind africastalking serves only channels sms and ussd"
            ));
        }
        let key = config.api_key.clone().ok_or_else(|| need("api_key"))?;
        let mut headers = credential_header(config, "apiKey", &key)?;
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(AfricasTalkingProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}/version1/messaging", base.trim_end_matches('/')),
            username: config.username.clone().ok_or_else(|| need("username"))?,
            from: config.from.clone(),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }

    async fn send_sms(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("username", &self.username),
            ("to", &m.to),
            ("message", m.body.as_str()),
        ];
        if let Some(from) = &self.from {
            form.push(("from", from));
        }
        let reply = self
            .client
            .post(&self.endpoint)
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = reply.status();
        if !status.is_success() {
            return Err(status_error("Africa's Talking", status, ""));
        }
        let json: serde_json::Value = reply
            .json()
            .await
            .map_err(|_| ProviderError::Transient("reply is not JSON".into()))?;
        let recipient = json
            .pointer("/SMSMessageData/Recipients/0")
            .ok_or_else(|| ProviderError::Permanent("no recipient in the reply".into()))?;
        let code = recipient
            .get("statusCode")
            .and_then(|c| c.as_i64())
            .unwrap_or_default();
        if ACCEPTED_CODES.contains(&code) {
            return Ok(Accepted::Queued {
                provider_message_id: recipient
                    .get("messageId")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            });
        }
        let msg = format!(
            "Africa's Talking status {code} {}",
            recipient
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
        );
        if TRANSIENT_CODES.contains(&code) {
            Err(ProviderError::Transient(msg))
        } else {
            Err(ProviderError::Permanent(msg))
        }
    }
}

#[async_trait]
impl Provider for AfricasTalkingProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        match m.channel {
            Channel::Sms => self.send_sms(m).await,
            // Held until the number dials in: the USSD callback answers with it.
            Channel::Ussd => Ok(Accepted::Queued {
                provider_message_id: None,
            }),
            other => Err(ProviderError::Permanent(format!(
                "Africa's Talking does not serve {other}"
            ))),
        }
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request)
                .and_then(|()| delivery_report(&callback::params(request)?)),
        )
    }

    fn ussd_session(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<UssdSession, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request).and_then(|()| {
                let params = callback::params(request)?;
                Ok(UssdSession {
                    session_id: callback::require(&params, "sessionId")?.to_string(),
                    phone_number: callback::require(&params, "phoneNumber")?.to_string(),
                })
            }),
        )
    }
}

/// A delivery report's message id and status.
fn delivery_report(params: &[(String, String)]) -> Result<ParsedReceipt, ReceiptError> {
    let id = callback::require(params, "id")?;
    let status = match callback::require(params, "status")? {
        "Success" => ReceiptStatus::Delivered,
        "Failed" | "Rejected" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    Ok(ParsedReceipt {
        message_id: id.to_string(),
        status,
        error: (status == ReceiptStatus::Failed).then(|| {
            let reason = callback::get(params, "failureReason").unwrap_or("no reason given");
            format!(
                "Africa's Talking: {}",
                reason.chars().take(60).collect::<String>()
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::providers::testing::{FakeApi, message, pairs};

    fn reply(code: i64, status: &str) -> Value {
        json!({"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000",
            "Recipients": [{"statusCode": code, "number": "+254711000111", "status": status,
                            "cost": "KES 0.8000", "messageId": "ATPid_SampleTxnId123"}]}})
    }

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "at".into(),
            kind: "africastalking".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms, Channel::Ussd],
            timeout_ms: 2000,
            api_key: Some("atsk_key_1".into()),
            username: Some("sandbox".into()),
            from: Some("AFTKNG".into()),
            receipt_token: Some("tok-1".to_string().into()),
            ..Default::default()
        }
    }

    async fn fake() -> (FakeApi, AfricasTalkingProvider) {
        let f = FakeApi::start(201, reply(101, "Success")).await;
        let p = AfricasTalkingProvider::new(&config(&f.url)).unwrap();
        (f, p)
    }

    fn sms() -> OutboundMessage {
        message(Channel::Sms, "+254711000111", "Your code is 123456.", "sw")
    }

    #[tokio::test]
    async fn posts_the_documented_form_with_the_api_key_header() {
        let (f, p) = fake().await;
        assert_eq!(
            p.send(&sms()).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("ATPid_SampleTxnId123".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/version1/messaging");
        assert_eq!(seen.header("apikey"), "atsk_key_1");
        assert_eq!(seen.header("accept"), "application/json");
        assert_eq!(
            seen.form(),
            pairs(&[
                ("username", "sandbox"),
                ("to", "+254711000111"),
                ("message", "Your code is 123456."),
                ("from", "AFTKNG"),
            ])
        );
    }

    #[tokio::test]
    async fn recipient_status_codes_map_as_documented() {
        let (f, p) = fake().await;
        for code in [100, 102] {
            f.reply(201, reply(code, "Success"));
            assert!(p.send(&sms()).await.is_ok(), "{code}");
        }
        for (code, status, transient) in [
            (403, "InvalidPhoneNumber", false),
            (405, "InsufficientBalance", false),
            (406, "UserInBlacklist", false),
            (409, "DoNotDisturbRejection", false),
            (500, "InternalServerError", true),
            (501, "GatewayError", true),
        ] {
            f.reply(201, reply(code, status));
            let err = p.send(&sms()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{code}"
            );
            assert!(err.to_string().contains(status));
        }
        f.reply(401, json!({}));
        assert!(matches!(
            p.send(&sms()).await,
            Err(ProviderError::Permanent(_))
        ));
        f.reply(503, json!({}));
        assert!(matches!(
            p.send(&sms()).await,
            Err(ProviderError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn a_ussd_send_is_held_without_calling_the_api() {
        let (f, p) = fake().await;
        let got = p
            .send(&message(
                Channel::Ussd,
                "+254711000111",
                "Your code is 123456.",
                "en",
            ))
            .await
            .unwrap();
        assert_eq!(
            got,
            Accepted::Queued {
                provider_message_id: None
            }
        );
        assert!(f.seen().is_empty());
    }

    fn request<'a>(
        h: &'a reqwest::header::HeaderMap,
        query: &'a str,
        body: &'a str,
    ) -> ReceiptRequest<'a> {
        ReceiptRequest {
            headers: h,
            query,
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        }
    }

    #[test]
    fn delivery_reports_need_the_token_and_map_statuses() {
        let p = AfricasTalkingProvider::new(&config("http://127.0.0.1:9")).unwrap();
        let h = reqwest::header::HeaderMap::new();
        let report = |status: &str, reason: &str| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("id", "ATPid_SampleTxnId123"),
                    ("status", status),
                    ("phoneNumber", "+254711000111"),
                    ("networkCode", "63902"),
                    ("failureReason", reason),
                    ("retryCount", "0"),
                ])
                .finish()
        };
        let parse = |q: &str, body: &str| p.parse_receipt(&request(&h, q, body)).unwrap();
        let r = parse("token=tok-1", &report("Success", "")).unwrap();
        assert_eq!(
            r,
            ParsedReceipt {
                message_id: "ATPid_SampleTxnId123".into(),
                status: ReceiptStatus::Delivered,
                error: None
            }
        );
        let r = parse("token=tok-1", &report("Failed", "AbsentSubscriber")).unwrap();
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("Africa's Talking: AbsentSubscriber")
        );
        assert_eq!(
            parse("token=tok-1", &report("Rejected", "DeliveryFailure"))
                .unwrap()
                .status,
            ReceiptStatus::Failed
        );
        for s in ["Sent", "Submitted", "Buffered"] {
            assert_eq!(
                parse("token=tok-1", &report(s, "")).unwrap().status,
                ReceiptStatus::Pending
            );
        }
        assert_eq!(parse("", &report("Success", "")), Err(ReceiptError::Forged));
        assert_eq!(
            parse("token=tok-9", &report("Success", "")),
            Err(ReceiptError::Forged)
        );
        assert!(matches!(
            parse("token=tok-1", "status=Success"),
            Err(ReceiptError::Malformed(_))
        ));
    }

    #[test]
    fn ussd_sessions_need_the_token_and_name_the_number() {
        let p = AfricasTalkingProvider::new(&config("http://127.0.0.1:9")).unwrap();
        let h = reqwest::header::HeaderMap::new();
        let body = "sessionId=ATUid_1&serviceCode=%2A384%2A123%23&phoneNumber=%2B254711000111&networkCode=63902&text=";
        let s = p
            .ussd_session(&request(&h, "token=tok-1", body))
            .unwrap()
            .unwrap();
        assert_eq!(s.phone_number, "+254711000111");
        assert_eq!(s.session_id, "ATUid_1");
        assert_eq!(
            p.ussd_session(&request(&h, "", body)).unwrap(),
            Err(ReceiptError::Forged)
        );
        assert!(matches!(
            p.ussd_session(&request(&h, "token=tok-1", "sessionId=x"))
                .unwrap(),
            Err(ReceiptError::Malformed(_))
        ));
    }
}
