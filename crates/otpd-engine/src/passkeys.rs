//! Passkey ceremonies (WebAuthn): registration and sign-in, for an entity or discoverable
//! (username-less), over the service's relying party.
//!
//! The WebAuthn checks (challenge, origin, RP id, signatures, user verification, counter)
//! are webauthn-rs's; otpd's own rules come from `otpd_core::passkey` (relying-party
//! settings, five-minute single-use ceremonies, a counter that never goes back) and the
//! store applies them atomically with the entity's lockout and the event log. Options go
//! out and credentials come in as the WebAuthn Level 3 JSON forms.

use otpd_core::audit::WriteContext;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use otpd_core::clock::Clock;
use otpd_core::lockout::retry_after_secs;
use otpd_core::passkey::{
    CEREMONY_TTL, CeremonyKind, PasskeyCeremony, PasskeyFactor, PasskeySettings, new_passkey_id,
};
use otpd_core::secret::ServerSecret;
use otpd_core::service::Service;
use otpd_core::store::{
    COUNTER_WENT_BACK, PasskeyFailure, PasskeyUse, PasskeyUseOutcome, Store, StoreError,
};
use serde_json::Value;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
    WebauthnError,
};

use crate::{VerifyError, VerifyResult};

/// Passkey registration and sign-in (cheap to build per request: three shared handles).
pub struct Passkeys {
    store: Arc<dyn Store>,
    secret: Arc<ServerSecret>,
    clock: Arc<dyn Clock>,
}

/// A ceremony started: what the browser needs to run it.
#[derive(Debug)]
pub struct CeremonyStarted {
    /// `pkr_…` or `pka_…`: finish it by this id.
    pub id: String,
    /// `PublicKeyCredentialCreationOptionsJSON` or `PublicKeyCredentialRequestOptionsJSON`.
    pub options: Value,
    /// It cannot be finished after this.
    pub expires_at: DateTime<Utc>,
}

/// The outcome of a sign-in.
#[derive(Debug, PartialEq, Eq)]
pub enum SignIn {
    /// The assertion was right: this passkey signed this entity in.
    Valid {
        /// The entity signed in.
        entity: String,
        /// The passkey used (`pk_…`).
        factor: String,
    },
    /// The assertion failed (recorded, and counted toward the entity's lockout when the
    /// entity is known).
    Invalid,
}

/// The WebAuthn user handle of an entity: 16 bytes keyed by the server secret, so the
/// authenticator holds no entity id in clear, and the same for every passkey of the entity.
fn user_handle(secret: &ServerSecret, service_id: &str, entity: &str) -> Uuid {
    let digest = secret
        .hasher()
        .hash_text(&format!("passkey-user-handle\n{service_id}"), entity);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// The id of the ceremony that issued `challenge` (its raw bytes): the kind's prefix and 32
/// hex digits of a digest keyed by the server secret. A credential names its ceremony
/// through the challenge in its `clientDataJSON`, so a ceremony can be finished without its
/// id (Twilio's `/v2` passkey operations carry only the credential).
fn ceremony_id(secret: &ServerSecret, kind: CeremonyKind, challenge: &[u8]) -> String {
    let prefix = match kind {
        CeremonyKind::Registration => "pkr_",
        CeremonyKind::Authentication => "pka_",
    };
    let digest = secret
        .hasher()
        .hash_text("passkey-ceremony-id", &b64(challenge));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Raw bytes of a base64url text (padded or not).
fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The service's relying party, or why passkeys cannot be used there.
fn relying_party(service: &Service) -> VerifyResult<&PasskeySettings> {
    service.settings.passkeys.as_ref().ok_or_else(|| {
        VerifyError::invalid(
            "passkeys are not set up for this service: set its `passkeys` (rp_id, origins)",
        )
    })
}

/// The WebAuthn relying party of a service.
fn webauthn(service: &Service) -> VerifyResult<Webauthn> {
    let rp = relying_party(service)?;
    let refused = || VerifyError::invalid("the service's passkeys settings are not usable");
    let origins = rp
        .origins
        .iter()
        .map(|o| Url::parse(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| refused())?;
    let (first, rest) = origins.split_first().ok_or_else(refused)?;
    let name = rp
        .rp_name
        .clone()
        .unwrap_or_else(|| service.display_name().to_string());
    let mut builder = WebauthnBuilder::new(&rp.rp_id, first)
        .map_err(|_| refused())?
        .rp_name(&name)
        .timeout(CEREMONY_TTL.to_std().unwrap_or_default());
    for o in rest {
        builder = builder.append_allowed_origin(o);
    }
    builder.build().map_err(|_| refused())
}

/// Why the library refused an assertion, for `passkey.failed` (its own words, except the
/// counter's, which otpd names the same whichever check caught it).
fn reason_of(e: &WebauthnError) -> String {
    match e {
        WebauthnError::CredentialPossibleCompromise => COUNTER_WENT_BACK.into(),
        other => other.to_string(),
    }
}

fn corrupt(what: &str) -> VerifyError {
    VerifyError::Store(StoreError::Corrupt(format!("passkey {what}")))
}

fn parse_passkey(f: &PasskeyFactor) -> VerifyResult<Passkey> {
    serde_json::from_str(&f.credential).map_err(|_| corrupt("credential"))
}

fn to_json<T: serde::Serialize>(v: &T) -> VerifyResult<String> {
    serde_json::to_string(v).map_err(|_| corrupt("state"))
}

/// A passkey's signature counter, as the library's credential document holds it.
fn counter_of(passkey: &Passkey) -> u32 {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v["cred"]["counter"].as_u64())
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(0)
}

impl Passkeys {
    /// Passkeys over this store, server secret (user handles) and clock.
    pub fn new(store: Arc<dyn Store>, secret: Arc<ServerSecret>, clock: Arc<dyn Clock>) -> Self {
        Passkeys {
            store,
            secret,
            clock,
        }
    }

    async fn service(&self, id: &str) -> VerifyResult<Service> {
        self.store
            .find_service(id)
            .await?
            .ok_or(VerifyError::NotFound("service"))
    }

    /// A ceremony of this kind by id, used or not (for the caller's scope check before it
    /// is finished).
    pub async fn ceremony(&self, id: &str, kind: CeremonyKind) -> VerifyResult<PasskeyCeremony> {
        self.store
            .get_passkey_ceremony(id)
            .await?
            .filter(|c| c.kind == kind)
            .ok_or(VerifyError::NotFound("ceremony"))
    }

    /// The id of the ceremony of this kind that a credential answers, from the challenge
    /// in its `clientDataJSON` (base64url, as `toJSON()` gives it); `None` when the text is
    /// not one. The ceremony itself may not exist (or be used, or expired).
    pub fn ceremony_of_client_data(&self, kind: CeremonyKind, client_data: &str) -> Option<String> {
        let json: Value = serde_json::from_slice(&unb64(client_data)?).ok()?;
        let challenge = unb64(json.get("challenge")?.as_str()?)?;
        Some(ceremony_id(&self.secret, kind, &challenge))
    }

    /// Takes a ceremony for finishing (once, before its deadline).
    async fn take(&self, id: &str) -> VerifyResult<PasskeyCeremony> {
        self.store
            .take_passkey_ceremony(id, self.clock.now())
            .await?
            .ok_or_else(|| {
                VerifyError::invalid(
                    "this ceremony was already used or has expired (5 minutes): start a new one",
                )
            })
    }

    async fn store_ceremony(
        &self,
        kind: CeremonyKind,
        service: &Service,
        entity: Option<&str>,
        user_name: Option<&str>,
        state: String,
        options: Value,
    ) -> VerifyResult<CeremonyStarted> {
        let now = self.clock.now();
        let id = options
            .get("challenge")
            .and_then(Value::as_str)
            .and_then(unb64)
            .map(|c| ceremony_id(&self.secret, kind, &c))
            .ok_or_else(|| corrupt("options"))?;
        let ceremony = PasskeyCeremony {
            id,
            kind,
            service_id: service.id.clone(),
            entity: entity.map(str::to_string),
            user_name: user_name.map(str::to_string),
            state,
            created_at: now,
            expires_at: PasskeyCeremony::expiry(now),
        };
        self.store.create_passkey_ceremony(&ceremony).await?;
        Ok(CeremonyStarted {
            id: ceremony.id,
            options,
            expires_at: ceremony.expires_at,
        })
    }

    /// Starts registering a passkey for `entity` (its existing passkeys excluded, so an
    /// authenticator does not register twice).
    pub async fn start_registration(
        &self,
        service: &Service,
        entity: &str,
        user_name: &str,
        display_name: Option<&str>,
    ) -> VerifyResult<CeremonyStarted> {
        let webauthn = webauthn(service)?;
        let existing = self.store.list_passkeys(&service.id, entity).await?;
        let exclude = existing
            .iter()
            .map(|f| parse_passkey(f).map(|p| p.cred_id().clone()))
            .collect::<VerifyResult<Vec<_>>>()?;
        let handle = user_handle(&self.secret, &service.id, entity);
        let (ccr, state) = webauthn
            .start_passkey_registration(
                handle,
                user_name,
                display_name.unwrap_or(user_name),
                Some(exclude),
            )
            .map_err(|e| VerifyError::invalid(format!("registration could not start: {e}")))?;
        let mut options = serde_json::to_value(&ccr.public_key).map_err(|_| corrupt("options"))?;
        // A passkey is a discoverable credential: ask for one, so that a username-less
        // sign-in finds it (authenticators that cannot still register a credential).
        if let Some(sel) = options
            .get_mut("authenticatorSelection")
            .and_then(Value::as_object_mut)
        {
            sel.insert("residentKey".into(), "preferred".into());
            sel.insert("requireResidentKey".into(), false.into());
        }
        let state = to_json::<PasskeyRegistration>(&state)?;
        self.store_ceremony(
            CeremonyKind::Registration,
            service,
            Some(entity),
            Some(user_name),
            state,
            options,
        )
        .await
    }

    /// Finishes a registration with the browser's `RegistrationResponseJSON`: a bad
    /// attestation, another origin or RP id, a used or expired ceremony, or a credential
    /// already registered is refused (`Invalid`) and nothing is stored.
    pub async fn finish_registration(
        &self,
        id: &str,
        credential: Value,
        ctx: &WriteContext,
    ) -> VerifyResult<PasskeyFactor> {
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|e| {
                VerifyError::invalid(format!(
                    "credential must be a RegistrationResponseJSON: {e}"
                ))
            })?;
        let ceremony = self.take(id).await?;
        let service = self.service(&ceremony.service_id).await?;
        let webauthn = webauthn(&service)?;
        let state: PasskeyRegistration =
            serde_json::from_str(&ceremony.state).map_err(|_| corrupt("ceremony"))?;
        let passkey = webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| VerifyError::invalid(format!("the credential was refused: {e}")))?;
        let (Some(entity), Some(user_name)) = (ceremony.entity, ceremony.user_name) else {
            return Err(corrupt("ceremony"));
        };
        // The passkey keeps its registration's digits (`pkr_<hex>` → `pk_<hex>`), so that
        // Twilio's Factor SID (`YF<hex>`) is the same before and after verification.
        let factor = PasskeyFactor {
            id: id
                .strip_prefix("pkr_")
                .map_or_else(new_passkey_id, |hex| format!("pk_{hex}")),
            service_id: service.id.clone(),
            service_name: service.name.clone(),
            user_handle: b64(user_handle(&self.secret, &service.id, &entity).as_bytes()),
            entity,
            credential_id: b64(passkey.cred_id().as_ref()),
            user_name,
            sign_count: counter_of(&passkey),
            credential: to_json(&passkey)?,
            created_at: self.clock.now(),
            last_used_at: None,
        };
        if !self.store.register_passkey(&factor, ctx).await? {
            return Err(VerifyError::invalid(
                "this passkey is already registered in this service",
            ));
        }
        Ok(factor)
    }

    /// Starts a sign-in: for `entity` (its passkeys allowed; refused while it is locked),
    /// or discoverable with no entity (the authenticator offers the user's passkeys).
    pub async fn start_authentication(
        &self,
        service: &Service,
        entity: Option<&str>,
    ) -> VerifyResult<CeremonyStarted> {
        let webauthn = webauthn(service)?;
        let (rcr, state) = match entity {
            Some(entity) => {
                let now = self.clock.now();
                if let Some(until) = self
                    .store
                    .entity_locked_until(&service.id, entity, now)
                    .await?
                {
                    return Err(VerifyError::Store(StoreError::Locked {
                        retry_after_secs: retry_after_secs(until, now),
                    }));
                }
                let passkeys = self
                    .store
                    .list_passkeys(&service.id, entity)
                    .await?
                    .iter()
                    .map(parse_passkey)
                    .collect::<VerifyResult<Vec<_>>>()?;
                if passkeys.is_empty() {
                    return Err(VerifyError::NotFound("passkey of this entity"));
                }
                let (rcr, state) = webauthn
                    .start_passkey_authentication(&passkeys)
                    .map_err(|e| VerifyError::invalid(format!("sign-in could not start: {e}")))?;
                (rcr, to_json::<PasskeyAuthentication>(&state)?)
            }
            None => {
                let (rcr, state) = webauthn
                    .start_discoverable_authentication()
                    .map_err(|e| VerifyError::invalid(format!("sign-in could not start: {e}")))?;
                (rcr, to_json::<DiscoverableAuthentication>(&state)?)
            }
        };
        let options = serde_json::to_value(&rcr.public_key).map_err(|_| corrupt("options"))?;
        self.store_ceremony(
            CeremonyKind::Authentication,
            service,
            entity,
            None,
            state,
            options,
        )
        .await
    }

    /// Finishes a sign-in with the browser's `AuthenticationResponseJSON`. A used or
    /// expired ceremony, or a body that is not a credential, is refused (`Invalid`); a
    /// failed assertion (wrong origin, signature, user, or a counter gone back) is
    /// [`SignIn::Invalid`], recorded as `passkey.failed`.
    pub async fn finish_authentication(
        &self,
        id: &str,
        credential: Value,
        ctx: &WriteContext,
    ) -> VerifyResult<SignIn> {
        let credential: PublicKeyCredential = serde_json::from_value(credential).map_err(|e| {
            VerifyError::invalid(format!(
                "credential must be an AuthenticationResponseJSON: {e}"
            ))
        })?;
        let ceremony = self.take(id).await?;
        let service = self.service(&ceremony.service_id).await?;
        let webauthn = webauthn(&service)?;
        let credential_id = b64(credential.raw_id.as_ref());
        let factor = self
            .store
            .find_passkey_by_credential(&service.id, &credential_id)
            .await?;
        let fail = |entity: Option<String>, factor: Option<&PasskeyFactor>, reason: String| {
            PasskeyFailure {
                service_id: service.id.clone(),
                entity,
                factor_id: factor.map(|f| f.id.clone()),
                reason,
            }
        };
        let verified = match (&ceremony.entity, factor.as_ref()) {
            (Some(entity), Some(f)) if &f.entity == entity => {
                let state: PasskeyAuthentication =
                    serde_json::from_str(&ceremony.state).map_err(|_| corrupt("ceremony"))?;
                webauthn
                    .finish_passkey_authentication(&credential, &state)
                    .map_err(|e| fail(Some(entity.clone()), Some(f), reason_of(&e)))
            }
            (Some(entity), _) => Err(fail(
                Some(entity.clone()),
                None,
                "the credential is not a passkey of this entity".into(),
            )),
            (None, None) => Err(fail(None, None, "unknown credential".into())),
            (None, Some(f)) => {
                let state: DiscoverableAuthentication =
                    serde_json::from_str(&ceremony.state).map_err(|_| corrupt("ceremony"))?;
                let same_user = webauthn
                    .identify_discoverable_authentication(&credential)
                    .is_ok_and(|(handle, _)| b64(handle.as_bytes()) == f.user_handle);
                if same_user {
                    let passkey = parse_passkey(f)?;
                    webauthn
                        .finish_discoverable_authentication_v2(&credential, state, &passkey)
                        .map_err(|e| fail(Some(f.entity.clone()), Some(f), reason_of(&e)))
                } else {
                    Err(fail(
                        Some(f.entity.clone()),
                        Some(f),
                        "the user handle is not the passkey's".into(),
                    ))
                }
            }
        };
        let (result, f) = match (verified, factor) {
            (Ok(result), Some(f)) => (result, f),
            (Err(failure), _) => {
                self.store
                    .passkey_failed(&failure, self.clock.now(), ctx)
                    .await?;
                return Ok(SignIn::Invalid);
            }
            (Ok(_), None) => return Err(corrupt("sign-in without a passkey")),
        };
        let mut passkey = parse_passkey(&f)?;
        passkey.update_credential(&result);
        let used = PasskeyUse {
            factor_id: f.id.clone(),
            sign_count: result.counter(),
            credential: to_json(&passkey)?,
        };
        match self.store.use_passkey(&used, self.clock.now(), ctx).await? {
            PasskeyUseOutcome::Accepted(f) => Ok(SignIn::Valid {
                entity: f.entity,
                factor: f.id,
            }),
            PasskeyUseOutcome::CounterRegressed => Ok(SignIn::Invalid),
            PasskeyUseOutcome::NotFound => Ok(SignIn::Invalid),
        }
    }

    /// An entity's passkeys in a service.
    pub async fn list(&self, service: &Service, entity: &str) -> VerifyResult<Vec<PasskeyFactor>> {
        Ok(self.store.list_passkeys(&service.id, entity).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> ServerSecret {
        ServerSecret::from_text(text).expect("a long enough secret")
    }

    #[test]
    fn a_ceremony_id_is_a_keyed_digest_of_its_challenge() {
        let s = secret("a-server-secret-long-enough-for-the-test-0001");
        let challenge = [7u8; 32];
        let id = ceremony_id(&s, CeremonyKind::Registration, &challenge);
        assert!(id.starts_with("pkr_") && id.len() == 4 + 32, "{id}");
        assert_eq!(id, ceremony_id(&s, CeremonyKind::Registration, &challenge));
        assert!(ceremony_id(&s, CeremonyKind::Authentication, &challenge).starts_with("pka_"));
        assert_ne!(id, ceremony_id(&s, CeremonyKind::Registration, &[8u8; 32]));
        let other = secret("another-server-secret-long-enough-for-tests-02");
        assert_ne!(
            id,
            ceremony_id(&other, CeremonyKind::Registration, &challenge)
        );
    }

    #[test]
    fn client_data_names_its_ceremony_padded_or_not() {
        let s = Arc::new(secret("a-server-secret-long-enough-for-the-test-0001"));
        let challenge = [9u8; 32];
        let client_data = |c: String| {
            URL_SAFE_NO_PAD
                .encode(serde_json::json!({"type": "webauthn.get", "challenge": c}).to_string())
        };
        let want = ceremony_id(&s, CeremonyKind::Authentication, &challenge);
        let no_pad = b64(&challenge);
        for c in [no_pad.clone(), format!("{no_pad}=")] {
            assert_eq!(unb64(&c).as_deref(), Some(&challenge[..]));
            let text = client_data(c);
            let json: Value = serde_json::from_slice(&unb64(&text).unwrap()).unwrap();
            let got = unb64(json["challenge"].as_str().unwrap())
                .map(|c| ceremony_id(&s, CeremonyKind::Authentication, &c));
            assert_eq!(got.as_deref(), Some(want.as_str()));
        }
        assert!(unb64("%%%").is_none());
    }
}
