//! otpd's telemetry: what operators watch.
//!
//! One [`Telemetry`] per application holds a Prometheus registry (its own, so two
//! applications in one process, as in tests, never mix their counts) and the alert rules'
//! memory ([`otpd_core::alerts::Monitor`]). The server and the delivery worker call the
//! recording functions of [`record`] where things happen; `GET /metrics` encodes the
//! registry with [`Telemetry::encode`] (OpenMetrics text).
//!
//! Every label value comes from a closed set (channels, outcomes, guard names, route
//! templates, configured provider names) or is an ISO 3166 country code: never a number,
//! an id, or a raw path, so the number of series stays small.

mod families;
mod process;
pub mod record;

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use otpd_core::alerts::{Alert, AlertPolicy, Monitor};
use prometheus_client::registry::Registry;

use crate::families::Families;

pub use record::{CheckResult, Place, QueueGauges, SendOutcome, WebhookOutcome};

/// The `Content-Type` of [`Telemetry::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics registry and the alert rules' memory of one application.
pub struct Telemetry {
    registry: Registry,
    families: Families,
    alerts: Mutex<Monitor>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(AlertPolicy::default())
    }
}

impl Telemetry {
    /// A fresh registry (every counter at zero) and alert rules with `policy`.
    pub fn new(policy: AlertPolicy) -> Self {
        // otpd's own families under `otpd_`; the standard process metrics under their
        // usual names.
        let mut registry = Registry::default();
        let families = Families::register(registry.sub_registry_with_prefix("otpd"));
        registry.register_collector(Box::new(process::ProcessCollector));
        Telemetry {
            registry,
            families,
            alerts: Mutex::new(Monitor::new(policy)),
        }
    }

    /// The registry in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The alerts that fired or ended since the last call.
    pub fn evaluate_alerts(&self, now: DateTime<Utc>) -> Vec<Alert> {
        let alerts = self.monitor(|m| m.evaluate(now));
        for a in &alerts {
            self.alert_raised(a.event_type().as_str());
        }
        alerts
    }

    fn monitor<T>(&self, f: impl FnOnce(&mut Monitor) -> T) -> T {
        let mut guard = self
            .alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// The country of recipients without one (email addresses, numbers of no region): `ZZ`,
/// ISO 3166's code for an unknown region, here as in the dashboard's statistics.
pub use otpd_core::recipient::UNKNOWN_COUNTRY;

/// The label value for a recipient's region: its ISO 3166 code when it is one (two
/// letters), else [`UNKNOWN_COUNTRY`].
pub fn country_label(region: Option<&str>) -> String {
    match region {
        Some(r) if r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()) => {
            r.to_ascii_uppercase()
        }
        _ => UNKNOWN_COUNTRY.into(),
    }
}

/// The region of a recipient (a phone number in E.164), if it has one.
pub fn region_of(to: &str) -> Option<String> {
    otpd_core::recipient::PhoneNumber::parse_possible(to, None)
        .ok()
        .and_then(|p| p.region().map(str::to_string))
}

#[cfg(test)]
mod tests;
