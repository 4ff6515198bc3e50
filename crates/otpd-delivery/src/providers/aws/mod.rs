//! The `aws_sms_voice` provider: SMS and voice through AWS End User Messaging SMS and
//! Voice (the `PinpointSMSVoiceV2` API), and its delivery events through Amazon SNS.
//!
//! **Requests** (AWS JSON 1.0 protocol, <https://docs.aws.amazon.com/pinpoint/latest/apireference_smsvoicev2/>):
//! `POST {url}/` (default `https://sms-voice.{region}.amazonaws.com/`) with
//! `Content-Type: application/x-amz-json-1.0` and `X-Amz-Target:
//! PinpointSMSVoiceV2.SendTextMessage` (SMS) or `PinpointSMSVoiceV2.SendVoiceMessage`
//! (voice), signed with Signature Version 4 for the service `sms-voice` in `region` (the
//! `aws-sigv4` crate, AWS's own signer: `Authorization` and `X-Amz-Date`). The JSON body:
//!
//! - SMS: `{"DestinationPhoneNumber": "+…", "OriginationIdentity": from, "MessageBody",
//!   "MessageType": "TRANSACTIONAL", "TimeToLive", "ConfigurationSetName"?}`;
//! - voice: `{"DestinationPhoneNumber", "OriginationIdentity": voice_from or from,
//!   "MessageBody": the script, "MessageBodyTextType": "TEXT", "VoiceId", "TimeToLive",
//!   "ConfigurationSetName"?}` with an Amazon Polly voice for the locale
//!   ([`super::twilio::voice_for`], e.g. `fr-CA` → `CHANTAL`) unless `voice_id` is set.
//!
//! `TimeToLive` is the route's receipt wait (at least 5 s): AWS stops trying to hand a
//! message off after it (a code that arrives after the next provider sent one is useless).
//!
//! **Replies.** A 2xx `{"MessageId"}` is accepted. Errors carry their type in `__type`
//! (or `X-Amzn-ErrorType`): `ThrottlingException` and `InternalServerException` (and any
//! 5xx, 429, 408 or no reply) are transient; `ValidationException`,
//! `AccessDeniedException`, `ResourceNotFoundException`, `ConflictException` and
//! `ServiceQuotaExceededException` are permanent.
//!
//! **Receipts** ([`sns`]): the configuration set's event destination publishes to an SNS
//! topic, subscribed (HTTPS, raw delivery off) to `/v1/receipts/NAME`. Each SNS message is
//! checked with its RSA signature over the certificate fetched from the SNS host it names,
//! and must come from `sns_topic_arn`; its `Message` is the event (`eventType`,
//! `messageId`, `isFinal`). Subscription confirmations are confirmed by fetching their
//! `SubscribeURL` once their signature verifies.

pub mod ses;
pub mod sns;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{ApiReply, http_client, json_str, status_error};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};

/// The SigV4 signing name of the service.
pub const SIGNING_NAME: &str = "sms-voice";
/// The `X-Amz-Target` prefix of its operations.
pub const TARGET_PREFIX: &str = "PinpointSMSVoiceV2";
/// The content type of the AWS JSON 1.0 protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Amazon Polly voices the API accepts as `VoiceId` (its `VoiceId` enum).
const VOICE_IDS: &[&str] = &[
    "AMY",
    "ASTRID",
    "BIANCA",
    "BRIAN",
    "CAMILA",
    "CARLA",
    "CARMEN",
    "CELINE",
    "CHANTAL",
    "CONCHITA",
    "CRISTIANO",
    "DORA",
    "EMMA",
    "ENRIQUE",
    "EWA",
    "FILIZ",
    "GERAINT",
    "GIORGIO",
    "GWYNETH",
    "HANS",
    "INES",
    "IVY",
    "JACEK",
    "JAN",
    "JOANNA",
    "JOEY",
    "JUSTIN",
    "KARL",
    "KENDRA",
    "KIMBERLY",
    "LEA",
    "LIV",
    "LOTTE",
    "LUCIA",
    "LUPE",
    "MADS",
    "MAJA",
    "MARLENE",
    "MATHIEU",
    "MATTHEW",
    "MAXIM",
    "MIA",
    "MIGUEL",
    "MIZUKI",
    "NAJA",
    "NICOLE",
    "PENELOPE",
    "RAVEENA",
    "RICARDO",
    "RUBEN",
    "RUSSELL",
    "SALLI",
    "SEOYEON",
    "TAKUMI",
    "TATYANA",
    "VICKI",
    "VITORIA",
    "ZEINA",
    "ZHIYU",
];

/// Sends through AWS End User Messaging SMS and Voice.
pub struct AwsSmsVoiceProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    signer: Signer,
    from: String,
    voice_from: String,
    voice_id: Option<String>,
    configuration_set: Option<String>,
    sns: Option<sns::SnsReceipts>,
    client: reqwest::Client,
}

impl AwsSmsVoiceProvider {
    /// From its config entry: `region`, `access_key_id`, `secret_access_key` and `from`
    /// (the origination identity) are required; `sns_topic_arn` enables receipts.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind aws_sms_voice needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Voice))
        {
            return Err(format!(
                "provider '{name}': kind aws_sms_voice serves only channels \"sms\" and \"voice\""
            ));
        }
        let (region, key_id, secret) = credentials(config, "aws_sms_voice")?;
        let from = config.from.clone().ok_or_else(|| {
            need("from (the origination identity: a number, sender id, pool id or ARN)")
        })?;
        if let Some(v) = &config.voice_id
            && !VOICE_IDS.contains(&v.to_ascii_uppercase().as_str())
        {
            return Err(format!(
                "provider '{name}': voice_id {v:?} is not an Amazon Polly voice of the API (e.g. \"JOANNA\")"
            ));
        }
        let sns = match &config.sns_topic_arn {
            Some(topic) => Some(sns::SnsReceipts::new(
                config,
                topic.clone(),
                config.sns_url_prefix.clone(),
            )?),
            None => None,
        };
        let endpoint = config
            .url
            .clone()
            .unwrap_or_else(|| format!("https://sms-voice.{region}.amazonaws.com"));
        let endpoint = format!("{}/", endpoint.trim_end_matches('/'));
        Ok(AwsSmsVoiceProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint,
            signer: Signer::new(key_id, &secret, region, SIGNING_NAME),
            voice_from: config.voice_from.clone().unwrap_or_else(|| from.clone()),
            from,
            voice_id: config.voice_id.as_ref().map(|v| v.to_ascii_uppercase()),
            configuration_set: config.configuration_set.clone(),
            sns,
            client: http_client(config, reqwest::header::HeaderMap::new())?,
        })
    }

    /// The JSON body of a send.
    fn body(&self, m: &OutboundMessage) -> serde_json::Value {
        let ttl = m.receipt_wait.as_secs().max(5);
        let mut body = if m.channel == Channel::Voice {
            serde_json::json!({
                "DestinationPhoneNumber": m.to,
                "OriginationIdentity": self.voice_from,
                "MessageBody": m.body.as_str(),
                "MessageBodyTextType": "TEXT",
                "VoiceId": self.voice_id.clone().unwrap_or_else(|| voice_id_for(&m.locale)),
                "TimeToLive": ttl,
            })
        } else {
            serde_json::json!({
                "DestinationPhoneNumber": m.to,
                "OriginationIdentity": self.from,
                "MessageBody": m.body.as_str(),
                "MessageType": "TRANSACTIONAL",
                "TimeToLive": ttl,
            })
        };
        if let Some(set) = &self.configuration_set {
            body["ConfigurationSetName"] = set.as_str().into();
        }
        body
    }

    /// The signed request of operation `op` with `body`, signed at `time`.
    fn request(
        &self,
        op: &str,
        body: Vec<u8>,
        time: SystemTime,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let target = format!("{TARGET_PREFIX}.{op}");
        let headers = [
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target.as_str()),
        ];
        self.signer
            .request(&self.client, &self.endpoint, &headers, body, time)
    }
}

/// Signature Version 4 of one AWS service in one region, with AWS's own signer.
pub struct Signer {
    identity: Identity,
    region: String,
    service: &'static str,
}

impl Signer {
    /// Signs for `service` (its signing name) in `region` with the access key.
    pub fn new(
        key_id: String,
        secret: &SecretString,
        region: String,
        service: &'static str,
    ) -> Self {
        let identity: Identity = Credentials::new(
            key_id,
            secret.expose_secret().to_string(),
            None,
            None,
            "otpd-config",
        )
        .into();
        Signer {
            identity,
            region,
            service,
        }
    }

    /// A `POST` of `body` to `url` with `headers`, signed at `time` (`Authorization`,
    /// marked sensitive, and `X-Amz-Date` added).
    pub fn request(
        &self,
        client: &reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        time: SystemTime,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let cannot =
            |e: &dyn std::fmt::Display| ProviderError::Permanent(format!("cannot sign: {e}"));
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| cannot(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| cannot(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| cannot(&e))?
            .into_parts();
        let mut request = client.post(url).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        for (k, v) in instructions.headers() {
            let mut value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| ProviderError::Permanent("cannot sign: bad header".into()))?;
            value.set_sensitive(k.eq_ignore_ascii_case("authorization"));
            request = request.header(k, value);
        }
        Ok(request)
    }
}

/// The `region` and access key of an AWS adapter's entry (`kind` names it in errors).
pub fn credentials(
    config: &ProviderConfig,
    kind: &str,
) -> Result<(String, String, SecretString), String> {
    let name = &config.name;
    let need = |what: &str| format!("provider '{name}': kind {kind} needs {what}");
    let region = config
        .region
        .clone()
        .ok_or_else(|| need("region (e.g. \"us-east-1\")"))?;
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "provider '{name}': region {region:?} is not an AWS region"
        ));
    }
    let key_id = config
        .access_key_id
        .clone()
        .ok_or_else(|| need("access_key_id"))?;
    let secret = config
        .secret_access_key
        .clone()
        .ok_or_else(|| need("secret_access_key"))?;
    Ok((region, key_id, secret))
}

/// The reply of a signed AWS request: accepted with the id at `/MessageId`, else the
/// error its AWS type means ([`error`]).
pub async fn reply(request: reqwest::RequestBuilder) -> Result<Accepted, ProviderError> {
    let reply = request.send().await.map_err(super::transport_error)?;
    let error_type = reply
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = reply.status();
    let json = reply.json().await.ok();
    let reply = ApiReply { status, json };
    if !status.is_success() {
        return Err(error(&reply, error_type.as_deref()));
    }
    Ok(Accepted::Queued {
        provider_message_id: json_str(reply.json.as_ref(), "/MessageId"),
    })
}

/// The Polly voice of a locale: Twilio's documented voice for it (the same Polly
/// standard voices), else `JOANNA`.
pub fn voice_id_for(locale: &str) -> String {
    let (_, voice) = super::twilio::voice_for(locale);
    let id = voice.trim_start_matches("Polly.").to_ascii_uppercase();
    if VOICE_IDS.contains(&id.as_str()) {
        id
    } else {
        "JOANNA".into()
    }
}

/// The error of a non-2xx reply: by its AWS error type, else by its status.
fn error(reply: &ApiReply, error_type: Option<&str>) -> ProviderError {
    let kind = error_type
        .map(str::to_string)
        .or_else(|| json_str(reply.json.as_ref(), "/__type"))
        .map(|t| {
            // `aws.protocoltests#ThrottlingException` or `ThrottlingException:http://…`.
            let t = t.rsplit('#').next().unwrap_or_default();
            t.split(':').next().unwrap_or_default().to_string()
        })
        .unwrap_or_default();
    let msg = format!("AWS HTTP {} {kind}", reply.status.as_u16());
    match kind.as_str() {
        "ThrottlingException"
        | "TooManyRequestsException"
        | "InternalServerException"
        | "InternalFailure"
        | "ServiceUnavailableException" => ProviderError::Transient(msg),
        "" => status_error("AWS", reply.status, ""),
        _ if super::transient_status(reply.status) => ProviderError::Transient(msg),
        _ => ProviderError::Permanent(msg),
    }
}

#[async_trait]
impl Provider for AwsSmsVoiceProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let op = if m.channel == Channel::Voice {
            "SendVoiceMessage"
        } else {
            "SendTextMessage"
        };
        let body = serde_json::to_vec(&self.body(m))
            .map_err(|e| ProviderError::Permanent(e.to_string()))?;
        reply(self.request(op, body, SystemTime::now())?).await
    }

    async fn parse_receipt_batch_online(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<Vec<ParsedReceipt>, ReceiptError>> {
        let Some(sns) = &self.sns else {
            // No topic configured: no receipt is believed.
            return Some(Err(ReceiptError::Forged));
        };
        Some(sns.receive(request).await.map(|event| {
            event
                .into_iter()
                .filter_map(|e| event_receipt(&e))
                .collect()
        }))
    }
}

/// A delivery event of End User Messaging (`Message` of an SNS notification) as a
/// receipt: `TEXT_DELIVERED` / `TEXT_SUCCESSFUL` (handed to the carrier where the
/// country has no handset receipts) and `VOICE_COMPLETED` are delivered; the documented
/// failures (`TEXT_BLOCKED`, `TEXT_INVALID`, `TEXT_TTL_EXPIRED`, `VOICE_NO_ANSWER`, …)
/// failed; anything else (`TEXT_QUEUED`, `TEXT_PENDING`, `VOICE_RINGING`, …) says nothing.
/// `None` when the event names no message.
pub fn event_receipt(event: &serde_json::Value) -> Option<ParsedReceipt> {
    let id = event.get("messageId")?.as_str()?.to_string();
    let kind = event
        .get("eventType")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let status = match kind {
        "TEXT_DELIVERED" | "TEXT_SUCCESSFUL" | "VOICE_COMPLETED" => ReceiptStatus::Delivered,
        "TEXT_INVALID"
        | "TEXT_INVALID_MESSAGE"
        | "TEXT_UNREACHABLE"
        | "TEXT_CARRIER_UNREACHABLE"
        | "TEXT_BLOCKED"
        | "TEXT_CARRIER_BLOCKED"
        | "TEXT_SPAM"
        | "TEXT_UNKNOWN"
        | "TEXT_TTL_EXPIRED"
        | "TEXT_PROTECT_BLOCKED"
        | "VOICE_BUSY"
        | "VOICE_NO_ANSWER"
        | "VOICE_FAILED"
        | "VOICE_TTL_EXPIRED" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    let error = (status == ReceiptStatus::Failed).then(|| {
        let detail = event
            .get("messageStatusDescription")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        format!(
            "AWS {kind} {}",
            detail.chars().take(120).collect::<String>()
        )
        .trim_end()
        .to_string()
    });
    Some(ParsedReceipt {
        message_id: id,
        status,
        error,
    })
}
