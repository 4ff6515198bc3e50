//! The outbox worker: claims delivery jobs, renders and hands them to providers, and
//! records each outcome. Several workers (in this process and in others) share the queue;
//! a job's lease keeps it with one worker, and a lapsed lease frees it for another.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use otpd_core::ids::Kind;
use otpd_core::recipient::PhoneNumber;
use otpd_core::secret::ServerSecret;
use otpd_core::store::{AttemptResult, DeliveryJob, NextDelivery, Store};
use otpd_core::verification::{DeliveryStatus, Status};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backoff;
use crate::config::DeliveryConfig;
use crate::provider::{Accepted, OutboundMessage, ProviderError};
use crate::render;
use crate::router::Router;

/// Most verifications expired per sweep.
const EXPIRY_BATCH: u32 = 500;
/// How often pending verifications past their expiry are ended.
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);
/// Pause after a store error before trying again.
const STORE_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Everything the worker needs.
pub struct Worker {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    secret: Arc<ServerSecret>,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    node: String,
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
        }
    }

    /// Runs the delivery loops and the expiry sweeper until `stop` is cancelled; each loop
    /// finishes the job it holds before returning.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..this.config.workers {
            let w = this.clone();
            let stop = stop.clone();
            tasks.spawn(async move { w.delivery_loop(n, stop).await });
        }
        let w = this.clone();
        let sweeper_stop = stop.clone();
        tasks.spawn(async move { w.expiry_loop(sweeper_stop).await });
        while tasks.join_next().await.is_some() {}
    }

    async fn delivery_loop(&self, n: usize, stop: CancellationToken) {
        let owner = format!("{}/{n}", self.node);
        let lease = chrono::Duration::seconds(self.config.lease_seconds as i64);
        while !stop.is_cancelled() {
            match self.store.claim(&owner, Utc::now(), lease).await {
                Ok(Some(job)) => {
                    let span = info_span!("delivery", delivery_id = %job.id, verification_id = %job.verification_id, channel = %job.channel);
                    let result = self.attempt(&job).instrument(span).await;
                    if let Err(e) = self.store.finish(&job, result, Utc::now()).await {
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
            Ok(Some(at)) => (at - Utc::now())
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
            match self.store.expire_due(Utc::now(), EXPIRY_BATCH).await {
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

    /// Makes one delivery attempt and says what to record.
    async fn attempt(&self, job: &DeliveryJob) -> AttemptResult {
        let now = Utc::now();
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
        let message = OutboundMessage {
            message_id: job.id.clone(),
            verification_id: job.verification_id.clone(),
            to: job.to.clone(),
            channel: job.channel,
            subject: rendered.subject,
            body: rendered.body,
            locale: job.locale.clone(),
        };
        match provider.send(&message).await {
            Ok(accepted) => {
                info!(provider = name, "message handed to provider");
                let (status, provider_message_id) = match accepted {
                    Accepted::Queued {
                        provider_message_id,
                    } => (DeliveryStatus::Sent, provider_message_id),
                    Accepted::Delivered {
                        provider_message_id,
                    } => (DeliveryStatus::Delivered, provider_message_id),
                };
                AttemptResult::Sent {
                    status,
                    provider_message_id,
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
        let region = PhoneNumber::parse_possible(&job.to, None).ok();
        let region = region.as_ref().and_then(|p| p.region());
        let mut rest = job.fallback.clone();
        while !rest.is_empty() {
            let channel = rest.remove(0);
            let providers = self.router.chain(channel, region);
            if !providers.is_empty() {
                return AttemptResult::Fail {
                    error,
                    next: Some(NextDelivery {
                        channel,
                        fallback: rest,
                        providers,
                    }),
                };
            }
        }
        AttemptResult::Fail { error, next: None }
    }
}
