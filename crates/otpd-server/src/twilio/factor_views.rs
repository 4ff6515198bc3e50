//! The JSON shapes of Twilio's authenticator-app resources (Entity `YE…`, Factor `YF…`,
//! Challenge `YC…`), built from otpd's factors: a `/v2` Factor is an otpd TOTP factor
//! (`tf_<hex>` ↔ `YF<hex>`), an Entity is otpd's entity id (its SID derived from the service
//! and the identity), so one record is named on both faces without a lookup table.

use chrono::{DateTime, Utc};
use otpd_core::ids::Kind;
use otpd_core::totp::{Algorithm, Factor, FactorStatus};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::views::{ACCOUNT_SID, twilio_date};

/// The Entity SID of an identity in a service: `YE` and 32 hex digits of a SHA-256 of both,
/// the same on every node and across restarts (otpd keeps no entity records).
pub fn entity_sid(service_id: &str, identity: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"otpd-twilio-entity\0");
    h.update(service_id.as_bytes());
    h.update(b"\0");
    h.update(identity.as_bytes());
    format!("YE{}", hex::encode(&h.finalize()[..16]))
}

/// An identity as a URL path segment (RFC 3986 unreserved characters kept).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{base}/v2/Services/{VA…}/Entities/{identity}`.
pub fn entity_url(base: &str, service_id: &str, identity: &str) -> String {
    format!(
        "{base}/v2/Services/{}/Entities/{}",
        Kind::Service.sid_of(service_id),
        path_segment(identity)
    )
}

/// Twilio's name of a hash (`sha1`, `sha256`, `sha512`).
pub fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Sha1 => "sha1",
        Algorithm::Sha256 => "sha256",
        Algorithm::Sha512 => "sha512",
    }
}

/// The hash of Twilio's name.
pub fn parse_alg(s: &str) -> Option<Algorithm> {
    match s {
        "sha1" => Some(Algorithm::Sha1),
        "sha256" => Some(Algorithm::Sha256),
        "sha512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

/// An Entity resource.
#[derive(Serialize, ToSchema)]
pub struct TwEntity {
    /// `YE…`
    pub sid: String,
    /// The application's id for the user (otpd's entity).
    pub identity: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// `VA…`
    pub service_sid: String,
    /// Its first factor's creation (or now, for an entity without factors).
    pub date_created: String,
    /// The same.
    pub date_updated: String,
    /// This resource.
    pub url: String,
    /// `factors`, `new_factors`, `challenges`.
    #[schema(value_type = Object)]
    pub links: Value,
}

impl TwEntity {
    /// The Entity `identity` of a service, created at `created`.
    pub fn of(service_id: &str, identity: &str, created: DateTime<Utc>, base: &str) -> Self {
        let url = entity_url(base, service_id, identity);
        TwEntity {
            sid: entity_sid(service_id, identity),
            identity: identity.to_string(),
            account_sid: ACCOUNT_SID.into(),
            service_sid: Kind::Service.sid_of(service_id),
            date_created: twilio_date(created),
            date_updated: twilio_date(created),
            links: json!({
                "factors": format!("{url}/Factors"),
                "new_factors": format!("{url}/Factors"),
                "challenges": format!("{url}/Challenges"),
            }),
            url,
        }
    }
}

/// A Factor resource (an otpd TOTP factor; its secret is never in it).
#[derive(Serialize, ToSchema)]
pub struct TwFactor {
    /// `YF…`
    pub sid: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// `VA…`
    pub service_sid: String,
    /// `YE…`
    pub entity_sid: String,
    /// The entity.
    pub identity: String,
    /// Created.
    pub date_created: String,
    /// Last change (activation or last accepted code).
    pub date_updated: String,
    /// The account name shown in the app (otpd's `label`).
    pub friendly_name: String,
    /// `unverified` or `verified` (otpd's `active`).
    pub status: String,
    /// Always `totp`.
    pub factor_type: String,
    /// `alg`, `skew`, `code_length`, `time_step`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Always null (otpd keeps no factor metadata).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// This resource.
    pub url: String,
}

impl TwFactor {
    /// The Twilio view of a TOTP factor.
    pub fn of(f: &Factor, base: &str) -> Self {
        let updated = [f.verified_at, f.last_used_at]
            .into_iter()
            .flatten()
            .fold(f.created_at, DateTime::max);
        let sid = Kind::Factor.sid_of(&f.id);
        TwFactor {
            url: format!(
                "{}/Factors/{sid}",
                entity_url(base, &f.service_id, &f.entity)
            ),
            sid,
            account_sid: ACCOUNT_SID.into(),
            service_sid: Kind::Service.sid_of(&f.service_id),
            entity_sid: entity_sid(&f.service_id, &f.entity),
            identity: f.entity.clone(),
            date_created: twilio_date(f.created_at),
            date_updated: twilio_date(updated),
            friendly_name: f.label.clone(),
            status: match f.status {
                FactorStatus::Unverified => "unverified",
                FactorStatus::Active => "verified",
            }
            .into(),
            factor_type: "totp".into(),
            config: json!({
                "alg": alg_name(f.params.algorithm),
                "skew": f.params.tolerance,
                "code_length": f.params.digits,
                "time_step": f.params.period,
            }),
            metadata: None,
        }
    }
}

/// A new Factor: the Factor with its `binding` (the secret and the `otpauth://` URI),
/// shown in this reply only.
#[derive(Serialize, ToSchema)]
pub struct TwNewFactor {
    /// The factor.
    #[serde(flatten)]
    pub factor: TwFactor,
    /// `secret` (base32) and `uri`.
    #[schema(value_type = Object)]
    pub binding: Value,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub options: Option<Value>,
}

/// A Challenge of a TOTP factor.
#[derive(Serialize, ToSchema)]
pub struct TwChallenge {
    /// `YC…`
    pub sid: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// `VA…`
    pub service_sid: String,
    /// `YE…`
    pub entity_sid: String,
    /// The entity.
    pub identity: String,
    /// `YF…`
    pub factor_sid: String,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// When a right code approved it (null while pending).
    pub date_responded: Option<String>,
    /// When it expires.
    pub expiration_date: String,
    /// `pending`, `approved` or `expired`.
    pub status: String,
    /// Always `none`.
    pub responded_reason: String,
    /// Always null (details are for push factors).
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub hidden_details: Option<Value>,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Always `totp`.
    pub factor_type: String,
    /// This resource.
    pub url: String,
    /// `notifications` (push only; not served).
    #[schema(value_type = Object)]
    pub links: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_sids_are_stable_twilio_sids_and_urls_escape_identities() {
        let a = entity_sid("svc_1", "user-42");
        assert_eq!(a, entity_sid("svc_1", "user-42"));
        assert_ne!(a, entity_sid("svc_2", "user-42"));
        assert!(a.starts_with("YE") && a.len() == 34);
        assert!(a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(path_segment("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            parse_alg(alg_name(Algorithm::Sha256)),
            Some(Algorithm::Sha256)
        );
        assert_eq!(parse_alg("SHA1"), None);
    }
}
