//! The messages of factor webhooks ([`super::webhooks`]): the form Twilio's Verify
//! webhooks POST (`uuid`, `type`, `account_sid`, `service_sid`, `entity_identity`,
//! `factor_sid`, `factor_type`, `factor_friendly_name`, `challenge_sid`, `created_date`),
//! signed with `X-Twilio-Signature` under the webhook's signing key, so that receivers
//! check it with the official SDKs' `RequestValidator`. The webhook sender
//! (`crate::webhooks`) leases the queued message, asks [`message`] for it, and POSTs it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::apikey::digest;
use otpd_core::event::Event;
use otpd_core::factor_webhook::{FactorWebhook, twilio_event_type};
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::Service;
use otpd_core::store::Store;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use super::callbacks::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature};
use super::views::{ACCOUNT_SID, twilio_date};
use crate::outbound;

/// A message ready to POST.
#[derive(Debug)]
pub struct Outgoing {
    /// The webhook's URL (checked against the SSRF rule).
    pub url: reqwest::Url,
    /// The form.
    pub params: Vec<(String, String)>,
    /// `X-Twilio-Signature`.
    pub signature: String,
}

/// Why a message was not made.
#[derive(Debug)]
pub enum NotMade {
    /// Nothing to send, now or later (the webhook is gone or disabled, its key revoked):
    /// the message is dead-lettered with this reason.
    Dead(String),
    /// Something that may pass (the store unavailable): tried again.
    Failed(String),
}

/// What [`message`] needs besides the message itself.
pub struct Signing<'a> {
    /// Where events and keys are read.
    pub store: &'a dyn Store,
    /// Opens the sealed signing keys.
    pub secret: &'a ServerSecret,
    /// The configured master key's digest, if any (a webhook created with it signs with it).
    pub master_key_digest: Option<&'a [u8]>,
    /// `webhooks.allow_private_targets`.
    pub allow_private: bool,
}

/// The message of `event` for the webhook `sid` of `service`.
pub async fn message(
    signing: &Signing<'_>,
    service: &Service,
    sid: &str,
    event: &Event,
) -> Result<Outgoing, NotMade> {
    let Some(webhook) = service
        .settings
        .factor_webhooks
        .iter()
        .find(|w| w.sid == sid)
    else {
        return Err(NotMade::Dead("the webhook was deleted".into()));
    };
    if !webhook.enabled() {
        return Err(NotMade::Dead("the webhook is disabled".into()));
    }
    let Some(event_type) = twilio_event_type(&event.kind) else {
        return Err(NotMade::Dead(format!(
            "{} is not an event factor webhooks receive",
            event.kind
        )));
    };
    let url = outbound::check_target(&webhook.url, signing.allow_private)
        .map_err(|e| NotMade::Failed(format!("WebhookUrl refused: {e}")))?;
    let key = signing_key(signing, webhook).await?;
    let params = form(signing.store, service, event, event_type).await?;
    let signature = signature(&key, &webhook.url, &params);
    Ok(Outgoing {
        url,
        params,
        signature,
    })
}

/// The webhook's signing key, opened and checked to be a live key still.
async fn signing_key(
    signing: &Signing<'_>,
    webhook: &FactorWebhook,
) -> Result<Zeroizing<String>, NotMade> {
    let unopenable = || {
        NotMade::Failed("the signing key cannot be opened (was the server secret changed?)".into())
    };
    let sealed = STANDARD
        .decode(&webhook.sealed_key)
        .map_err(|_| unopenable())?;
    let key = signing
        .secret
        .sealer()
        .open_str(&webhook.sid, &sealed)
        .map_err(|_| unopenable())?;
    let d = digest(&key);
    let live = if webhook.key_id == "master" {
        signing
            .master_key_digest
            .is_some_and(|m| bool::from(m.ct_eq(&d)))
    } else {
        match signing.store.find_key(&d).await {
            Ok(found) => found.is_some_and(|k| k.id == webhook.key_id),
            Err(e) => return Err(NotMade::Failed(format!("store unavailable: {e}"))),
        }
    };
    if live {
        Ok(key)
    } else {
        Err(NotMade::Dead(format!(
            "the webhook's signing key ({}) is revoked or gone: update the webhook with a live key, then replay",
            webhook.key_id
        )))
    }
}

/// Twilio's form of an event: `type` its Twilio name, the factor's details read back
/// where it still exists (a deleted factor has no name left).
async fn form(
    store: &dyn Store,
    service: &Service,
    event: &Event,
    event_type: &str,
) -> Result<Vec<(String, String)>, NotMade> {
    let text = |key: &str| {
        event
            .data
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let factor_id = text("factor_id");
    let factor = match &factor_id {
        Some(id) => store
            .get_factor(id)
            .await
            .map_err(|e| NotMade::Failed(format!("store unavailable: {e}")))?,
        None => None,
    };
    let mut params = vec![
        ("uuid", uuid_of(&event.id)),
        ("type", event_type.to_string()),
        ("account_sid", ACCOUNT_SID.to_string()),
        ("service_sid", service.sid.clone()),
    ];
    if let Some(entity) = text("entity") {
        params.push(("entity_identity", entity));
    }
    if let Some(id) = &factor_id {
        params.push(("factor_sid", Kind::Factor.sid_of(id)));
        params.push(("factor_type", "totp".to_string()));
    }
    if let Some(f) = &factor {
        params.push(("factor_friendly_name", f.label.clone()));
    }
    if let Some(id) = text("challenge_id") {
        params.push(("challenge_sid", Kind::FactorChallenge.sid_of(&id)));
    }
    params.push(("created_date", twilio_date(event.created_at)));
    Ok(params
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}

/// The event's id as a UUID (`evt_<32 hex>` → `8-4-4-4-12`; another form as it is).
fn uuid_of(event_id: &str) -> String {
    let hex = event_id.strip_prefix("evt_").unwrap_or(event_id);
    match uuid::Uuid::try_parse(hex) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => event_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_read_as_uuids() {
        assert_eq!(
            uuid_of("evt_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b"),
            "0193a4b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b"
        );
        assert_eq!(uuid_of("odd"), "odd");
    }
}
