//! The periodic retention purge: every `retention.interval_seconds`, deletes what is older
//! than `[retention]` allows (the store records a `retention.purged` event). Runs on every
//! node; the purge is idempotent, so nodes racing each other only repeat empty work.

use std::sync::Arc;
use std::time::Duration;

use otpd_core::audit::WriteContext;
use otpd_core::clock::Clock;
use otpd_core::store::{RetentionPolicy, RetentionStore};
use tokio_util::sync::CancellationToken;

/// Purges now and then every `interval` until `stop`. Failures are logged and retried at
/// the next tick.
pub async fn run(
    store: Arc<dyn RetentionStore>,
    policy: RetentionPolicy,
    interval: Duration,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store
            .purge(&policy, clock.now(), &WriteContext::system())
            .await
        {
            Ok(counts) if !counts.is_empty() => {
                let total: u64 = counts.values().sum();
                tracing::info!(rows = total, tables = ?counts, "retention purge");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention purge failed; retrying later"),
        }
    }
}

/// Whether the policy deletes anything at all (otherwise no task is started).
pub fn enabled(policy: &RetentionPolicy) -> bool {
    policy.verifications.is_some()
        || policy.messages.is_some()
        || policy.events.is_some()
        || policy.api_requests.is_some()
        || policy.guard_decisions.is_some()
}
