//! The `sinch` provider: SMS through Sinch's SMS REST API (XMS), and its delivery-report
//! callbacks checked with their HMAC signature.
//!
//! **Send** (<https://developers.sinch.com/docs/sms/api-reference/sms/tag/Batches/#tag/Batches/operation/SendSMS>,
//! and the official `sinch` Python SDK's `sms.batches.send_sms`): `POST
//! {url}/xms/v1/{service_plan_id}/batches` (default `https://{region}.sms.api.sinch.com`,
//! region `us`, `eu`, `au`, `br` or `ca`), `Authorization: Bearer <api_key>` (the service
//! plan's API token), JSON `{"to": ["+…"], "from", "body", "type": "mt_text", "delivery_report":
//! "per_recipient_final", "callback_url"?, "client_reference": "<otpd's message id>"}`. A
//! 2xx `{"id"}` (the batch id) is accepted; 429 and 5xx (and no answer) are transient;
//! other statuses (400 `syntax_invalid_parameter_format`, 401, 403
//! `missing_service_plan`, …) permanent.
//!
//! **Callbacks**: `{"type": "recipient_delivery_report_sms", "batch_id", "recipient",
//! "code", "status", "at", "client_reference"}`. `Delivered` is delivered; `Failed`,
//! `Rejected`, `Expired`, `Aborted`, `Cancelled` and `Deleted` failed; the rest
//! (`Queued`, `Dispatched`, `Unknown`) intermediate. They are believed only when signed
//! with the callback secret (`signature_secret`) as the SDK's
//! `validate_authentication_header` checks: `x-sinch-webhook-signature` is the base64
//! HMAC-SHA256 of `"{body}.{x-sinch-webhook-signature-nonce}.{x-sinch-webhook-signature-timestamp}"`.
//! Without a secret, callbacks need the `receipt_token` in their URL instead.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{ApiReply, callback, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// The SMS API regions.
const REGIONS: &[&str] = &["us", "eu", "au", "br", "ca"];

/// Sends SMS through Sinch.
pub struct SinchProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    from: String,
    callback: Option<String>,
    secret: Option<SecretString>,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl SinchProvider {
    /// From its config entry: `service_plan_id`, `api_key` (the API token) and `from` are
    /// required; `signature_secret` (or `receipt_token`) authenticates callbacks.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind sinch needs {what}");
        if config.channels.iter().any(|c| *c != Channel::Sms) {
            return Err(format!(
                "provider '{name}': kind sinch serves only channel \"sms\""
            ));
        }
        let plan = config
            .service_plan_id
            .clone()
            .ok_or_else(|| need("service_plan_id"))?;
        if plan.is_empty() || !plan.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "provider '{name}': service_plan_id is letters and digits"
            ));
        }
        let token = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key (the service plan's API token)"))?;
        let from = config
            .from
            .clone()
            .ok_or_else(|| need("from (a Sinch number or sender id)"))?;
        let base = match (&config.url, config.region.as_deref()) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, region) => {
                let region = region.unwrap_or("us");
                if !REGIONS.contains(&region) {
                    return Err(format!(
                        "provider '{name}': region {region:?} is not a Sinch SMS region (us, eu, au, br, ca)"
                    ));
                }
                format!("https://{region}.sms.api.sinch.com")
            }
        };
        let headers = credential_header(config, "authorization", &format!("Bearer {token}"))?;
        Ok(SinchProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{base}/xms/v1/{plan}/batches"),
            from,
            callback: config.status_callback_url.clone(),
            secret: config.signature_secret.clone(),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }
}

/// `x-sinch-webhook-signature` of `body` with `nonce` and `timestamp` under `secret`.
pub fn signature(secret: &str, body: &[u8], nonce: &str, timestamp: &str) -> Option<String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(body);
    mac.update(b".");
    mac.update(nonce.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Provider for SinchProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let mut body = serde_json::json!({
            "to": [m.to],
            "from": self.from,
            "body": m.body.as_str(),
            "type": "mt_text",
            "delivery_report": "per_recipient_final",
            "client_reference": m.message_id,
        });
        if let Some(cb) = &self.callback {
            body["callback_url"] = cb.as_str().into();
        }
        let reply = ApiReply::fetch(self.client.post(&self.endpoint).json(&body)).await?;
        if !reply.status.is_success() {
            let detail = json_str(reply.json.as_ref(), "/code")
                .map(|c| format!(" {}", c.chars().take(40).collect::<String>()))
                .unwrap_or_default();
            return Err(super::status_error("Sinch", reply.status, &detail));
        }
        Ok(Accepted::Queued {
            provider_message_id: json_str(reply.json.as_ref(), "/id"),
        })
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            self.authenticate(request)
                .and_then(|()| report(request.body)),
        )
    }
}

impl SinchProvider {
    /// The callback's signature under the callback secret, or (without one) the receipt
    /// token in its URL.
    fn authenticate(&self, request: &ReceiptRequest<'_>) -> Result<(), ReceiptError> {
        let Some(secret) = &self.secret else {
            return callback::check_token(self.receipt_token.as_ref(), request);
        };
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ReceiptError::Forged)
        };
        let given = header("x-sinch-webhook-signature")?;
        let expected = signature(
            secret.expose_secret(),
            request.body,
            header("x-sinch-webhook-signature-nonce")?,
            header("x-sinch-webhook-signature-timestamp")?,
        )
        .ok_or(ReceiptError::Forged)?;
        if bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(ReceiptError::Forged)
        }
    }
}

/// A recipient delivery report's outcome for its batch.
fn report(body: &[u8]) -> Result<ParsedReceipt, ReceiptError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ReceiptError::Malformed("the body is not JSON".into()))?;
    let id = json_str(Some(&json), "/batch_id")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ReceiptError::Malformed("no batch_id".into()))?;
    let raw = json_str(Some(&json), "/status").unwrap_or_default();
    let status = match raw.as_str() {
        "Delivered" => ReceiptStatus::Delivered,
        "Failed" | "Rejected" | "Expired" | "Aborted" | "Cancelled" | "Deleted" => {
            ReceiptStatus::Failed
        }
        _ => ReceiptStatus::Pending,
    };
    let code = json.get("code").map(|c| c.to_string()).unwrap_or_default();
    Ok(ParsedReceipt {
        message_id: id,
        status,
        error: (status == ReceiptStatus::Failed).then(|| {
            format!("Sinch {raw} {}", code.chars().take(12).collect::<String>())
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

    const PLAN: &str = "e2eplan0123456789abcdef";
    const TOKEN: &str = "sinch-api-token-1";
    const SECRET: &str = "sinch-callback-secret";

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "sinch".into(),
            kind: "sinch".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            service_plan_id: Some(PLAN.into()),
            api_key: Some(TOKEN.into()),
            from: Some("+12025550134".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/sinch".into()),
            signature_secret: Some(SECRET.to_string().into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn posts_the_documented_batch() {
        let f = FakeApi::start(
            201,
            json!({"id": "01FC66621XXXXX119Z8PMV1QPQ", "type": "mt_text"}),
        )
        .await;
        let p = SinchProvider::new(&config(&f.url)).unwrap();
        let sms = message(Channel::Sms, "+12025550100", "Your code is 123456.", "en");
        assert_eq!(
            p.send(&sms).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("01FC66621XXXXX119Z8PMV1QPQ".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, format!("/xms/v1/{PLAN}/batches"));
        assert_eq!(seen.header("authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(
            seen.json(),
            json!({"to": ["+12025550100"], "from": "+12025550134", "body": "Your code is 123456.",
                   "type": "mt_text", "delivery_report": "per_recipient_final", "client_reference": "dlv_1",
                   "callback_url": "https://otp.example.com/v1/receipts/sinch"})
        );
        for (http, transient) in [
            (400, false),
            (401, false),
            (403, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(
                http,
                json!({"code": "syntax_invalid_parameter_format", "text": "x"}),
            );
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
                "service_plan_id",
                (|c: &mut ProviderConfig| c.service_plan_id = None) as fn(&mut ProviderConfig),
            ),
            ("api_key", |c| c.api_key = None),
            ("from", |c| c.from = None),
        ] {
            let mut c = config("http://x");
            strip(&mut c);
            let err = SinchProvider::new(&c).err().unwrap();
            assert!(err.contains(&format!("needs {key}")), "{err}");
        }
        let mut c = config("http://x");
        c.url = None;
        c.region = Some("mars".into());
        assert!(SinchProvider::new(&c).err().unwrap().contains("region"));
        c.region = Some("eu".into());
        assert!(
            SinchProvider::new(&c)
                .unwrap()
                .endpoint
                .starts_with("https://eu.sms.api.sinch.com/xms/v1/")
        );
    }

    fn report_body(status: &str) -> String {
        // The shape of Sinch's recipient delivery report callback.
        json!({"type": "recipient_delivery_report_sms", "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
               "recipient": "+12025550100", "code": if status == "Delivered" { 0 } else { 406 },
               "status": status, "at": "2026-12-07T04:20:00.000Z", "client_reference": "dlv_1"})
        .to_string()
    }

    fn signed(body: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-sinch-webhook-signature",
            signature(
                secret,
                body.as_bytes(),
                "01FJA8B4A7BM43YGWSG9GBV067",
                "1734567890",
            )
            .unwrap()
            .parse()
            .unwrap(),
        );
        h.insert(
            "x-sinch-webhook-signature-nonce",
            "01FJA8B4A7BM43YGWSG9GBV067".parse().unwrap(),
        );
        h.insert(
            "x-sinch-webhook-signature-timestamp",
            "1734567890".parse().unwrap(),
        );
        h.insert(
            "x-sinch-webhook-signature-algorithm",
            "HmacSHA256".parse().unwrap(),
        );
        h
    }

    fn parse(
        p: &SinchProvider,
        h: &HeaderMap,
        body: &str,
        query: &str,
    ) -> Result<ParsedReceipt, ReceiptError> {
        p.parse_receipt(&ReceiptRequest {
            headers: h,
            query,
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        })
        .unwrap()
    }

    #[test]
    fn signed_reports_are_receipts_and_forged_ones_are_not() {
        let p = SinchProvider::new(&config("http://x")).unwrap();
        for (status, outcome) in [
            ("Delivered", ReceiptStatus::Delivered),
            ("Failed", ReceiptStatus::Failed),
            ("Expired", ReceiptStatus::Failed),
            ("Rejected", ReceiptStatus::Failed),
            ("Dispatched", ReceiptStatus::Pending),
            ("Queued", ReceiptStatus::Pending),
        ] {
            let body = report_body(status);
            let r = parse(&p, &signed(&body, SECRET), &body, "").unwrap();
            assert_eq!(r.status, outcome, "{status}");
            assert_eq!(r.message_id, "01FC66621XXXXX119Z8PMV1QPQ");
        }
        let body = report_body("Delivered");
        assert_eq!(
            parse(&p, &signed(&body, "other"), &body, ""),
            Err(ReceiptError::Forged)
        );
        assert_eq!(
            parse(&p, &HeaderMap::new(), &body, ""),
            Err(ReceiptError::Forged)
        );
        let h = signed(&body, SECRET);
        assert_eq!(
            parse(&p, &h, &report_body("Failed"), ""),
            Err(ReceiptError::Forged),
            "tampered"
        );
        // Without a callback secret: the receipt token.
        let mut c = config("http://x");
        c.signature_secret = None;
        c.receipt_token = Some("tok".to_string().into());
        let p = SinchProvider::new(&c).unwrap();
        assert!(parse(&p, &HeaderMap::new(), &body, "token=tok").is_ok());
        assert_eq!(
            parse(&p, &HeaderMap::new(), &body, ""),
            Err(ReceiptError::Forged)
        );
    }
}
