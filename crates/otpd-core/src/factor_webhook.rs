//! Factor webhooks (Twilio Verify's per-service Webhooks): a service names URLs that
//! receive its authenticator-factor events — a factor created, verified or deleted, a
//! challenge (Twilio's `/v2` Challenge) approved — each subscribed to some of those events or to all (`*`).
//!
//! They are kept in the service's settings (`factor_webhooks`) and delivered through the
//! same durable queue as otpd's own webhooks: the store queues one message per event and
//! subscribed webhook in the event's own transaction. Each message is a form signed with
//! `X-Twilio-Signature`, keyed (as Twilio keys it with the account's auth token) by the
//! API key that created or last updated the webhook; that key is kept sealed with the
//! server secret ([`FactorWebhook::sealed_key`]), so every node, and every node after a
//! restart, signs alike.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::event::EventType;

/// The subscription to every event.
pub const ALL_EVENTS: &str = "*";

/// The event types a webhook may subscribe to, as Twilio names them. `challenge.denied`
/// is Twilio's refusal of a push challenge; otpd has no push factors, so it never fires.
pub const EVENT_TYPES: [&str; 6] = [
    ALL_EVENTS,
    "factor.created",
    "factor.verified",
    "factor.deleted",
    "challenge.approved",
    "challenge.denied",
];

/// Twilio's webhook payload versions (`v2`, the default, is the one otpd sends; `v1`
/// is accepted and kept).
pub const VERSIONS: [&str; 2] = ["v1", "v2"];

/// One webhook of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorWebhook {
    /// `YW` and 32 hex digits.
    pub sid: String,
    /// A label (Twilio's `FriendlyName`).
    pub friendly_name: String,
    /// What it receives: names of [`EVENT_TYPES`].
    pub event_types: Vec<String>,
    /// Where messages are POSTed.
    pub url: String,
    /// `enabled` or `disabled` (a disabled webhook is queued nothing).
    pub status: String,
    /// `v1` or `v2`.
    pub version: String,
    /// The id of the API key that signs its messages (`key_…`, or `master`).
    pub key_id: String,
    /// That key, sealed with the server secret under the webhook's sid (base64). Never
    /// shown by any API.
    #[schema(ignore)]
    pub sealed_key: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl FactorWebhook {
    /// Whether it is enabled.
    pub fn enabled(&self) -> bool {
        self.status == "enabled"
    }
}

/// The Twilio event type an otpd event is delivered as, if a factor webhook receives it.
pub fn twilio_event_type(kind: &str) -> Option<&'static str> {
    [
        (EventType::FactorCreated, "factor.created"),
        (EventType::FactorVerified, "factor.verified"),
        (EventType::FactorDeleted, "factor.deleted"),
        (EventType::FactorChallengeApproved, "challenge.approved"),
    ]
    .into_iter()
    .find(|(t, _)| t.as_str() == kind)
    .map(|(_, name)| name)
}

/// Checks a list of event types: not empty, each one of [`EVENT_TYPES`]; duplicates
/// dropped, order kept.
pub fn validate_event_types(types: Vec<String>) -> Result<Vec<String>, DomainError> {
    if types.is_empty() {
        return Err(DomainError::InvalidRequest(
            "EventTypes: at least one event type".into(),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(DomainError::InvalidRequest(format!(
                "EventTypes: '{t}' is not one of {}",
                EVENT_TYPES.join(", ")
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Checks a status value (`enabled` or `disabled`).
pub fn validate_status(status: &str) -> Result<(), DomainError> {
    match status {
        "enabled" | "disabled" => Ok(()),
        _ => Err(DomainError::InvalidRequest(
            "Status: 'enabled' or 'disabled'".into(),
        )),
    }
}

/// Checks a version value (`v1` or `v2`).
pub fn validate_version(version: &str) -> Result<(), DomainError> {
    if VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest("Version: 'v1' or 'v2'".into()))
    }
}

/// Whether a webhook subscribed to these types receives an event delivered as `twilio_type`.
pub fn subscribed(event_types: &[String], twilio_type: &str) -> bool {
    event_types
        .iter()
        .any(|t| t == ALL_EVENTS || t == twilio_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_events_map_to_twilio_names_and_others_to_none() {
        assert_eq!(twilio_event_type("factor.created"), Some("factor.created"));
        assert_eq!(
            twilio_event_type("factor.challenge_approved"),
            Some("challenge.approved")
        );
        assert_eq!(twilio_event_type("factor.approved"), None);
        assert_eq!(twilio_event_type("factor.check_failed"), None);
        assert_eq!(twilio_event_type("verification.approved"), None);
    }

    #[test]
    fn event_types_are_checked_and_deduplicated() {
        let ok = validate_event_types(vec![
            "factor.created".into(),
            "*".into(),
            "factor.created".into(),
        ])
        .unwrap();
        assert_eq!(ok, vec!["factor.created".to_string(), "*".to_string()]);
        assert!(validate_event_types(vec![]).is_err());
        assert!(validate_event_types(vec!["factor.exploded".into()]).is_err());
        assert!(subscribed(&ok, "challenge.approved"));
        assert!(!subscribed(&["factor.created".into()], "factor.deleted"));
    }

    #[test]
    fn status_and_version_accept_the_spec_enums_only() {
        assert!(validate_status("enabled").is_ok() && validate_status("disabled").is_ok());
        assert!(validate_status("on").is_err());
        assert!(validate_version("v1").is_ok() && validate_version("v2").is_ok());
        assert!(validate_version("v3").is_err());
    }
}
