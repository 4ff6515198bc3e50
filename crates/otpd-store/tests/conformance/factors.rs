//! Authenticator factors and backup codes: activation, single use of a time step or
//! counter (also under concurrency), backup codes spent once and replaced as a set, and
//! one lockout shared by wrong SMS and authenticator codes of an entity.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::lockout::LockoutPolicy;
use otpd_core::store::*;
use otpd_core::totp::backup::{BackupCode, hash_scope};
use otpd_core::totp::{
    Algorithm, Factor, FactorKind, FactorParams, FactorSecret, FactorStatus, TotpCode,
    new_factor_id,
};
use otpd_core::verification::CheckDecision;

use crate::support::{Fixture, created, decision, locked};

const ENTITY: &str = "user-42";

impl Fixture {
    /// Stores a new unverified factor and returns it with its secret.
    async fn factor(&self, kind: FactorKind) -> (Factor, FactorSecret) {
        let params = FactorParams {
            kind,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            tolerance: 1,
        };
        let secret = FactorSecret::generate(params.algorithm);
        let id = new_factor_id();
        let factor = Factor {
            sealed_secret: self.secret.sealer().seal(&id, secret.bytes()),
            id,
            service_id: self.service.id.clone(),
            service_name: self.service.name.clone(),
            entity: ENTITY.into(),
            params,
            label: "alice".into(),
            issuer: "Acme".into(),
            status: FactorStatus::Unverified,
            last_used: None,
            created_at: Utc::now(),
            verified_at: None,
            last_used_at: None,
        };
        self.store
            .create_factor(&factor, &WriteContext::system())
            .await
            .unwrap();
        (factor, secret)
    }

    /// Checks `code` the way the server does: open the secret, verify with the window,
    /// and hash it as a backup code.
    async fn check_factor(
        &self,
        target: FactorTarget,
        code: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<FactorCheckOutcome> {
        let sealer = self.secret.sealer();
        let totp = TotpCode::parse(code);
        let matcher = |f: &Factor| {
            let secret = sealer.open(&f.id, &f.sealed_secret).ok()?;
            f.params.verify(
                &FactorSecret::from_bytes(&secret),
                totp.as_ref()?,
                f.last_used,
                now,
            )
        };
        let hasher = self.secret.hasher();
        let backup_code = BackupCode::parse(code);
        let backup = |service_id: &str, entity: &str| {
            backup_code
                .as_ref()
                .map(|c| hasher.hash_text(&hash_scope(service_id, entity), c.expose()))
        };
        self.store
            .check_factor(target, &matcher, &backup, now, &WriteContext::system())
            .await
    }

    async fn events_of_kind(&self, kind: EventType) -> Vec<otpd_core::event::Event> {
        self.store
            .list_events(&EventFilter {
                kind: Some(kind.as_str().into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

fn entity_target(f: &Fixture) -> FactorTarget {
    FactorTarget::Entity {
        service_id: f.service.id.clone(),
        entity: ENTITY.into(),
    }
}

fn approved(o: StoreResult<FactorCheckOutcome>) -> (Option<Box<Factor>>, FactorMethod, u32) {
    match o {
        Ok(FactorCheckOutcome::Approved {
            factor,
            method,
            backup_codes_remaining,
        }) => (factor, method, backup_codes_remaining),
        other => panic!("expected Approved, got {other:?}"),
    }
}

fn rejected(o: StoreResult<FactorCheckOutcome>) {
    assert!(
        matches!(o, Ok(FactorCheckOutcome::Rejected { .. })),
        "expected Rejected, got {o:?}"
    );
}

pub async fn factor_lifecycle_activate_check_replay_delete(f: Fixture) {
    let (factor, secret) = f.factor(FactorKind::Totp).await;
    let now = Utc::now();
    let step = factor.params.step_at(now).unwrap();
    let code = factor.params.code_at(&secret, step);
    let wrong = factor.params.code_at(&secret, step + 5);

    // Not active yet: a check by id is refused without counting, by entity finds nothing.
    assert!(matches!(
        f.check_factor(FactorTarget::Factor(factor.id.clone()), &code, now)
            .await,
        Ok(FactorCheckOutcome::NotActive(_))
    ));
    assert!(matches!(
        f.check_factor(entity_target(&f), &code, now).await,
        Ok(FactorCheckOutcome::NotFound)
    ));

    rejected(
        f.check_factor(FactorTarget::Activate(factor.id.clone()), &wrong, now)
            .await,
    );
    let (active, method, _) = approved(
        f.check_factor(FactorTarget::Activate(factor.id.clone()), &code, now)
            .await,
    );
    let active = active.unwrap();
    assert_eq!(method, FactorMethod::Code(FactorKind::Totp));
    assert_eq!(active.status, FactorStatus::Active);
    assert_eq!(active.last_used, Some(step));
    assert!(active.verified_at.is_some());
    assert!(matches!(
        f.check_factor(FactorTarget::Activate(factor.id.clone()), &code, now)
            .await,
        Ok(FactorCheckOutcome::AlreadyActive(_))
    ));

    // The activation code is spent: a check with it is a replay.
    rejected(
        f.check_factor(FactorTarget::Factor(factor.id.clone()), &code, now)
            .await,
    );
    // The next step's code works once, by entity.
    let next = factor.params.code_at(&secret, step + 1);
    let (matched, _, _) = approved(f.check_factor(entity_target(&f), &next, now).await);
    assert_eq!(matched.unwrap().id, factor.id);
    rejected(f.check_factor(entity_target(&f), &next, now).await);

    let listed = f.store.list_factors(&f.service.id, ENTITY).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used, Some(step + 1));
    assert!(
        f.store
            .delete_factor(&factor.id, now, &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .delete_factor(&factor.id, now, &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(f.store.get_factor(&factor.id).await.unwrap().is_none());

    for kind in [
        EventType::FactorCreated,
        EventType::FactorVerified,
        EventType::FactorApproved,
        EventType::FactorDeleted,
    ] {
        assert_eq!(f.events_of_kind(kind).await.len(), 1, "{kind:?}");
    }
    assert_eq!(
        f.events_of_kind(EventType::FactorCheckFailed).await.len(),
        3
    );
}

/// The store, not the matcher, enforces single use: a matcher that reports an already used
/// step (a stale read on another node) is refused by the conditional update.
pub async fn a_used_step_is_refused_by_the_conditional_update(f: Fixture) {
    let (factor, _) = f.factor(FactorKind::Totp).await;
    let always_step_7 = |_: &Factor| Some(7);
    let no_backup = |_: &str, _: &str| None;
    let now = Utc::now();
    let first = f
        .store
        .check_factor(
            FactorTarget::Activate(factor.id.clone()),
            &always_step_7,
            &no_backup,
            now,
            &WriteContext::system(),
        )
        .await;
    approved(first);
    let again = f
        .store
        .check_factor(
            FactorTarget::Factor(factor.id.clone()),
            &always_step_7,
            &no_backup,
            now,
            &WriteContext::system(),
        )
        .await;
    rejected(again);
}

/// Invariant 2 for factors: one code, many concurrent checks, one approval.
pub async fn concurrent_checks_of_one_code_approve_once(f: Fixture) {
    let f = Arc::new(f);
    f.set_lockout(LockoutPolicy {
        max_failures: 1_000,
        ..Default::default()
    })
    .await;
    let (factor, secret) = f.factor(FactorKind::Hotp).await;
    let now = Utc::now();
    approved(
        f.check_factor(
            FactorTarget::Activate(factor.id.clone()),
            &factor.params.code_at(&secret, 0),
            now,
        )
        .await,
    );
    let code = factor.params.code_at(&secret, 1);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (f, code, id) = (f.clone(), code.clone(), factor.id.clone());
            tokio::spawn(async move {
                matches!(
                    f.check_factor(FactorTarget::Factor(id), &code, now).await,
                    Ok(FactorCheckOutcome::Approved { .. })
                )
            })
        })
        .collect();
    let mut approvals = 0;
    for t in tasks {
        approvals += usize::from(t.await.unwrap());
    }
    assert_eq!(approvals, 1);
}

pub async fn backup_codes_are_single_use_and_replaced_as_a_set(f: Fixture) {
    let hasher = f.secret.hasher();
    let scope = hash_scope(&f.service.id, ENTITY);
    let codes: Vec<BackupCode> = (0..10).map(|_| BackupCode::generate()).collect();
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| hasher.hash_text(&scope, c.expose()))
        .collect();
    let now = Utc::now();
    f.store
        .replace_backup_codes(&f.service.id, ENTITY, &hashes, now, &WriteContext::system())
        .await
        .unwrap();
    assert_eq!(
        f.store
            .count_backup_codes(&f.service.id, ENTITY)
            .await
            .unwrap(),
        10
    );

    // No factor at all: backup codes alone make the entity checkable.
    let shown = codes[3].display();
    let (factor, method, remaining) =
        approved(f.check_factor(entity_target(&f), &shown, now).await);
    assert!(factor.is_none());
    assert_eq!((method, remaining), (FactorMethod::BackupCode, 9));
    rejected(f.check_factor(entity_target(&f), &shown, now).await);

    // A new set replaces the old one entirely.
    let fresh = BackupCode::generate();
    f.store
        .replace_backup_codes(
            &f.service.id,
            ENTITY,
            &[hasher.hash_text(&scope, fresh.expose())],
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    rejected(
        f.check_factor(entity_target(&f), &codes[4].display(), now)
            .await,
    );
    approved(
        f.check_factor(entity_target(&f), &fresh.display(), now)
            .await,
    );
    // Nothing left: the entity has nothing to check against.
    assert!(matches!(
        f.check_factor(entity_target(&f), &fresh.display(), now)
            .await,
        Ok(FactorCheckOutcome::NotFound)
    ));
    // Codes never appear in events.
    for e in f.events_of_kind(EventType::BackupCodesCreated).await {
        assert!(!e.data.to_string().contains(fresh.expose()));
    }
}

/// One lockout for both kinds of check: wrong SMS codes and wrong authenticator codes of the
/// same entity add up, and the lock then refuses both without changing anything.
pub async fn wrong_sms_and_totp_codes_share_the_entity_lockout(f: Fixture) {
    let (factor, secret) = f.factor(FactorKind::Totp).await;
    let now = Utc::now();
    let step = factor.params.step_at(now).unwrap();
    approved(
        f.check_factor(
            FactorTarget::Activate(factor.id.clone()),
            &factor.params.code_at(&secret, step),
            now,
        )
        .await,
    );

    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.entity = Some(ENTITY.into());
    let v = created(
        f.store
            .start(req, None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
    assert_eq!(v.entity.as_deref(), Some(ENTITY));
    for _ in 0..2 {
        let o = f
            .check_at(CheckTarget::Id(v.id.clone()), "000000", now)
            .await
            .unwrap();
        assert!(matches!(decision(&o), CheckDecision::Reject { .. }));
    }
    let wrong = factor.params.code_at(&secret, step + 7);
    for _ in 0..3 {
        rejected(f.check_factor(entity_target(&f), &wrong, now).await);
    }
    assert_eq!(f.events_of_kind(EventType::Blocked).await.len(), 1);

    // Locked: the right codes of both kinds are refused, and nothing is spent or counted.
    let right = factor.params.code_at(&secret, step + 1);
    assert_eq!(
        locked(f.check_factor(entity_target(&f), &right, now).await),
        900
    );
    assert!(
        locked(
            f.check_at(CheckTarget::Id(v.id.clone()), "123456", now)
                .await
        ) <= 900
    );
    let v_after = f.store.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(v_after.check_attempts, 2);
    let factor_after = f.store.get_factor(&factor.id).await.unwrap().unwrap();
    assert_eq!(factor_after.last_used, Some(step));

    // The lock ends after its duration.
    let later = now + Duration::seconds(901);
    let later_code = factor
        .params
        .code_at(&secret, factor.params.step_at(later).unwrap());
    let (_, method, _) = approved(f.check_factor(entity_target(&f), &later_code, later).await);
    assert_eq!(method, FactorMethod::Code(FactorKind::Totp));
}

/// What `/v2` (Twilio's Entities, Factors, Challenges) asks of the store: the entities with
/// factors, a rename and a parameter change only while unverified, and challenges listed by
/// factor and status (expired judged at the caller's `now`) and approved once.
pub async fn entities_factor_updates_and_challenges(f: Fixture) {
    use otpd_core::ids::Kind;
    use otpd_core::totp::challenge::{ChallengeStatus, FactorChallenge};

    let (a, secret) = f.factor(FactorKind::Totp).await;
    let (b, _) = f.factor(FactorKind::Totp).await;
    let entities = f
        .store
        .list_factor_entities(&f.service.id, 0, 10)
        .await
        .unwrap();
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0].0, ENTITY);
    assert!(
        f.store
            .list_factor_entities(&f.service.id, 1, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Unverified: the label and the parameters change.
    let eight = FactorParams {
        digits: 8,
        algorithm: Algorithm::Sha256,
        ..a.params
    };
    assert!(
        f.store
            .update_factor(&a.id, "work", Some(eight))
            .await
            .unwrap()
    );
    let changed = f.store.get_factor(&a.id).await.unwrap().unwrap();
    assert_eq!((changed.label.as_str(), changed.params), ("work", eight));
    // Active: the label only. (Stores keep milliseconds.)
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let step = eight.step_at(now).unwrap();
    approved(
        f.check_factor(
            FactorTarget::Activate(a.id.clone()),
            &eight.code_at(&secret, step),
            now,
        )
        .await,
    );
    assert!(
        !f.store
            .update_factor(&a.id, "x", Some(a.params))
            .await
            .unwrap()
    );
    assert!(f.store.update_factor(&a.id, "home", None).await.unwrap());
    let renamed = f.store.get_factor(&a.id).await.unwrap().unwrap();
    assert_eq!((renamed.label.as_str(), renamed.params), ("home", eight));
    assert!(!f.store.update_factor("tf_none", "x", None).await.unwrap());

    let challenge = |factor: &Factor, at: DateTime<Utc>| FactorChallenge {
        id: Kind::FactorChallenge.new_id(),
        service_id: f.service.id.clone(),
        entity: ENTITY.into(),
        factor_id: factor.id.clone(),
        status: ChallengeStatus::Pending,
        created_at: at,
        updated_at: at,
        responded_at: None,
        expires_at: at + Duration::minutes(5),
    };
    let c1 = challenge(&a, now);
    let c2 = challenge(&a, now + Duration::seconds(1));
    let c3 = challenge(&b, now + Duration::seconds(2));
    for c in [&c1, &c2, &c3] {
        f.store
            .create_factor_challenge(c, &WriteContext::system())
            .await
            .unwrap();
    }
    assert_eq!(
        f.store.get_factor_challenge(&c1.id).await.unwrap().as_ref(),
        Some(&c1)
    );
    assert!(
        f.store
            .approve_factor_challenge(&c2.id, now + Duration::seconds(3), &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .approve_factor_challenge(&c2.id, now + Duration::seconds(4), &WriteContext::system())
            .await
            .unwrap()
    );
    // Past its deadline a pending challenge is not approved.
    assert!(
        !f.store
            .approve_factor_challenge(&c3.id, c3.expires_at, &WriteContext::system())
            .await
            .unwrap()
    );
    let approved_c2 = f.store.get_factor_challenge(&c2.id).await.unwrap().unwrap();
    assert_eq!(approved_c2.status, ChallengeStatus::Approved);
    assert!(approved_c2.responded_at.is_some());

    let list = |factor_id: Option<&str>, status, at, newest_first| FactorChallengeFilter {
        service_id: f.service.id.clone(),
        entity: ENTITY.into(),
        factor_id: factor_id.map(str::to_string),
        status,
        now: at,
        newest_first,
        offset: 0,
        limit: 10,
    };
    let ids = |cs: Vec<FactorChallenge>| cs.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let all = f
        .store
        .list_factor_challenges(&list(None, None, now, false))
        .await
        .unwrap();
    assert_eq!(ids(all), [c1.id.clone(), c2.id.clone(), c3.id.clone()]);
    let newest = f
        .store
        .list_factor_challenges(&list(Some(&a.id), None, now, true))
        .await
        .unwrap();
    assert_eq!(ids(newest), [c2.id.clone(), c1.id.clone()]);
    let later = c1.expires_at + Duration::seconds(10);
    let expired = f
        .store
        .list_factor_challenges(&list(None, Some(ChallengeStatus::Expired), later, false))
        .await
        .unwrap();
    assert_eq!(ids(expired), [c1.id.clone(), c3.id.clone()]);
    let pending = f
        .store
        .list_factor_challenges(&list(None, Some(ChallengeStatus::Pending), now, false))
        .await
        .unwrap();
    assert_eq!(ids(pending), [c1.id.clone(), c3.id.clone()]);
    let approved_only = f
        .store
        .list_factor_challenges(&list(None, Some(ChallengeStatus::Approved), later, false))
        .await
        .unwrap();
    assert_eq!(ids(approved_only), std::slice::from_ref(&c2.id));

    // Deleting a factor deletes its challenges.
    assert!(
        f.store
            .delete_factor(&a.id, now, &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(
        f.store
            .get_factor_challenge(&c1.id)
            .await
            .unwrap()
            .is_none()
    );
    let left = f
        .store
        .list_factor_challenges(&list(None, None, now, false))
        .await
        .unwrap();
    assert_eq!(ids(left), std::slice::from_ref(&c3.id));
}

/// A factor webhook of the fixture's service (the sealed key is opaque to the store).
fn factor_webhook(
    sid: &str,
    types: &[&str],
    status: &str,
) -> otpd_core::factor_webhook::FactorWebhook {
    let now = Utc::now();
    otpd_core::factor_webhook::FactorWebhook {
        sid: sid.into(),
        friendly_name: sid.into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        url: "https://hooks.example.com/verify".into(),
        status: status.into(),
        version: "v2".into(),
        key_id: "key_test".into(),
        sealed_key: "c2VhbGVk".into(),
        created_at: now,
        updated_at: now,
    }
}

/// Leases every due webhook message; their endpoints, sorted.
async fn queued_endpoints(f: &Fixture) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    while let Some(job) = f
        .store
        .claim_webhook("t", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
    {
        f.store
            .finish_webhook(&job, WebhookResult::Delivered { status: 200 }, Utc::now())
            .await
            .unwrap();
        out.push((job.event.kind, job.endpoint));
    }
    out.sort();
    out
}

pub async fn factor_events_queue_a_message_per_subscribed_factor_webhook(f: Fixture) {
    use otpd_core::ids::Kind;
    use otpd_core::totp::challenge::{ChallengeStatus, FactorChallenge};

    let mut service = f.service.clone();
    service.settings.factor_webhooks = vec![
        factor_webhook("YW01", &["factor.created", "challenge.approved"], "enabled"),
        factor_webhook("YW02", &["*"], "enabled"),
        factor_webhook("YW03", &["*"], "disabled"),
    ];
    f.store.update_service(&service, None).await.unwrap();
    let some = |s: &str| Some(s.to_string());

    let (factor, secret) = f.factor(FactorKind::Totp).await;
    assert_eq!(
        queued_endpoints(&f).await,
        [
            ("factor.created".to_string(), some("YW01")),
            ("factor.created".to_string(), some("YW02")),
        ],
        "one message per enabled webhook subscribed to the event (or to '*'), none for the service's own webhook_url (unset)"
    );

    // Activation: only the '*' webhook (a check's factor.approved, not a challenge, goes
    // to none).
    let now = Utc::now();
    let code = factor
        .params
        .code_at(&secret, factor.params.step_at(now).unwrap());
    approved(
        f.check_factor(FactorTarget::Activate(factor.id.clone()), &code, now)
            .await,
    );
    assert_eq!(
        queued_endpoints(&f).await,
        [("factor.verified".to_string(), some("YW02"))]
    );

    // A /v2 challenge approved: its own event, with the challenge's id, to both.
    let challenge = FactorChallenge {
        id: Kind::FactorChallenge.new_id(),
        service_id: f.service.id.clone(),
        entity: ENTITY.into(),
        factor_id: factor.id.clone(),
        status: ChallengeStatus::Pending,
        created_at: now,
        updated_at: now,
        responded_at: None,
        expires_at: now + Duration::minutes(5),
    };
    f.store
        .create_factor_challenge(&challenge, &WriteContext::system())
        .await
        .unwrap();
    assert!(
        f.store
            .approve_factor_challenge(&challenge.id, now, &WriteContext::system())
            .await
            .unwrap()
    );
    let approvals = f.events_of_kind(EventType::FactorChallengeApproved).await;
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].data["challenge_id"], challenge.id.as_str());
    assert_eq!(approvals[0].data["factor_id"], factor.id.as_str());
    assert_eq!(approvals[0].data["entity"], ENTITY);
    assert_eq!(
        queued_endpoints(&f).await,
        [
            ("factor.challenge_approved".to_string(), some("YW01")),
            ("factor.challenge_approved".to_string(), some("YW02")),
        ]
    );

    // A challenge stored approved (its code given with it) is an approval too.
    let at_once = FactorChallenge {
        id: Kind::FactorChallenge.new_id(),
        status: ChallengeStatus::Approved,
        responded_at: Some(now),
        ..challenge
    };
    f.store
        .create_factor_challenge(&at_once, &WriteContext::system())
        .await
        .unwrap();
    let approvals = f.events_of_kind(EventType::FactorChallengeApproved).await;
    assert_eq!(approvals.len(), 2);
    assert!(
        approvals
            .iter()
            .any(|e| e.data["challenge_id"] == at_once.id.as_str())
    );
    assert_eq!(queued_endpoints(&f).await.len(), 2);

    assert!(
        f.store
            .delete_factor(&factor.id, Utc::now(), &WriteContext::system())
            .await
            .unwrap()
    );
    assert_eq!(
        queued_endpoints(&f).await,
        [("factor.deleted".to_string(), some("YW02"))]
    );
}
