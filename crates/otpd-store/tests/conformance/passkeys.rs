//! Passkeys (WebAuthn): a ceremony is taken once and only before its deadline (also under
//! concurrency), a credential is registered once per service, a signature counter never
//! goes back, and failed sign-ins share the entity's lockout with sent codes.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::lockout::LockoutPolicy;
use otpd_core::passkey::{CeremonyKind, PasskeyCeremony, PasskeyFactor, new_passkey_id};
use otpd_core::store::*;
use otpd_core::verification::CheckDecision;

use crate::support::{Fixture, created, decision, locked, unique};

const ENTITY: &str = "user-42";

impl Fixture {
    /// Stores a ceremony started at `now`.
    async fn ceremony(&self, kind: CeremonyKind, now: DateTime<Utc>) -> PasskeyCeremony {
        let c = PasskeyCeremony {
            id: kind.new_id(),
            kind,
            service_id: self.service.id.clone(),
            entity: Some(ENTITY.into()),
            user_name: Some("alice@example.com".into()),
            state: r#"{"rs":"opaque"}"#.into(),
            created_at: now,
            expires_at: PasskeyCeremony::expiry(now),
        };
        self.store.create_passkey_ceremony(&c).await.unwrap();
        c
    }

    /// A passkey of the entity (not stored) with this credential id and counter.
    fn passkey(&self, credential_id: &str, sign_count: u32) -> PasskeyFactor {
        PasskeyFactor {
            id: new_passkey_id(),
            service_id: self.service.id.clone(),
            service_name: self.service.name.clone(),
            entity: ENTITY.into(),
            credential_id: credential_id.into(),
            user_handle: "aGFuZGxl".into(),
            user_name: "alice@example.com".into(),
            credential: r#"{"cred":{"counter":0}}"#.into(),
            sign_count,
            created_at: Utc::now().trunc_subsecs(3),
            last_used_at: None,
        }
    }

    /// Stores a passkey of the entity.
    async fn registered(&self, sign_count: u32) -> PasskeyFactor {
        let p = self.passkey(&unique(), sign_count);
        assert!(
            self.store
                .register_passkey(&p, &WriteContext::system())
                .await
                .unwrap()
        );
        p
    }

    /// The events of a kind, oldest first.
    async fn passkey_events(&self, kind: EventType) -> Vec<otpd_core::event::Event> {
        self.store
            .list_events(&EventFilter {
                kind: Some(kind.as_str().into()),
                service_id: Some(self.service.id.clone()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// A sign-in of `p` presenting `counter`.
    async fn sign_in(
        &self,
        p: &PasskeyFactor,
        counter: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<PasskeyUseOutcome> {
        self.store
            .use_passkey(
                &PasskeyUse {
                    factor_id: p.id.clone(),
                    sign_count: counter,
                    credential: format!(r#"{{"cred":{{"counter":{counter}}}}}"#),
                },
                now,
                &WriteContext::system(),
            )
            .await
    }
}

/// A ceremony is read back as stored, taken once, and never after its five minutes.
pub async fn a_passkey_ceremony_is_taken_once_before_its_deadline(f: Fixture) {
    // Stores keep milliseconds.
    let now = Utc::now().trunc_subsecs(3);
    let c = f.ceremony(CeremonyKind::Registration, now).await;
    assert_eq!(
        f.store.get_passkey_ceremony(&c.id).await.unwrap().as_ref(),
        Some(&c)
    );
    assert_eq!(
        f.store.take_passkey_ceremony(&c.id, now).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        f.store.take_passkey_ceremony(&c.id, now).await.unwrap(),
        None
    );
    // Still readable (so a second finish is told it was used, not that it never existed).
    assert!(f.store.get_passkey_ceremony(&c.id).await.unwrap().is_some());

    let late = f.ceremony(CeremonyKind::Authentication, now).await;
    assert_eq!(late.kind, CeremonyKind::Authentication);
    let deadline = now + Duration::minutes(5);
    assert_eq!(
        f.store
            .take_passkey_ceremony(&late.id, deadline)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        f.store
            .take_passkey_ceremony("pka_unknown", now)
            .await
            .unwrap(),
        None
    );

    // Of many concurrent finishes, exactly one gets the ceremony.
    let raced = f.ceremony(CeremonyKind::Authentication, now).await;
    let takes = (0..8).map(|_| {
        let store = f.store.clone();
        let id = raced.id.clone();
        tokio::spawn(async move { store.take_passkey_ceremony(&id, now).await.unwrap() })
    });
    let mut winners = 0;
    for t in takes {
        winners += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
}

/// A credential is registered once per service, found by id and by credential id, listed
/// per entity, and deleted with its events.
pub async fn passkeys_are_registered_once_listed_and_deleted(f: Fixture) {
    let a = f.registered(0).await;
    let dup = f.passkey(&a.credential_id, 0);
    assert!(
        !f.store
            .register_passkey(&dup, &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(f.store.get_passkey(&dup.id).await.unwrap().is_none());
    let b = f.registered(3).await;

    assert_eq!(f.store.get_passkey(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(
        f.store
            .find_passkey_by_credential(&f.service.id, &b.credential_id)
            .await
            .unwrap()
            .map(|p| p.id),
        Some(b.id.clone())
    );
    assert!(
        f.store
            .find_passkey_by_credential(&f.service.id, "nope")
            .await
            .unwrap()
            .is_none()
    );
    let listed: Vec<_> = f
        .store
        .list_passkeys(&f.service.id, ENTITY)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, [a.id.clone(), b.id.clone()]);
    assert!(
        f.store
            .list_passkeys(&f.service.id, "someone-else")
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        f.store
            .delete_passkey(&a.id, Utc::now(), &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .delete_passkey(&a.id, Utc::now(), &WriteContext::system())
            .await
            .unwrap()
    );
    assert_eq!(
        f.store
            .list_passkeys(&f.service.id, ENTITY)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        f.passkey_events(EventType::PasskeyRegistered).await.len(),
        2
    );
    let deleted = f.passkey_events(EventType::PasskeyDeleted).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].data["factor_id"], a.id.as_str());
    assert_eq!(deleted[0].data["entity"], ENTITY);
}

/// A sign-in is accepted only with a counter above the stored one (or both zero); a
/// counter that stays or goes back is refused, recorded, and nothing else changes.
pub async fn a_passkey_counter_never_goes_back(f: Fixture) {
    let now = Utc::now();
    let p = f.registered(1).await;
    let PasskeyUseOutcome::Accepted(after) = f.sign_in(&p, 2, now).await.unwrap() else {
        panic!("a higher counter is accepted");
    };
    assert_eq!(after.sign_count, 2);
    assert_eq!(after.credential, r#"{"cred":{"counter":2}}"#);
    assert!(after.last_used_at.is_some());
    for stale in [2, 1, 0] {
        assert_eq!(
            f.sign_in(&p, stale, now).await.unwrap(),
            PasskeyUseOutcome::CounterRegressed,
            "counter {stale}"
        );
    }
    let kept = f.store.get_passkey(&p.id).await.unwrap().unwrap();
    assert_eq!((kept.sign_count, kept.credential), (2, after.credential));
    assert_eq!(
        f.passkey_events(EventType::PasskeyAuthenticated)
            .await
            .len(),
        1
    );
    let failed = f.passkey_events(EventType::PasskeyFailed).await;
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[0].data["factor_id"], p.id.as_str());

    // An authenticator that keeps no counter (synced passkeys) signs in at zero each time.
    let synced = f.registered(0).await;
    for _ in 0..2 {
        assert!(matches!(
            f.sign_in(&synced, 0, now).await.unwrap(),
            PasskeyUseOutcome::Accepted(_)
        ));
    }
    let gone = f.passkey(&unique(), 0);
    assert_eq!(
        f.sign_in(&gone, 1, now).await.unwrap(),
        PasskeyUseOutcome::NotFound
    );
}

/// Wrong sent codes and failed passkey sign-ins of one entity count toward one lockout:
/// once locked, a right sign-in and a right code are refused until the lock ends.
pub async fn passkey_failures_share_the_entity_lockout(f: Fixture) {
    f.set_lockout(LockoutPolicy {
        max_failures: 3,
        window_seconds: 900,
        duration_seconds: 900,
    })
    .await;
    let now = Utc::now();
    let p = f.registered(1).await;

    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.entity = Some(ENTITY.into());
    let v = created(
        f.store
            .start(req, None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
    let o = f
        .check_at(CheckTarget::Id(v.id.clone()), "000000", now)
        .await
        .unwrap();
    assert!(matches!(decision(&o), CheckDecision::Reject { .. }));

    let failure = PasskeyFailure {
        service_id: f.service.id.clone(),
        entity: Some(ENTITY.into()),
        factor_id: Some(p.id.clone()),
        reason: "bad signature".into(),
    };
    f.store
        .passkey_failed(&failure, now, &WriteContext::system())
        .await
        .unwrap();
    assert!(
        f.store
            .entity_locked_until(&f.service.id, ENTITY, now)
            .await
            .unwrap()
            .is_none()
    );
    // The third failure (a counter gone back) locks the entity.
    assert_eq!(
        f.sign_in(&p, 1, now).await.unwrap(),
        PasskeyUseOutcome::CounterRegressed
    );
    assert!(
        f.store
            .entity_locked_until(&f.service.id, ENTITY, now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(f.passkey_events(EventType::Blocked).await.len(), 1);

    // Locked: a right sign-in and a right code are refused, and nothing changes.
    assert!(locked(f.sign_in(&p, 5, now).await) <= 900);
    assert_eq!(
        f.store
            .get_passkey(&p.id)
            .await
            .unwrap()
            .unwrap()
            .sign_count,
        1
    );
    assert!(
        locked(
            f.check_at(CheckTarget::Id(v.id.clone()), "123456", now)
                .await
        ) <= 900
    );
    // A failure without a known entity (an unknown credential) is recorded, locks nobody.
    let anonymous = PasskeyFailure {
        entity: None,
        factor_id: None,
        ..failure
    };
    f.store
        .passkey_failed(&anonymous, now, &WriteContext::system())
        .await
        .unwrap();

    // After the lock, a right sign-in is accepted and clears the failures.
    let later = now + Duration::seconds(901);
    assert!(matches!(
        f.sign_in(&p, 5, later).await.unwrap(),
        PasskeyUseOutcome::Accepted(_)
    ));
    assert!(
        f.store
            .entity_locked_until(&f.service.id, ENTITY, later)
            .await
            .unwrap()
            .is_none()
    );
}
