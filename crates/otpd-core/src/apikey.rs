//! API keys: random bearer tokens, stored only as SHA-256 digests.
//!
//! A key carries ≥190 bits of entropy, so a plain SHA-256 digest is a safe stored form
//! (no password stretching is needed) and lets the store find a key by its digest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ids::Kind;

/// Random bytes in a key (24 bytes → 32 base64url characters, 192 bits).
const KEY_RANDOM_BYTES: usize = 24;
/// Prefix of live keys.
pub const LIVE_PREFIX: &str = "otpd_live_";
/// Prefix of test keys, whose messages are recorded instead of delivered.
pub const TEST_PREFIX: &str = "otpd_test_";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including services, keys and events.
    Admin,
    /// Send and check verifications.
    Verify,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Verify => "verify",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "verify" => Some(Role::Verify),
            _ => None,
        }
    }
}

/// A stored API key (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    /// Human label.
    pub name: String,
    /// Permissions.
    pub role: Role,
    /// Test keys never reach a provider.
    pub test: bool,
    /// Service ids this key is limited to; `None` means all.
    pub services: Option<Vec<String>>,
    /// The last four characters, to recognize a key in listings.
    pub hint: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A newly minted key: the record plus the secret, which is shown once and then dropped.
pub struct NewApiKey {
    /// The record to store.
    pub record: ApiKey,
    /// The digest to store.
    pub digest: Vec<u8>,
    /// The bearer token, for the caller only.
    pub secret: Zeroizing<String>,
}

/// Mints a key.
pub fn mint(
    name: &str,
    role: Role,
    test: bool,
    services: Option<Vec<String>>,
    now: DateTime<Utc>,
) -> NewApiKey {
    let mut bytes = [0u8; KEY_RANDOM_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let prefix = if test { TEST_PREFIX } else { LIVE_PREFIX };
    let secret = Zeroizing::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)));
    NewApiKey {
        record: ApiKey {
            id: Kind::ApiKey.new_id(),
            name: name.to_string(),
            role,
            test,
            services,
            hint: secret[secret.len() - 4..].to_string(),
            created_at: now,
            revoked_at: None,
        },
        digest: digest(&secret),
        secret,
    }
}

/// The stored digest of a presented key.
pub fn digest(presented: &str) -> Vec<u8> {
    Sha256::digest(presented.as_bytes()).to_vec()
}

/// Who is calling, once a key has been accepted.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The key id, or `master` for `OTPD_MASTER_KEY`.
    pub key_id: String,
    /// Permissions.
    pub role: Role,
    /// Test mode.
    pub test: bool,
    /// Service restriction.
    pub services: Option<Vec<String>>,
}

impl Principal {
    /// Whether this caller may act on the service with this id.
    pub fn may_use_service(&self, service_id: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == service_id))
    }

    /// Whether this caller may see or act on a record of this service made in this world
    /// (`test`): a test key's verifications are never a live key's, nor the reverse
    /// (shared/DESIGN.md, invariant 8), and a scoped key sees only its services.
    pub fn may_see(&self, service_id: &str, test: bool) -> bool {
        self.test == test && self.may_use_service(service_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_have_their_prefix_and_digest() {
        let k = mint("ci", Role::Verify, true, None, Utc::now());
        assert!(k.secret.starts_with(TEST_PREFIX));
        assert_eq!(k.secret.len(), TEST_PREFIX.len() + 32);
        assert_eq!(k.digest, digest(&k.secret));
        assert!(k.secret.ends_with(&k.record.hint));
        let other = mint("ci", Role::Verify, true, None, Utc::now());
        assert_ne!(k.secret, other.secret);
    }
}
