//! Amazon SNS messages posted to an HTTPS subscription, authenticated as AWS documents
//! (<https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html>):
//!
//! - the message must come from the configured topic (`TopicArn`): any AWS account can
//!   publish validly signed SNS messages, so a signature alone proves nothing about whose
//!   topic sent it;
//! - its `SigningCertURL` must be `https://sns.{the topic's region}.amazonaws.com/….pem`
//!   (or `.amazonaws.com.cn`), fetched over HTTPS and cached;
//! - its `Signature` (base64) must verify with that certificate's RSA key, PKCS#1 v1.5
//!   with SHA-1 (`SignatureVersion` 1, the default) or SHA-256 (2), over the string of
//!   `name\nvalue\n` pairs of `Message`, `MessageId`, `Subject` (when present),
//!   `Timestamp`, `TopicArn`, `Type` for a notification, and `Message`, `MessageId`,
//!   `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`, `Type` for a subscription or
//!   unsubscribe confirmation.
//!
//! A verified `SubscriptionConfirmation` is confirmed by fetching its `SubscribeURL`
//! (same host rule); a verified `Notification` yields its `Message` as JSON.
//! `sns_url_prefix` replaces the host rule by a fixed URL prefix (an SNS-compatible
//! service, or a local stand-in in tests).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::config::ProviderConfig;
use crate::provider::{ReceiptError, ReceiptRequest};

/// Most signing certificates kept (AWS rotates them rarely; one per region in use).
const MAX_CACHED: usize = 16;
/// Largest certificate read.
const MAX_CERT_BYTES: usize = 16 * 1024;

/// One SNS message as posted to an HTTP(S) endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// SNS's message id.
    pub message_id: String,
    /// The topic.
    pub topic_arn: String,
    /// The subject, when the publisher gave one.
    #[serde(default)]
    pub subject: Option<String>,
    /// The payload.
    pub message: String,
    /// When it was published.
    pub timestamp: String,
    /// `1` (SHA-1) or `2` (SHA-256).
    pub signature_version: String,
    /// Base64 RSA signature.
    pub signature: String,
    /// Where the signing certificate is.
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    /// Confirmation URL (confirmations).
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    /// Confirmation token (confirmations).
    #[serde(default)]
    pub token: Option<String>,
}

impl Envelope {
    /// The string SNS signed, per message type; `None` for an unknown type or a
    /// confirmation without its URL and token.
    pub fn string_to_sign(&self) -> Option<String> {
        let mut fields: Vec<(&str, &str)> = vec![
            ("Message", self.message.as_str()),
            ("MessageId", self.message_id.as_str()),
        ];
        match self.kind.as_str() {
            "Notification" => {
                if let Some(s) = &self.subject {
                    fields.push(("Subject", s.as_str()));
                }
                fields.push(("Timestamp", self.timestamp.as_str()));
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                fields.push(("SubscribeURL", self.subscribe_url.as_deref()?));
                fields.push(("Timestamp", self.timestamp.as_str()));
                fields.push(("Token", self.token.as_deref()?));
            }
            _ => return None,
        }
        fields.push(("TopicArn", self.topic_arn.as_str()));
        fields.push(("Type", self.kind.as_str()));
        Some(fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect())
    }
}

/// The receipts side of the adapter: the topic, the certificate cache and its client.
pub struct SnsReceipts {
    topic_arn: String,
    /// The region of the topic (`arn:aws:sns:REGION:…`).
    region: String,
    url_prefix: Option<String>,
    /// Certificate URL → the RSA public key (PKCS#1 DER) it holds.
    keys: Mutex<HashMap<String, Vec<u8>>>,
    client: reqwest::Client,
}

impl SnsReceipts {
    /// For messages of `topic_arn`; `url_prefix` replaces the SNS host rule.
    pub fn new(
        config: &ProviderConfig,
        topic_arn: String,
        url_prefix: Option<String>,
    ) -> Result<Self, String> {
        let parts: Vec<&str> = topic_arn.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[3].is_empty() {
            return Err(format!(
                "provider '{}': sns_topic_arn {topic_arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
                config.name
            ));
        }
        Ok(SnsReceipts {
            region: parts[3].to_string(),
            topic_arn,
            url_prefix,
            keys: Mutex::default(),
            client: super::super::http_client(config, reqwest::header::HeaderMap::new())?,
        })
    }

    /// Whether otpd may fetch `url` (a certificate when `pem`, else a subscribe URL).
    pub fn allowed(&self, url: &str, pem: bool) -> bool {
        if let Some(prefix) = &self.url_prefix {
            return url.starts_with(prefix.as_str()) && !url.contains("..");
        }
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        let host = parsed.host_str().unwrap_or_default();
        let sns = format!("sns.{}.amazonaws.com", self.region);
        parsed.scheme() == "https"
            && parsed.port().is_none()
            && parsed.username().is_empty()
            && (host == sns || host == format!("{sns}.cn"))
            && (!pem || (parsed.path().ends_with(".pem") && parsed.query().is_none()))
    }

    /// Authenticates an SNS message and acts on it: the events of a notification (its
    /// `Message` as JSON), nothing for a confirmation (a subscription is confirmed first).
    pub async fn receive(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Result<Vec<serde_json::Value>, ReceiptError> {
        let envelope: Envelope = serde_json::from_slice(request.body)
            .map_err(|_| ReceiptError::Malformed("not an SNS message".into()))?;
        if envelope.topic_arn != self.topic_arn {
            return Err(ReceiptError::Forged);
        }
        let key = self.key(&envelope.signing_cert_url, request.now).await?;
        verify(&envelope, &key)?;
        match envelope.kind.as_str() {
            "Notification" => {
                let event: serde_json::Value = serde_json::from_str(&envelope.message)
                    .map_err(|_| ReceiptError::Malformed("the SNS Message is not JSON".into()))?;
                Ok(vec![event])
            }
            "SubscriptionConfirmation" => {
                let url = envelope.subscribe_url.as_deref().unwrap_or_default();
                if !self.allowed(url, false) {
                    return Err(ReceiptError::Forged);
                }
                let confirmed = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if confirmed {
                    tracing::info!(topic = %self.topic_arn, "SNS subscription confirmed");
                    Ok(Vec::new())
                } else {
                    Err(ReceiptError::Malformed(
                        "the SNS subscription could not be confirmed".into(),
                    ))
                }
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The RSA key of the certificate at `url`, fetched once.
    async fn key(
        &self,
        url: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<u8>, ReceiptError> {
        if !self.allowed(url, true) {
            return Err(ReceiptError::Forged);
        }
        if let Some(key) = self.keys.lock().map_err(|_| ReceiptError::Forged)?.get(url) {
            return Ok(key.clone());
        }
        let reply = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|_| ReceiptError::Forged)?;
        if !reply.status().is_success() {
            return Err(ReceiptError::Forged);
        }
        let pem = reply.bytes().await.map_err(|_| ReceiptError::Forged)?;
        if pem.len() > MAX_CERT_BYTES {
            return Err(ReceiptError::Forged);
        }
        let key = rsa_key_of_certificate(&pem, now.timestamp()).ok_or(ReceiptError::Forged)?;
        let mut keys = self.keys.lock().map_err(|_| ReceiptError::Forged)?;
        if keys.len() >= MAX_CACHED {
            keys.clear();
        }
        keys.insert(url.to_string(), key.clone());
        Ok(key)
    }
}

/// The RSA public key (PKCS#1 DER) of a PEM certificate valid at `now` (Unix seconds).
pub fn rsa_key_of_certificate(pem: &[u8], now: i64) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let at = x509_parser::time::ASN1Time::from_timestamp(now).ok()?;
    if !cert.validity().is_valid_at(at) {
        return None;
    }
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// Checks an SNS message's signature with `key` (PKCS#1 RSA public key DER).
pub fn verify(envelope: &Envelope, key: &[u8]) -> Result<(), ReceiptError> {
    use ring::signature;
    let algorithm: &dyn signature::VerificationAlgorithm = match envelope.signature_version.as_str()
    {
        "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(ReceiptError::Forged),
    };
    let text = envelope.string_to_sign().ok_or(ReceiptError::Forged)?;
    let sig = STANDARD
        .decode(envelope.signature.trim())
        .map_err(|_| ReceiptError::Forged)?;
    signature::UnparsedPublicKey::new(algorithm, key)
        .verify(text.as_bytes(), &sig)
        .map_err(|_| ReceiptError::Forged)
}
