//! Passkeys (WebAuthn): credentials an entity registers with its authenticator, beside its
//! authenticator apps, under the same lockout and event log.
//!
//! The cryptography (attestation, assertion signatures, client data) is the WebAuthn
//! library's, in the engine; here are the rules that are otpd's own and pure: which relying
//! party a service names ([`PasskeySettings`]), how long a ceremony lives and that it is
//! used once ([`PasskeyCeremony`]), and that a signature counter never goes back
//! ([`counter_accepts`]). The library's credential and ceremony state travel through here
//! as opaque JSON documents the stores keep as they are.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// How long a registration or authentication ceremony may be finished after it started.
pub const CEREMONY_TTL: Duration = Duration::minutes(5);
/// Most allowed origins a service may name.
pub const MAX_ORIGINS: usize = 20;
/// Longest `user_name` and `display_name`, in characters.
pub const MAX_USER_NAME: usize = 128;
/// Longest `rp_name`, in characters.
pub const MAX_RP_NAME: usize = 64;

/// The relying party a service's passkeys belong to: the domain they are scoped to, the
/// name authenticators show, and the web origins allowed to run the ceremonies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySettings {
    /// The relying party id: a domain (`example.com`), the host of every origin or a
    /// parent of it.
    pub rp_id: String,
    /// Shown by authenticators; default: the service's friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rp_name: Option<String>,
    /// Origins allowed to register and sign in (`https://example.com`; plain `http` only for
    /// `localhost`).
    pub origins: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidRequest(msg.into())
}

impl PasskeySettings {
    /// Checks the relying party: a lower-case domain name, 1 to [`MAX_ORIGINS`] origins,
    /// each `https` (or `http` on `localhost`) with a host equal to `rp_id` or under it.
    pub fn validate(mut self) -> Result<Self, DomainError> {
        self.rp_id = self.rp_id.to_ascii_lowercase();
        let id = &self.rp_id;
        let labels_ok = id.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if id.is_empty() || id.len() > 253 || !labels_ok {
            return Err(invalid("passkeys.rp_id must be a domain name"));
        }
        if let Some(name) = &self.rp_name {
            crate::text::one_line("passkeys.rp_name", name, MAX_RP_NAME)?;
        }
        if self.origins.is_empty() || self.origins.len() > MAX_ORIGINS {
            return Err(invalid(format!(
                "passkeys.origins must list 1-{MAX_ORIGINS} origins"
            )));
        }
        let mut origins = Vec::with_capacity(self.origins.len());
        for o in &self.origins {
            origins.push(origin_under(o, id)?);
        }
        self.origins = origins;
        Ok(self)
    }
}

/// The origin `o` in its serialized form (`scheme://host[:port]`), if it is one the relying
/// party `rp_id` may use.
fn origin_under(o: &str, rp_id: &str) -> Result<String, DomainError> {
    let bad = || {
        invalid(format!(
            "passkeys.origins: '{}' must be an origin (https://host[:port], or http://localhost) \
             whose host is the rp_id or under it",
            crate::channel::truncate(o)
        ))
    };
    let url = url::Url::parse(o).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
    let secure = match url.scheme() {
        "https" => true,
        "http" => host == "localhost" || host.ends_with(".localhost"),
        _ => false,
    };
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    let under = host == rp_id || host.ends_with(&format!(".{rp_id}"));
    if !secure || !bare || !under || !url.username().is_empty() || url.password().is_some() {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

/// Checks a user name or display name the authenticator shows (1–128 characters, one line).
pub fn validate_user_name(field: &str, v: &str) -> Result<(), DomainError> {
    if v.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    crate::text::one_line(field, v, MAX_USER_NAME)
}

/// Whether an assertion's signature counter may be accepted after the stored one: it must
/// go up, unless the authenticator keeps no counter (both zero, as synced passkeys do). A
/// counter that does not go up may mean a cloned authenticator: refused.
pub fn counter_accepts(stored: u32, presented: u32) -> bool {
    presented > stored || (presented == 0 && stored == 0)
}

/// A new passkey factor id (`pk_…`).
pub fn new_passkey_id() -> String {
    format!("pk_{}", crate::ids::new_hex())
}

/// What a ceremony does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Registration of a new passkey (`pkr_…`).
    Registration,
    /// Sign-in with a passkey (`pka_…`), for an entity or discoverable.
    Authentication,
}

impl CeremonyKind {
    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Registration => "registration",
            CeremonyKind::Authentication => "authentication",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<CeremonyKind> {
        match s {
            "registration" => Some(CeremonyKind::Registration),
            "authentication" => Some(CeremonyKind::Authentication),
            _ => None,
        }
    }

    /// A new ceremony id of this kind.
    pub fn new_id(self) -> String {
        let prefix = match self {
            CeremonyKind::Registration => "pkr_",
            CeremonyKind::Authentication => "pka_",
        };
        format!("{prefix}{}", crate::ids::new_hex())
    }
}

/// A registration or authentication under way: the challenge the browser must sign,
/// kept server-side as the library's state, finished at most once before `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyCeremony {
    /// `pkr_…` or `pka_…`
    pub id: String,
    /// Registration or authentication.
    pub kind: CeremonyKind,
    /// Owning service id.
    pub service_id: String,
    /// The entity registering or signing in; `None` for a discoverable sign-in.
    pub entity: Option<String>,
    /// The name the authenticator shows for the new passkey (registration).
    pub user_name: Option<String>,
    /// The WebAuthn library's ceremony state (JSON; holds the challenge).
    pub state: String,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// No longer finished after this.
    pub expires_at: DateTime<Utc>,
}

impl PasskeyCeremony {
    /// The deadline of a ceremony started at `now`.
    pub fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
        now + CEREMONY_TTL
    }

    /// Whether it may still be finished at `now` (stores also require it unused).
    pub fn open_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// A registered passkey of an entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyFactor {
    /// `pk_…`
    pub id: String,
    /// Owning service id.
    pub service_id: String,
    /// Owning service name (joined on read).
    pub service_name: String,
    /// The entity it signs in.
    pub entity: String,
    /// The credential id (base64url), unique within the service.
    pub credential_id: String,
    /// The WebAuthn user handle of the entity (base64url), as the authenticator holds it.
    pub user_handle: String,
    /// The name the authenticator shows.
    pub user_name: String,
    /// The library's credential (JSON: public key, algorithm, flags, counter).
    pub credential: String,
    /// The last accepted signature counter; raised only by a conditional update.
    pub sign_count: u32,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Last sign-in.
    pub last_used_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rp_id: &str, origins: &[&str]) -> PasskeySettings {
        PasskeySettings {
            rp_id: rp_id.into(),
            rp_name: None,
            origins: origins.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn relying_party_origins_must_lie_under_the_rp_id() {
        let ok = settings(
            "Example.com",
            &["https://example.com", "https://login.example.com:8443/"],
        )
        .validate()
        .unwrap();
        assert_eq!(ok.rp_id, "example.com");
        assert_eq!(
            ok.origins,
            ["https://example.com", "https://login.example.com:8443"]
        );
        assert!(
            settings("localhost", &["http://localhost:3000"])
                .validate()
                .is_ok()
        );
        for (id, origin) in [
            ("example.com", "https://evil.com"),
            ("example.com", "https://notexample.com"),
            ("example.com", "http://example.com"),
            ("example.com", "https://example.com/path"),
            ("example.com", "ftp://example.com"),
            ("example.com", "not a url"),
            ("exa mple.com", "https://example.com"),
            ("", "https://example.com"),
        ] {
            assert!(settings(id, &[origin]).validate().is_err(), "{id} {origin}");
        }
        assert!(settings("example.com", &[]).validate().is_err());
    }

    #[test]
    fn a_signature_counter_never_goes_back() {
        assert!(counter_accepts(0, 0));
        assert!(counter_accepts(0, 1));
        assert!(counter_accepts(5, 6));
        assert!(!counter_accepts(5, 5));
        assert!(!counter_accepts(5, 4));
        assert!(!counter_accepts(5, 0));
    }

    #[test]
    fn a_ceremony_lives_five_minutes() {
        let now = Utc::now();
        let c = PasskeyCeremony {
            id: CeremonyKind::Registration.new_id(),
            kind: CeremonyKind::Registration,
            service_id: "svc".into(),
            entity: Some("u".into()),
            user_name: None,
            state: "{}".into(),
            created_at: now,
            expires_at: PasskeyCeremony::expiry(now),
        };
        assert!(c.id.starts_with("pkr_"));
        assert!(c.open_at(now + Duration::seconds(299)));
        assert!(!c.open_at(now + Duration::seconds(300)));
    }
}
