//! The alert loop: evaluates the alert rules (`otpd_core::alerts`, fed by the telemetry
//! recording functions) every `alerts.evaluate_interval_seconds` and records each alert
//! that fired or ended as an event, which the webhook senders then deliver like any other.

use std::sync::Arc;
use std::time::Duration;

use otpd_core::audit::WriteContext;
use otpd_core::clock::Clock;
use otpd_core::store::EventStore;
use otpd_telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

/// Evaluates the rules until `stop`.
pub async fn run(
    store: Arc<dyn EventStore>,
    telemetry: Arc<Telemetry>,
    every: Duration,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let now = clock.now();
        for alert in telemetry.evaluate_alerts(now) {
            let kind = alert.event_type();
            let data = alert.data();
            tracing::warn!(alert = kind.as_str(), %data, "alert");
            if let Err(e) = store
                .append_event(kind, data, now, &WriteContext::system())
                .await
            {
                tracing::warn!(error = %e, alert = kind.as_str(), "could not record an alert");
            }
        }
    }
}
