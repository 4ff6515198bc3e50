//! The outbox worker: claims delivery jobs, renders and hands them to providers, and
//! records each outcome. Several workers (in this process and in others) share the queue;
//! a job's lease keeps it with one worker, and a lapsed lease frees it for another.
//!
//! Each provider call goes through the provider's circuit breaker (an open circuit skips
//! the provider), and a message accepted without a receipt gets a receipt deadline: the
//! receipt sweep hands the same code to the next provider or channel once it passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd_core::audit::WriteContext;
use otpd_core::clock::{Clock, SystemClock};
use otpd_core::event::EventType;
use otpd_core::guards::budget::PriceTable;
use otpd_core::ids::Kind;
use otpd_core::recipient::PhoneNumber;
use otpd_core::secret::ServerSecret;
use otpd_core::store::{AttemptResult, DeliveryJob, NextDelivery, Store};
use otpd_core::verification::{DeliveryStatus, Status};
use otpd_telemetry::{SendOutcome, Telemetry};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backoff;
use crate::breaker::{CircuitState, Refused, Transition};
use crate::config::DeliveryConfig;
use crate::health::HealthCheck;
use crate::provider::{Accepted, OutboundMessage, ProviderError, ReceiptSink};
use crate::receipts::StoreReceipts;
use crate::render;
use crate::router::Router;

/// Most verifications expired per sweep.
const EXPIRY_BATCH: u32 = 500;
/// How often pending verifications past their expiry are ended.
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);
/// How often overdue delivery receipts are looked for (bounds how late a failover is).
const RECEIPT_SWEEP: Duration = Duration::from_millis(250);
/// Most overdue receipts handled per sweep.
const RECEIPT_BATCH: u32 = 100;
/// Pause after a store error before trying again.
const STORE_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// The end of the error of a delivery that passed a provider by for its open circuit.
const CIRCUIT_OPEN: &str = otpd_core::event::SKIPPED_FOR_OPEN_CIRCUIT;

/// Everything the worker needs.
pub struct Worker {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    secret: Arc<ServerSecret>,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    node: String,
    telemetry: Arc<Telemetry>,
    clock: Arc<dyn Clock>,
    prices: PriceTable,
}

impl Worker {
    /// A worker over `store`; `wake` is notified by the API when a job is queued.
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        secret: Arc<ServerSecret>,
        config: DeliveryConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Worker {
            store,
            router,
            secret,
            config,
            wake,
            node: Kind::Delivery.new_id().replace("dlv_", "node_"),
            telemetry: Arc::default(),
            clock: Arc::new(SystemClock),
            prices: PriceTable::default(),
        }
    }

    /// The same worker, counting what each message handed to a provider costs by `prices`
    /// (`otpd_spend_total`).
    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// The same worker, counting into `telemetry` (the application's registry).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Decides by `clock` instead of the system clock (tests move it by hand).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs the delivery loops and the expiry sweeper until `stop` is cancelled; each loop
    /// finishes the job it holds before returning.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let receipts: Arc<dyn ReceiptSink> =
            Arc::new(StoreReceipts::new(this.store.clone(), this.clock.clone()));
        for name in this.router.names() {
            if let Some(provider) = this.router.provider(name) {
                provider.start(receipts.clone(), stop.clone());
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..this.config.workers {
            let w = this.clone();
            let stop = stop.clone();
            tasks.spawn(async move { w.delivery_loop(n, stop).await });
        }
        let w = this.clone();
        let sweeper_stop = stop.clone();
        tasks.spawn(async move { w.expiry_loop(sweeper_stop).await });
        let w = this.clone();
        let receipt_stop = stop.clone();
        tasks.spawn(async move { w.receipt_loop(receipt_stop).await });
        for check in this.router.health_checks() {
            let w = this.clone();
            let check = check.clone();
            let stop = stop.clone();
            tasks.spawn(async move { w.health_loop(&check, stop).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn delivery_loop(&self, n: usize, stop: CancellationToken) {
        let owner = format!("{}/{n}", self.node);
        let lease = chrono::Duration::seconds(self.config.lease_seconds as i64);
        while !stop.is_cancelled() {
            match self.store.claim(&owner, self.clock.now(), lease).await {
                Ok(Some(job)) => {
                    let span = info_span!("delivery", delivery_id = %job.id, verification_id = %job.verification_id, channel = %job.channel);
                    let result = self.attempt(&job).instrument(span).await;
                    if let Err(e) = self
                        .store
                        .finish(&job, result, self.clock.now(), &WriteContext::system())
                        .await
                    {
                        warn!(error = %e, delivery_id = %job.id, "could not record a delivery outcome; the lease will expire and the job be retried");
                    }
                }
                Ok(None) => self.idle(&stop).await,
                Err(e) => {
                    warn!(error = %e, "outbox unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(STORE_ERROR_PAUSE) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Sleeps until the next job is due, a new job is announced, or the poll interval.
    async fn idle(&self, stop: &CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let wait = match self.store.next_due().await {
            Ok(Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            _ => poll,
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.wake.notified() => {}
            _ = stop.cancelled() => {}
        }
    }

    async fn expiry_loop(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self
                .store
                .expire_due(self.clock.now(), EXPIRY_BATCH, &WriteContext::system())
                .await
            {
                Ok(n) if n > 0 => debug!(expired = n, "expired verifications"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "expiry sweep failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    async fn receipt_loop(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            self.sweep_receipts().await;
            tokio::select! {
                _ = tokio::time::sleep(RECEIPT_SWEEP) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Polls one provider's health check until `stop`, reporting each verdict to its
    /// circuit breaker.
    async fn health_loop(&self, check: &HealthCheck, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let healthy = tokio::select! {
                ok = check.probe() => ok,
                _ = stop.cancelled() => return,
            };
            if !healthy {
                info!(provider = %check.provider, "provider health check failed");
            }
            let now = Instant::now();
            if let Some(t) = self
                .router
                .breakers()
                .on_health(&check.provider, healthy, now)
            {
                self.circuit_changed(&check.provider, t).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(check.interval) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Ends the wait of every delivery whose receipt is overdue (or came back `failed`):
    /// the next provider or channel gets the same code, and the provider's breaker counts
    /// a failure.
    async fn sweep_receipts(&self) {
        let now = self.clock.now();
        let jobs = match self.store.overdue_receipts(now, RECEIPT_BATCH).await {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(error = %e, "receipt sweep failed");
                return;
            }
        };
        for job in jobs {
            let provider = job.current_provider().unwrap_or_default().to_string();
            let error = format!("{provider}: no delivery receipt in time");
            let next = self.next_hop(&job);
            let has_next = next.is_some();
            match self
                .store
                .receipt_timeout(&job, next, &error, now, &WriteContext::system())
                .await
            {
                Ok(true) => {
                    info!(delivery_id = %job.id, verification_id = %job.verification_id, provider = %provider, failover = has_next, "no delivery receipt in time");
                    self.telemetry.receipt_timeout(job.channel, &provider);
                    if let Some(t) = self.router.breakers().on_failure(&provider, Instant::now()) {
                        self.circuit_changed(&provider, t).await;
                    }
                    if has_next {
                        self.wake.notify_one();
                    }
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, delivery_id = %job.id, "could not end a receipt wait"),
            }
        }
    }

    /// Where the same code goes after `job`'s hop: the next provider of its chain, else the
    /// next fallback channel that has a provider.
    fn next_hop(&self, job: &DeliveryJob) -> Option<NextDelivery> {
        let next = job.provider_index as usize + 1;
        if next < job.providers.len() {
            return Some(NextDelivery {
                channel: job.channel,
                fallback: job.fallback.clone(),
                providers: job.providers[next..].to_vec(),
            });
        }
        self.next_channel(job)
    }

    /// How long to wait for a receipt of `job`'s message: its route's
    /// `receipt_timeout_seconds`, else the channel's default.
    fn receipt_timeout(&self, job: &DeliveryJob) -> Duration {
        let region = region_of(&job.to);
        self.router
            .route(job.channel, region.as_deref())
            .and_then(|r| r.receipt_timeout_seconds)
            .map(Duration::from_secs)
            .unwrap_or_else(|| self.config.receipt_timeouts.for_channel(job.channel))
    }

    /// Logs a circuit's change of state and records it as an event.
    async fn circuit_changed(&self, provider: &str, t: Transition) {
        let kind = match t.to {
            CircuitState::Open => EventType::CircuitOpened,
            CircuitState::HalfOpen => EventType::CircuitHalfOpen,
            CircuitState::Closed => EventType::CircuitClosed,
        };
        warn!(
            provider,
            from = t.from.as_str(),
            to = t.to.as_str(),
            "provider circuit changed state"
        );
        self.telemetry.circuit_transition(provider, t.to.as_str());
        let data =
            serde_json::json!({"provider": provider, "from": t.from.as_str(), "to": t.to.as_str()});
        if let Err(e) = self
            .store
            .append_event(kind, data, self.clock.now(), &WriteContext::system())
            .await
        {
            warn!(error = %e, "could not record a circuit event");
        }
    }

    /// Makes one delivery attempt, counts its outcome, and says what to record.
    async fn attempt(&self, job: &DeliveryJob) -> AttemptResult {
        let started = Instant::now();
        let result = self.try_deliver(job).await;
        let outcome = match &result {
            AttemptResult::Sent { status, .. } if *status == DeliveryStatus::Delivered => {
                Some(SendOutcome::Delivered)
            }
            AttemptResult::Sent { .. } => Some(SendOutcome::Accepted),
            AttemptResult::Recorded { .. } => Some(SendOutcome::Recorded),
            AttemptResult::Retry { .. } => Some(SendOutcome::Retry),
            AttemptResult::NextProvider { error } | AttemptResult::Fail { error, .. }
                if error.ends_with(CIRCUIT_OPEN) =>
            {
                Some(SendOutcome::Skipped)
            }
            AttemptResult::NextProvider { .. } | AttemptResult::Fail { .. } => {
                Some(SendOutcome::Failed)
            }
            AttemptResult::Skip => None,
        };
        // Failures before any provider was chosen (no provider left) name none.
        if let Some(outcome) = outcome {
            let provider = if job.test {
                "test"
            } else {
                job.current_provider().unwrap_or("none")
            };
            self.telemetry.provider_send(
                job.channel,
                provider,
                region_of(&job.to).as_deref(),
                outcome,
                started.elapsed(),
            );
        }
        result
    }

    /// Makes one delivery attempt and says what to record.
    async fn try_deliver(&self, job: &DeliveryJob) -> AttemptResult {
        let now = self.clock.now();
        if job.verification_status != Status::Pending || now >= job.expires_at {
            return AttemptResult::Skip;
        }
        let Some(sealed) = &job.sealed_code else {
            return AttemptResult::Skip;
        };
        let code = match self.secret.sealer().open_str(&job.verification_id, sealed) {
            Ok(code) => code,
            Err(_) => {
                return AttemptResult::Fail {
                    error: "the sealed code cannot be opened (was the server secret changed?)"
                        .into(),
                    next: None,
                };
            }
        };
        let service = match self.store.find_service(&job.service_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return AttemptResult::Skip,
            Err(e) => {
                return AttemptResult::Retry {
                    at: now + chrono::Duration::seconds(1),
                    error: format!("service unavailable: {e}"),
                };
            }
        };
        let rendered = render::message(
            &service,
            &job.message_options,
            job.channel,
            &job.locale,
            &code,
            job.expires_at,
            now,
        );

        if job.test {
            let message_id = Kind::Message.new_id();
            let sealed_body = self.secret.sealer().seal_str(&message_id, &rendered.body);
            return AttemptResult::Recorded {
                message_id,
                sealed_body,
            };
        }

        let Some(name) = job.current_provider() else {
            return self.give_up(job, "no provider left in the chain".into());
        };
        let Some(provider) = self.router.provider(name) else {
            return self.next_or_fail(job, format!("provider '{name}' is no longer configured"));
        };
        // A call's text, sealed for providers that fetch it when the call is answered.
        let call_script = (job.channel == otpd_core::channel::Channel::Voice).then(|| {
            crate::call_script::seal(
                self.secret.sealer(),
                &job.id,
                &rendered.body,
                job.expires_at,
            )
        });
        let message = OutboundMessage {
            message_id: job.id.clone(),
            verification_id: job.verification_id.clone(),
            to: job.to.clone(),
            channel: job.channel,
            subject: rendered.subject,
            body: rendered.body,
            html: rendered.html,
            code: zeroize::Zeroizing::new(code.to_string()),
            locale: job.locale.clone(),
            receipt_wait: self.receipt_timeout(job),
            call_script,
            messaging_service_sid: job.message_options.messaging_service_sid.clone(),
        };
        match self.router.breakers().try_acquire(name, Instant::now()) {
            Err(Refused) => {
                info!(provider = name, "circuit open: provider skipped");
                return self.next_or_fail(job, format!("{name}: {CIRCUIT_OPEN}"));
            }
            Ok(Some(t)) => self.circuit_changed(name, t).await,
            Ok(None) => {}
        }
        let outcome = provider.send(&message).await;
        // A permanent error is the provider answering (about this message): it is up.
        let transition = match &outcome {
            Err(ProviderError::Transient(_)) => {
                self.router.breakers().on_failure(name, Instant::now())
            }
            _ => self.router.breakers().on_success(name, Instant::now()),
        };
        if let Some(t) = transition {
            self.circuit_changed(name, t).await;
        }
        match outcome {
            Ok(accepted) => {
                let region = region_of(&job.to);
                let price = self
                    .prices
                    .price(name, job.channel.as_str(), region.as_deref());
                self.telemetry.spent(
                    &service.name,
                    job.channel,
                    region.as_deref(),
                    price.as_decimal(),
                );
                info!(
                    provider = name,
                    sms_encoding = rendered.sms.map(|s| format!("{:?}", s.encoding)),
                    sms_segments = rendered.sms.map(|s| s.segments),
                    "message handed to provider"
                );
                let (status, provider_message_id) = match accepted {
                    Accepted::Queued {
                        provider_message_id,
                    } => (DeliveryStatus::Sent, provider_message_id),
                    Accepted::Delivered {
                        provider_message_id,
                    } => (DeliveryStatus::Delivered, provider_message_id),
                };
                let receipt_deadline = (status == DeliveryStatus::Sent).then(|| {
                    now + chrono::Duration::from_std(self.receipt_timeout(job)).unwrap_or_default()
                });
                AttemptResult::Sent {
                    status,
                    provider_message_id,
                    receipt_deadline,
                }
            }
            Err(ProviderError::Transient(error)) => {
                let attempt = job.attempts + 1;
                if attempt < self.config.max_attempts {
                    let delay = backoff::delay(
                        attempt,
                        Duration::from_millis(self.config.retry_base_ms),
                        Duration::from_millis(self.config.retry_max_ms),
                    );
                    info!(provider = name, attempt, %error, retry_in_ms = delay.as_millis() as u64, "transient delivery failure; will retry");
                    AttemptResult::Retry {
                        at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                        error: format!("{name}: {error}"),
                    }
                } else {
                    self.next_or_fail(job, format!("{name}: {error} (after {attempt} attempts)"))
                }
            }
            Err(ProviderError::Permanent(error)) => {
                self.next_or_fail(job, format!("{name}: {error}"))
            }
        }
    }

    /// Moves to the next provider, or gives up on this channel.
    fn next_or_fail(&self, job: &DeliveryJob, error: String) -> AttemptResult {
        warn!(%error, "delivery failed with this provider");
        if (job.provider_index as usize) + 1 < job.providers.len() {
            AttemptResult::NextProvider { error }
        } else {
            self.give_up(job, error)
        }
    }

    /// Gives up on this channel: the next fallback channel with a provider, if any.
    fn give_up(&self, job: &DeliveryJob, error: String) -> AttemptResult {
        AttemptResult::Fail {
            error,
            next: self.next_channel(job),
        }
    }

    /// The next fallback channel of `job` that has a provider, with its chain.
    fn next_channel(&self, job: &DeliveryJob) -> Option<NextDelivery> {
        let region = region_of(&job.to);
        let mut rest = job.fallback.clone();
        while !rest.is_empty() {
            let channel = rest.remove(0);
            let providers = self.router.chain(channel, region.as_deref());
            if !providers.is_empty() {
                return Some(NextDelivery {
                    channel,
                    fallback: rest,
                    providers,
                });
            }
        }
        None
    }
}

/// The region (ISO 3166) of a phone number, for routing; `None` for email addresses.
fn region_of(to: &str) -> Option<String> {
    PhoneNumber::parse_possible(to, None)
        .ok()
        .and_then(|p| p.region().map(str::to_string))
}
