//! The `aws_ses` provider: email through Amazon SES API v2 (`SendEmail`), and its
//! delivery and bounce events through Amazon SNS, so that an email that bounces fails
//! over like an SMS that fails.
//!
//! **Send** (<https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html>):
//! `POST {url}/v2/email/outbound-emails` (default `https://email.{region}.amazonaws.com`),
//! `Content-Type: application/json`, signed with Signature Version 4 for the service `ses`
//! ([`super::Signer`]). JSON `{"FromEmailAddress": from, "Destination": {"ToAddresses":
//! [to]}, "Content": {"Simple": {"Subject": {"Data", "Charset": "UTF-8"}, "Body": {"Text":
//! {…}, "Html": {…}?}}}, "EmailTags": [{"Name": "otpd_message_id", "Value": "dlv_…"}],
//! "ConfigurationSetName"?}`. A 2xx `{"MessageId"}` is accepted. Errors by their type
//! (`X-Amzn-ErrorType`): `TooManyRequestsException` (and 5xx, 429, no answer) transient;
//! `MessageRejected`, `MailFromDomainNotVerifiedException`, `AccountSuspendedException`,
//! `SendingPausedException`, `BadRequestException`, `NotFoundException` permanent.
//!
//! **Events**: the configuration set's event destination (or the identity's
//! notifications) publishes to an SNS topic subscribed to `/v1/receipts/NAME`, checked as
//! for [`super::sns`]. `Delivery` is delivered; `Bounce`, `Reject` and `Rendering Failure`
//! failed (a bounce of any type: a code that bounced once will not arrive in time); the
//! rest (`Send`, `DeliveryDelay`, `Complaint`, `Open`, …) say nothing. The message is
//! named by `mail.messageId`, the `MessageId` of the send.

use std::time::SystemTime;

use async_trait::async_trait;
use otpd_core::channel::Channel;

use super::{Signer, credentials, reply, sns};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};
use crate::providers::http_client;

/// The SigV4 signing name of SES.
pub const SIGNING_NAME: &str = "ses";
/// The path of `SendEmail`.
pub const SEND_EMAIL_PATH: &str = "/v2/email/outbound-emails";

/// Sends email through Amazon SES.
pub struct AwsSesProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    signer: Signer,
    from: String,
    configuration_set: Option<String>,
    sns: Option<sns::SnsReceipts>,
    client: reqwest::Client,
}

impl AwsSesProvider {
    /// From its config entry: `region`, `access_key_id`, `secret_access_key` and `from`
    /// (a verified identity's address) are required; `sns_topic_arn` enables events.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        if config.channels.iter().any(|c| *c != Channel::Email) {
            return Err(format!(
                "provider '{name}': kind aws_ses serves only channel \"email\""
            ));
        }
        let (region, key_id, secret) = credentials(config, "aws_ses")?;
        let from = config.from.clone().ok_or_else(|| {
            format!("provider '{name}': kind aws_ses needs from (an address of a verified identity, e.g. \"Acme <no-reply@acme.example>\")")
        })?;
        let sns = match &config.sns_topic_arn {
            Some(topic) => Some(sns::SnsReceipts::new(
                config,
                topic.clone(),
                config.sns_url_prefix.clone(),
            )?),
            None => None,
        };
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| format!("https://email.{region}.amazonaws.com"));
        Ok(AwsSesProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{}{SEND_EMAIL_PATH}", base.trim_end_matches('/')),
            signer: Signer::new(key_id, &secret, region, SIGNING_NAME),
            from,
            configuration_set: config.configuration_set.clone(),
            sns,
            client: http_client(config, reqwest::header::HeaderMap::new())?,
        })
    }

    fn body(&self, m: &OutboundMessage) -> serde_json::Value {
        let part = |text: &str| serde_json::json!({"Data": text, "Charset": "UTF-8"});
        let mut body = serde_json::json!({"Text": part(m.body.as_str())});
        if let Some(html) = &m.html {
            body["Html"] = part(html.as_str());
        }
        let mut request = serde_json::json!({
            "FromEmailAddress": self.from,
            "Destination": {"ToAddresses": [m.to]},
            "Content": {"Simple": {
                "Subject": part(m.subject.as_deref().unwrap_or("Your verification code")),
                "Body": body,
            }},
            "EmailTags": [{"Name": "otpd_message_id", "Value": m.message_id}],
        });
        if let Some(set) = &self.configuration_set {
            request["ConfigurationSetName"] = set.as_str().into();
        }
        request
    }
}

#[async_trait]
impl Provider for AwsSesProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let body = serde_json::to_vec(&self.body(m))
            .map_err(|e| ProviderError::Permanent(e.to_string()))?;
        let request = self.signer.request(
            &self.client,
            &self.endpoint,
            &[("content-type", "application/json")],
            body,
            SystemTime::now(),
        )?;
        reply(request).await
    }

    async fn parse_receipt_batch_online(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        let Some(sns) = &self.sns else {
            return Some(Err(ReceiptError::Forged));
        };
        Some(
            sns.receive(request)
                .await
                .map(|events| events.iter().filter_map(event_receipt).collect()),
        )
    }
}

/// An SES event (event publishing's `eventType`, or a notification's `notificationType`)
/// as a receipt; `None` when it names no message.
pub fn event_receipt(event: &serde_json::Value) -> Option<ParsedReceipt> {
    let id = event.pointer("/mail/messageId")?.as_str()?.to_string();
    let kind = event
        .get("eventType")
        .or_else(|| event.get("notificationType"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let status = match kind {
        "Delivery" => ReceiptStatus::Delivered,
        "Bounce" | "Reject" | "Rendering Failure" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    let detail = event
        .pointer("/bounce/bounceType")
        .or_else(|| event.pointer("/reject/reason"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    Some(ParsedReceipt {
        message_id: id,
        status,
        error: (status == ReceiptStatus::Failed).then(|| {
            format!("SES {kind} {}", detail.chars().take(60).collect::<String>())
                .trim_end()
                .to_string()
        }),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "ses".into(),
            kind: "aws_ses".into(),
            url: Some(url.into()),
            channels: vec![Channel::Email],
            timeout_ms: 2000,
            region: Some("eu-west-1".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
                    .to_string()
                    .into(),
            ),
            from: Some("Acme <no-reply@acme.example>".into()),
            configuration_set: Some("otpd".into()),
            sns_topic_arn: Some("arn:aws:sns:eu-west-1:111122223333:ses-events".into()),
            ..Default::default()
        }
    }

    fn email() -> OutboundMessage {
        let mut m = message(
            Channel::Email,
            "alice@example.com",
            "Your code is 123456.",
            "en",
        );
        m.subject = Some("Your Acme code".into());
        m.html = Some(zeroize::Zeroizing::new(
            "<p>Your code is <b>123456</b>.</p>".into(),
        ));
        m
    }

    #[tokio::test]
    async fn an_email_is_a_signed_send_email() {
        let f = FakeApi::start(200, json!({"MessageId": "0102018c-ses-1"})).await;
        let p = AwsSesProvider::new(&config(&f.url)).unwrap();
        assert_eq!(
            p.send(&email()).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("0102018c-ses-1".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/v2/email/outbound-emails");
        assert_eq!(seen.header("content-type"), "application/json");
        assert!(
            seen.header("authorization")
                .contains("/eu-west-1/ses/aws4_request")
        );
        assert_eq!(
            seen.json(),
            json!({"FromEmailAddress": "Acme <no-reply@acme.example>",
                "Destination": {"ToAddresses": ["alice@example.com"]},
                "Content": {"Simple": {
                    "Subject": {"Data": "Your Acme code", "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": "Your code is 123456.", "Charset": "UTF-8"},
                             "Html": {"Data": "<p>Your code is <b>123456</b>.</p>", "Charset": "UTF-8"}}}},
                "EmailTags": [{"Name": "otpd_message_id", "Value": "dlv_1"}],
                "ConfigurationSetName": "otpd"})
        );
        for (http, kind, transient) in [
            (400, "MessageRejected", false),
            (400, "MailFromDomainNotVerifiedException", false),
            (400, "AccountSuspendedException", false),
            (429, "TooManyRequestsException", true),
            (500, "InternalFailure", true),
        ] {
            f.reply(http, json!({"__type": kind, "message": "x"}));
            let err = p.send(&email()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{kind}"
            );
        }
    }

    #[test]
    fn config_check_names_each_missing_key() {
        for (key, strip) in [
            (
                "region",
                (|c: &mut ProviderConfig| c.region = None) as fn(&mut ProviderConfig),
            ),
            ("access_key_id", |c| c.access_key_id = None),
            ("secret_access_key", |c| c.secret_access_key = None),
            ("from", |c| c.from = None),
        ] {
            let mut c = config("http://x");
            strip(&mut c);
            let err = AwsSesProvider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {key}")), "{err}");
        }
        let mut c = config("http://x");
        c.channels = vec![Channel::Sms];
        assert!(AwsSesProvider::new(&c).is_err());
    }

    #[test]
    fn events_map_to_receipts() {
        // Shapes of "Examples of event data that Amazon SES publishes to Amazon SNS".
        let mail = json!({"timestamp": "2026-12-07T04:20:00.000Z", "source": "no-reply@acme.example",
            "messageId": "0102018c-ses-1", "destination": ["alice@example.com"]});
        let ev = |kind: &str, extra: serde_json::Value| {
            let mut e = json!({"eventType": kind, "mail": mail});
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        let got = event_receipt(&ev(
            "Delivery",
            json!({"delivery": {"recipients": ["alice@example.com"], "smtpResponse": "250 ok"}}),
        ))
        .unwrap();
        assert_eq!(got.status, ReceiptStatus::Delivered);
        assert_eq!(got.message_id, "0102018c-ses-1");
        let got = event_receipt(&ev(
            "Bounce",
            json!({"bounce": {"bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "alice@example.com"}]}}),
        ))
        .unwrap();
        assert_eq!(got.status, ReceiptStatus::Failed);
        assert_eq!(got.error.as_deref(), Some("SES Bounce Permanent"));
        assert_eq!(
            event_receipt(&ev("Reject", json!({"reject": {"reason": "Bad content"}})))
                .unwrap()
                .status,
            ReceiptStatus::Failed
        );
        assert_eq!(
            event_receipt(&ev("Send", json!({}))).unwrap().status,
            ReceiptStatus::Pending
        );
        assert_eq!(
            event_receipt(&ev("DeliveryDelay", json!({})))
                .unwrap()
                .status,
            ReceiptStatus::Pending
        );
        // Identity notifications say notificationType.
        let n = json!({"notificationType": "Bounce", "bounce": {"bounceType": "Transient"}, "mail": mail});
        assert_eq!(event_receipt(&n).unwrap().status, ReceiptStatus::Failed);
        assert!(event_receipt(&json!({"eventType": "Delivery"})).is_none());
    }
}
