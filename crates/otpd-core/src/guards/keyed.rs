//! Keyed rate limits (Twilio Verify's "Service Rate Limits"): a service declares named
//! limits, each with buckets of `max` sends per `interval` seconds; a start names the
//! limits it falls under with a key of the application's choosing (an end-user IP, a
//! session, a block of numbers), `{"<unique_name>": "<key>"}`, and takes a token from each
//! of their buckets for that key. The buckets are GCRA buckets of the rate-limit guard
//! ([`super::rate`]), kept where the other limits are (Redis or the database), so every
//! node shares them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rate::{Bucket, Limit, MAX_COUNT, MAX_PERIOD_SECONDS};
use crate::DomainError;

/// Most keyed limits a service may have (Twilio's error 60207 names the same bound).
pub const MAX_LIMITS: usize = 100;
/// Most buckets per keyed limit (Twilio's 60210).
pub const MAX_BUCKETS: usize = 10;
/// Longest unique name or description.
pub const MAX_NAME: usize = 64;
/// Longest key a start may give for one limit.
pub const MAX_KEY: usize = 256;

/// A named limit of a service (`RK…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyedLimit {
    /// `RK` and 32 hex digits.
    pub id: String,
    /// The name starts refer to it by: letters, digits, `_` and `-`.
    pub unique_name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its buckets (a limit without buckets limits nothing).
    #[serde(default)]
    pub buckets: Vec<KeyedBucket>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One bucket of a keyed limit (`BL…`): at most `max` sends per `interval_seconds` for
/// one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyedBucket {
    /// `BL` and 32 hex digits.
    pub id: String,
    /// Sends allowed per interval.
    pub max: u32,
    /// The interval, in seconds.
    pub interval_seconds: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Checks a unique name: 1–64 of letters, digits, `_`, `-` and `.`.
pub fn validate_unique_name(name: &str) -> Result<(), DomainError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest(
            "UniqueName: 1-64 letters, digits, '_', '-' or '.'".into(),
        ))
    }
}

/// Checks a bucket's numbers: `max` 1–1,000,000, `interval` 1–86,400 seconds.
pub fn validate_bucket(max: u32, interval_seconds: u32) -> Result<(), DomainError> {
    if (1..=MAX_COUNT).contains(&max) && (1..=MAX_PERIOD_SECONDS).contains(&interval_seconds) {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest(format!(
            "Max 1-{MAX_COUNT} and Interval 1-{MAX_PERIOD_SECONDS} seconds"
        )))
    }
}

/// The buckets a start takes a token from for the keys it gives (`unique name → key`).
/// A name the service has not declared, or an empty or overlong key, is refused: the
/// application meant a limit that would not hold.
pub fn buckets_for(
    limits: &[KeyedLimit],
    service_id: &str,
    keys: &BTreeMap<String, String>,
) -> Result<Vec<Bucket>, DomainError> {
    let mut out = Vec::new();
    for (name, key) in keys {
        let Some(limit) = limits.iter().find(|l| &l.unique_name == name) else {
            return Err(DomainError::InvalidRequest(format!(
                "RateLimits: the service has no rate limit named '{name}'"
            )));
        };
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(DomainError::InvalidRequest(format!(
                "RateLimits: the key of '{name}' must be 1-{MAX_KEY} characters"
            )));
        }
        // The key is the application's (it may be an address): kept as a digest.
        let digest = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        for b in &limit.buckets {
            out.push(Bucket {
                key: format!("send:keyed:{service_id}:{}:{}:{digest}", limit.id, b.id),
                limit: Limit::new(b.max, b.interval_seconds),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(name: &str, buckets: &[(u32, u32)]) -> KeyedLimit {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        KeyedLimit {
            id: format!("RK{:032x}", name.len()),
            unique_name: name.into(),
            description: None,
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(i, (max, interval))| KeyedBucket {
                    id: format!("BL{i:032x}"),
                    max: *max,
                    interval_seconds: *interval,
                    created_at: at,
                    updated_at: at,
                })
                .collect(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn each_bucket_of_each_named_limit_applies_to_its_key() {
        let limits = [
            limit("end_user_ip", &[(2, 60), (10, 3600)]),
            limit("x", &[]),
        ];
        let keys = BTreeMap::from([("end_user_ip".to_string(), "192.0.2.7".to_string())]);
        let b = buckets_for(&limits, "svc_1", &keys).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].limit, Limit::new(2, 60));
        assert!(b[0].key.starts_with("send:keyed:svc_1:RK"));
        assert!(!b[0].key.contains("192.0.2.7"), "keys are kept as digests");
        let other = BTreeMap::from([("end_user_ip".to_string(), "192.0.2.8".to_string())]);
        assert_ne!(
            buckets_for(&limits, "svc_1", &other).unwrap()[0].key,
            b[0].key
        );
        // A limit without buckets limits nothing; an unknown name is refused.
        let none = BTreeMap::from([("x".to_string(), "k".to_string())]);
        assert!(buckets_for(&limits, "svc_1", &none).unwrap().is_empty());
        let unknown = BTreeMap::from([("nope".to_string(), "k".to_string())]);
        assert!(buckets_for(&limits, "svc_1", &unknown).is_err());
    }

    #[test]
    fn names_and_buckets_are_bounded() {
        assert!(validate_unique_name("end_user_ip").is_ok());
        assert!(validate_unique_name("").is_err());
        assert!(validate_unique_name("has space").is_err());
        assert!(validate_bucket(1, 1).is_ok());
        assert!(validate_bucket(0, 60).is_err());
        assert!(validate_bucket(5, 86_401).is_err());
    }
}
