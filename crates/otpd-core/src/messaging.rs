//! Messaging configurations (Twilio Verify's per-country senders): a service names, per
//! destination country or for `all`, the Twilio Messaging Service its SMS go out through.
//! A start for a number of that country carries the Messaging Service in its message
//! options, and a `twilio` provider sends with it (`MessagingServiceSid`) instead of its
//! configured sender; other providers keep their own senders.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The country value that applies to every destination without its own configuration.
pub const ALL_COUNTRIES: &str = "all";

/// One country's sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfiguration {
    /// ISO 3166-1 alpha-2 (upper case), or `all`.
    pub country: String,
    /// The Twilio Messaging Service (`MG` and 32 hex digits).
    pub messaging_service_sid: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A country as configurations keep it: `all`, or two ASCII letters upper-cased.
pub fn normalize_country(country: &str) -> Result<String, DomainError> {
    if country.eq_ignore_ascii_case(ALL_COUNTRIES) {
        return Ok(ALL_COUNTRIES.to_string());
    }
    if country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Ok(country.to_ascii_uppercase());
    }
    Err(DomainError::InvalidRequest(
        "Country: an ISO 3166-1 alpha-2 code or 'all'".into(),
    ))
}

/// Checks a Messaging Service sid: `MG` and 32 hex digits.
pub fn validate_messaging_service_sid(sid: &str) -> Result<(), DomainError> {
    let ok =
        sid.len() == 34 && sid.starts_with("MG") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest(
            "MessagingServiceSid: MG followed by 32 hex digits".into(),
        ))
    }
}

/// The Messaging Service for a destination in `region`: its country's, else `all`'s.
pub fn sender_for<'a>(
    configurations: &'a [MessagingConfiguration],
    region: Option<&str>,
) -> Option<&'a str> {
    let of = |country: &str| {
        configurations
            .iter()
            .find(|c| c.country == country)
            .map(|c| c.messaging_service_sid.as_str())
    };
    region.and_then(of).or_else(|| of(ALL_COUNTRIES))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(country: &str, sid: &str) -> MessagingConfiguration {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        MessagingConfiguration {
            country: country.into(),
            messaging_service_sid: sid.into(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_countrys_own_sender_wins_over_all() {
        let configs = [config("all", "MG1"), config("GB", "MG2")];
        assert_eq!(sender_for(&configs, Some("GB")), Some("MG2"));
        assert_eq!(sender_for(&configs, Some("FR")), Some("MG1"));
        assert_eq!(sender_for(&configs, None), Some("MG1"));
        assert_eq!(sender_for(&configs[1..], Some("FR")), None);
    }

    #[test]
    fn countries_and_sids_are_checked() {
        assert_eq!(normalize_country("gb").unwrap(), "GB");
        assert_eq!(normalize_country("ALL").unwrap(), "all");
        assert!(normalize_country("GBR").is_err());
        assert!(validate_messaging_service_sid(&format!("MG{}", "a".repeat(32))).is_ok());
        assert!(validate_messaging_service_sid("MG123").is_err());
    }
}
