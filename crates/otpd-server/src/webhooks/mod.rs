//! Webhooks out: every event of a service (and every event of no service: provider
//! circuits, alerts) is POSTed to the service's `webhook_url`, signed per Standard
//! Webhooks ([`signature`]), with the body of [`payload`]; and the authenticator-factor
//! events of a service to its factor webhooks (Twilio's Service Webhooks), as Twilio's
//! signed form (`crate::twilio::webhook_messages`).
//!
//! The queue is durable: the store queues one message per event and endpoint in the
//! event's own transaction, and senders (here, in every otpd process) lease messages like
//! the delivery outbox. A refused or unreachable POST is retried with exponential backoff
//! and jitter until `retry_window_seconds` (24 h) after the event; then the message is a
//! dead letter, listed and replayed at `/v1/webhooks/dead-letters`. Delivery is at least
//! once: a sender that dies after the POST but before recording it leaves the message to
//! be sent again, with the same `webhook-id` (the event id) so receivers can dedupe.

pub mod payload;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use otpd_core::ids::new_hex;
use otpd_core::secret::ServerSecret;
use otpd_core::service::Service;
use otpd_core::store::{Store, WebhookJob, WebhookResult};
use otpd_delivery::backoff;
use otpd_telemetry::{Telemetry, WebhookOutcome};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::WebhooksConfig;
use crate::outbound;
use crate::twilio::webhook_messages::{self, NotMade};

/// Pause after a store error before trying again.
const STORE_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// Most bytes of a receiver's reply kept in the error of a failed POST.
const ERROR_SNIPPET: usize = 200;

/// The webhook senders of one process.
pub struct WebhookSender {
    store: Arc<dyn Store>,
    secret: Arc<ServerSecret>,
    config: WebhooksConfig,
    client: reqwest::Client,
    telemetry: Arc<Telemetry>,
    node: String,
    clock: Arc<dyn otpd_core::clock::Clock>,
    master_key_digest: Option<Arc<[u8]>>,
}

impl WebhookSender {
    /// Decides by `clock` instead of the system clock (tests move it by hand).
    pub fn with_clock(mut self, clock: Arc<dyn otpd_core::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Lets factor webhooks created with the configured master key sign with it (its
    /// digest: a webhook's sealed key is checked to be a live key before each message).
    pub fn with_master_key(mut self, digest: Option<Arc<[u8]>>) -> Self {
        self.master_key_digest = digest;
        self
    }

    /// Senders over `store`, POSTing through the SSRF-safe client.
    pub fn new(
        store: Arc<dyn Store>,
        secret: Arc<ServerSecret>,
        config: WebhooksConfig,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let client = outbound::client(config.allow_private_targets);
        WebhookSender {
            store,
            secret,
            config,
            client,
            telemetry,
            node: format!("webhooks_{}", new_hex()),
            clock: Arc::new(otpd_core::clock::SystemClock),
            master_key_digest: None,
        }
    }

    /// Runs `workers` send loops until `stop`; each finishes the POST it is making.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..this.config.workers {
            let sender = this.clone();
            let stop = stop.clone();
            tasks.spawn(async move { sender.send_loop(n, stop).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn send_loop(&self, n: usize, stop: CancellationToken) {
        let owner = format!("{}/{n}", self.node);
        let lease = chrono::Duration::seconds(self.config.lease_seconds as i64);
        while !stop.is_cancelled() {
            match self
                .store
                .claim_webhook(&owner, self.clock.now(), lease)
                .await
            {
                Ok(Some(job)) => {
                    let span = info_span!("webhook", webhook_id = %job.event.id, event_type = %job.event.kind, service_id = %job.service_id);
                    self.send(&job).instrument(span).await;
                }
                Ok(None) => self.idle(&stop).await,
                Err(e) => {
                    warn!(error = %e, "webhook queue unavailable");
                    pause(STORE_ERROR_PAUSE, &stop).await;
                }
            }
        }
    }

    /// Sleeps until the next message is due, or the poll interval.
    async fn idle(&self, stop: &CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let wait = match self.store.next_webhook_due().await {
            Ok(Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            _ => poll,
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
        } else {
            pause(wait, stop).await;
        }
    }

    /// Makes one POST and records its outcome.
    async fn send(&self, job: &WebhookJob) {
        let result = self.attempt(job).await;
        let outcome = match &result {
            WebhookResult::Delivered { status } => {
                info!(status, attempt = job.attempts + 1, "webhook delivered");
                WebhookOutcome::Delivered
            }
            WebhookResult::Retry { at, error, .. } => {
                info!(%error, attempt = job.attempts + 1, retry_at = %at, "webhook refused; will retry");
                WebhookOutcome::Retry
            }
            WebhookResult::Dead { error, .. } => {
                warn!(%error, attempts = job.attempts + 1, "webhook dead-lettered after its retry window");
                WebhookOutcome::Dead
            }
        };
        match self
            .store
            .finish_webhook(job, result, self.clock.now())
            .await
        {
            Ok(true) => self.telemetry.webhook_attempt(outcome),
            Ok(false) => info!("webhook lease lost; another sender took the message over"),
            Err(e) => {
                warn!(error = %e, "could not record a webhook outcome; the message will be sent again after its lease")
            }
        }
    }

    /// POSTs the message and says what to record.
    async fn attempt(&self, job: &WebhookJob) -> WebhookResult {
        let now = self.clock.now();
        let service = match self.store.find_service(&job.service_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return self.failed(job, now, "the service no longer exists".into(), None),
            Err(e) => return self.failed(job, now, format!("store unavailable: {e}"), None),
        };
        let request = match &job.endpoint {
            None => self.standard_request(job, &service, now).await,
            Some(sid) => self.factor_webhook_request(job, &service, sid).await,
        };
        let request = match request {
            Ok(r) => r,
            Err(result) => return result,
        };
        let sent = request
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .send()
            .await;
        match sent {
            Ok(reply) if reply.status().is_success() => WebhookResult::Delivered {
                status: reply.status().as_u16(),
            },
            Ok(reply) => {
                let status = reply.status().as_u16();
                let text = reply.text().await.unwrap_or_default();
                let snippet: String = text.chars().take(ERROR_SNIPPET).collect();
                self.failed(
                    job,
                    now,
                    format!("HTTP {status} {snippet}").trim_end().into(),
                    Some(status),
                )
            }
            // Without the URL: it may carry the receiver's own token.
            Err(e) => self.failed(job, now, e.without_url().to_string(), None),
        }
    }

    /// The Standard Webhooks POST of a message to the service's `webhook_url`: the JSON
    /// body of [`payload`], signed with the service's secret.
    async fn standard_request(
        &self,
        job: &WebhookJob,
        service: &Service,
        now: DateTime<Utc>,
    ) -> Result<reqwest::RequestBuilder, WebhookResult> {
        let Some(url) = service.settings.webhook_url.as_deref() else {
            // The URL was removed after the event: no point retrying; a replay after a
            // new URL is set delivers it.
            return Err(WebhookResult::Dead {
                error: "the service has no webhook_url".into(),
                status: None,
            });
        };
        let url = outbound::check_target(url, self.config.allow_private_targets)
            .map_err(|e| self.failed(job, now, format!("webhook_url refused: {e}"), None))?;
        let secret = match self.store.sealed_webhook_secret(&service.id).await {
            Ok(Some(sealed)) => match self.secret.sealer().open_str(&service.id, &sealed) {
                Ok(s) => s,
                Err(_) => {
                    let why =
                        "the webhook secret cannot be opened (was the server secret changed?)";
                    return Err(self.failed(job, now, why.into(), None));
                }
            },
            Ok(None) => {
                return Err(self.failed(
                    job,
                    now,
                    "the service has no webhook secret".into(),
                    None,
                ));
            }
            Err(e) => return Err(self.failed(job, now, format!("store unavailable: {e}"), None)),
        };
        let body = payload::body(&*self.store, &job.event, service, now)
            .await
            .map_err(|e| self.failed(job, now, format!("store unavailable: {e}"), None))?;
        let timestamp = now.timestamp();
        let signature = signature::sign(&secret, &job.event.id, timestamp, &body)
            .map_err(|e| self.failed(job, now, e.to_string(), None))?;
        drop(secret);
        Ok(self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &job.event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body))
    }

    /// The Twilio-style POST of a message to one of the service's factor webhooks: a
    /// form signed with `X-Twilio-Signature` (see `twilio::webhook_messages`).
    async fn factor_webhook_request(
        &self,
        job: &WebhookJob,
        service: &Service,
        sid: &str,
    ) -> Result<reqwest::RequestBuilder, WebhookResult> {
        let signing = webhook_messages::Signing {
            store: &*self.store,
            secret: &self.secret,
            master_key_digest: self.master_key_digest.as_deref(),
            allow_private: self.config.allow_private_targets,
        };
        match webhook_messages::message(&signing, service, sid, &job.event).await {
            Ok(m) => Ok(self
                .client
                .post(m.url)
                .header(webhook_messages::SIGNATURE_HEADER, m.signature)
                .header(webhook_messages::IDEMPOTENCY_HEADER, &job.event.id)
                .form(&m.params)),
            Err(NotMade::Dead(error)) => Err(WebhookResult::Dead {
                error,
                status: None,
            }),
            Err(NotMade::Failed(error)) => Err(self.failed(job, self.clock.now(), error, None)),
        }
    }

    /// A failed POST: retried after a jittered exponential delay, or dead-lettered when
    /// that would fall after the retry window.
    fn failed(
        &self,
        job: &WebhookJob,
        now: DateTime<Utc>,
        error: String,
        status: Option<u16>,
    ) -> WebhookResult {
        let delay = backoff::delay(
            job.attempts + 1,
            Duration::from_millis(self.config.retry_base_ms),
            Duration::from_millis(self.config.retry_max_ms),
        );
        let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        let window = chrono::Duration::seconds(self.config.retry_window_seconds as i64);
        if at > job.window_start + window {
            WebhookResult::Dead { error, status }
        } else {
            WebhookResult::Retry { at, error, status }
        }
    }
}

/// Sleeps for `d`, or until `stop`.
async fn pause(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}
