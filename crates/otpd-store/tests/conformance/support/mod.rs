//! What every conformance test shares: the [`Backend`] a factory hands over, the
//! [`Fixture`] a test receives (a store with one service and a server secret), the runner
//! that tears a backend down after a test whether it passed or not, the skip rule for
//! backends needing a server, and small helpers for building requests and reading
//! outcomes.

pub mod postgres;
pub mod redis;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::event::Event;
use otpd_core::ids::Kind;
use otpd_core::lockout::LockoutPolicy;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::*;
use otpd_core::verification::{CheckDecision, DeliveryStatus, Verification};

/// The environment variable that turns "skipped: server unreachable" into a failure
/// (`.ci/run` sets it).
pub const REQUIRE_STORES: &str = "OTPD_REQUIRE_STORES";

/// A teardown step run after the test (e.g. dropping the test's database).
type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A fresh, migrated, empty store of one backend, made by a factory for one test.
pub struct Backend {
    store: Arc<dyn Store>,
    keep: Vec<Box<dyn Any + Send + Sync>>,
    teardown: Vec<Teardown>,
}

impl Backend {
    /// Wraps a ready store.
    pub fn new(store: impl Store + 'static) -> Self {
        Backend {
            store: Arc::new(store),
            keep: Vec::new(),
            teardown: Vec::new(),
        }
    }

    /// Keeps `value` alive as long as the store (a temporary directory, a client).
    pub fn keep(mut self, value: impl Any + Send + Sync) -> Self {
        self.keep.push(Box::new(value));
        self
    }

    /// Runs `step` after the test, passed or failed (drop a database, delete keys).
    pub fn teardown(mut self, step: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown.push(Box::pin(step));
        self
    }
}

/// What a backend factory answers when its server cannot be reached: `None` (the test is
/// skipped with a message saying why) or, with `OTPD_REQUIRE_STORES=1`, a panic. `why`
/// must not contain a password (pass the error, not the URL).
pub fn unavailable(backend: &str, why: impl std::fmt::Display) -> Option<Backend> {
    if std::env::var(REQUIRE_STORES).is_ok_and(|v| v == "1") {
        panic!("{backend} is required ({REQUIRE_STORES}=1) but unavailable: {why}");
    }
    eprintln!(
        "skipped: {backend} unavailable ({why}); set {REQUIRE_STORES}=1 to make this a failure"
    );
    None
}

/// Runs one conformance test against a backend: builds it (or skips), hands the test a
/// [`Fixture`], and runs the backend's teardown whether the test passed or panicked.
pub async fn run<B, T, F>(backend: B, test: T)
where
    B: Future<Output = Option<Backend>>,
    T: FnOnce(Fixture) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let Some(Backend {
        store,
        keep,
        teardown,
    }) = backend.await
    else {
        return;
    };
    // The test runs in its own task so that a panic in it still lets the teardown run.
    let result = match Fixture::new(store, keep).await {
        Ok(fixture) => tokio::spawn(test(fixture)).await.map_err(|e| {
            e.try_into_panic()
                .unwrap_or_else(|e| Box::new(format!("test task failed: {e}")))
        }),
        Err(e) => Err(Box::new(format!("fixture setup failed: {e}")) as Box<dyn Any + Send>),
    };
    for step in teardown {
        step.await;
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A store with one service (`default`, default settings) and the server secret the
/// requests are hashed and sealed with.
pub struct Fixture {
    /// The store under test, seen only through the traits.
    pub store: Arc<dyn Store>,
    /// Hashes and seals codes the way the server does.
    pub secret: ServerSecret,
    /// The service every request is for.
    pub service: Service,
    _keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl Fixture {
    async fn new(
        store: Arc<dyn Store>,
        keep: Vec<Box<dyn Any + Send + Sync>>,
    ) -> StoreResult<Self> {
        let now = Utc::now();
        let id = Kind::Service.new_id();
        let service = Service {
            sid: Kind::Service.sid_of(&id),
            id,
            name: "default".into(),
            settings: ServiceSettings::default(),
            webhook_secret: None,
            created_at: now,
            updated_at: now,
        };
        store.create_service(&service, None).await?;
        Ok(Fixture {
            store,
            secret: ServerSecret::from_text("store conformance secret, long enough")
                .expect("a valid secret"),
            service,
            _keep: keep,
        })
    }

    /// A send of `code` by SMS to `to`: provider chain `["sink"]`, 600 s lifetime,
    /// 5 attempts, 5 sends per 600 s, no idempotency key.
    pub fn request(&self, to: &str, code: &OtpCode) -> StartRequest {
        let new_id = Kind::Verification.new_id();
        StartRequest {
            service_id: self.service.id.clone(),
            to: to.into(),
            channel: Channel::Sms,
            fallback: vec![],
            providers: vec!["sink".into()],
            deliver: true,
            code_hash: self.secret.hasher().hash(&new_id, code),
            sealed_code: self.secret.sealer().seal_str(&new_id, code.expose()),
            new_id,
            ttl: Duration::seconds(600),
            max_check_attempts: 5,
            locale: "en".into(),
            metadata: None,
            entity: None,
            region: Some("US".into()),
            test: false,
            key_id: "key_test".into(),
            send_limit: otpd_core::start::SendLimit {
                count: 5,
                window: Duration::seconds(600),
            },
            idempotency: None,
            message_options: Default::default(),
        }
    }

    /// Starts a send of `code` to `to` now; it must create a new verification.
    pub async fn create(&self, to: &str, code: &str) -> Verification {
        let code = OtpCode::parse(code).expect("a valid code");
        created(
            self.store
                .start(
                    self.request(to, &code),
                    None,
                    Utc::now(),
                    &WriteContext::system(),
                )
                .await
                .expect("start"),
        )
    }

    /// A check of `code` now (the store must not fail).
    pub async fn check(&self, target: CheckTarget, code: &str) -> CheckOutcome {
        self.check_at(target, code, Utc::now())
            .await
            .expect("check")
    }

    /// A check at a given time, with the store's error (e.g. `Locked`). The matcher is
    /// the server's: a constant-time HMAC comparison.
    pub async fn check_at(
        &self,
        target: CheckTarget,
        code: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        let code = OtpCode::parse(code).expect("a valid code");
        let hasher = self.secret.hasher();
        let matcher = move |v: &Verification| hasher.matches(&v.id, &code, &v.code_hash);
        // As the server does: the policy of the service as it is now.
        let lockout = self.lockout().await;
        self.store
            .check(target, &lockout, &matcher, now, &WriteContext::system())
            .await
    }

    /// The fixture service's lockout policy as stored now.
    pub async fn lockout(&self) -> LockoutPolicy {
        self.store
            .find_service(&self.service.id)
            .await
            .expect("find the service")
            .map(|s| s.settings.lockout)
            .unwrap_or_default()
    }

    /// The check target naming the latest live verification of `to` in the service.
    pub fn to(&self, to: &str) -> CheckTarget {
        CheckTarget::To {
            service_id: self.service.id.clone(),
            to: to.into(),
            test: false,
        }
    }

    /// The check target naming the latest test-key verification of `to` in the service.
    pub fn test_to(&self, to: &str) -> CheckTarget {
        CheckTarget::To {
            service_id: self.service.id.clone(),
            to: to.into(),
            test: true,
        }
    }

    /// A start request of a test key (recorded, never delivered).
    pub fn test_request(&self, to: &str, code: &OtpCode) -> StartRequest {
        let mut req = self.request(to, code);
        req.test = true;
        req.providers = vec!["test".into()];
        req
    }

    /// Replaces the service's lockout policy.
    pub async fn set_lockout(&self, policy: LockoutPolicy) {
        let mut service = self.service.clone();
        service.settings.lockout = policy;
        self.store
            .update_service(&service, None)
            .await
            .expect("update service");
    }

    /// The events of a verification, oldest first.
    pub async fn events_of(&self, verification_id: &str) -> Vec<Event> {
        self.store
            .list_events(&EventFilter {
                verification_id: Some(verification_id.into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list events")
    }

    /// The event types of a verification, oldest first.
    pub async fn event_kinds(&self, verification_id: &str) -> Vec<String> {
        self.events_of(verification_id)
            .await
            .iter()
            .map(|e| e.kind.as_str().to_string())
            .collect()
    }

    /// Claims the next job for `owner` with a 30 s lease; there must be one.
    pub async fn claim(&self, owner: &str, now: DateTime<Utc>) -> DeliveryJob {
        self.store
            .claim(owner, now, Duration::seconds(30))
            .await
            .expect("claim")
            .expect("a due job")
    }
}

/// Claims the next job and records it as handed to its provider (`sent`), waiting 300 s
/// for a receipt.
pub async fn hand_over(f: &Fixture, now: DateTime<Utc>) -> DeliveryJob {
    let job = f.claim("w", now).await;
    f.store
        .finish(
            &job,
            AttemptResult::Sent {
                status: DeliveryStatus::Sent,
                provider_message_id: None,
                receipt_deadline: Some(now + Duration::seconds(300)),
            },
            now,
            &WriteContext::system(),
        )
        .await
        .expect("finish");
    job
}

/// The verification of a `Created` outcome.
pub fn created(o: StartOutcome) -> Verification {
    match o {
        StartOutcome::Created(v) => v,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// The decision of a check that found its verification.
pub fn decision(o: &CheckOutcome) -> CheckDecision {
    match o {
        CheckOutcome::Decided { decision, .. } => *decision,
        CheckOutcome::NotFound => panic!("not found"),
    }
}

/// The wait of a `Locked` refusal.
pub fn locked<T: std::fmt::Debug>(o: StoreResult<T>) -> u64 {
    match o {
        Err(StoreError::Locked { retry_after_secs }) => retry_after_secs,
        other => panic!("expected Locked, got {other:?}"),
    }
}

/// A random suffix for names that must not collide between tests sharing a server.
pub fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}
