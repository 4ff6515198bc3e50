//! The metric families otpd exposes, their labels, and their registration (names, help
//! texts, units and histogram buckets in one place; docs/operations.md lists the same).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Delivery latency buckets (seconds): from a synchronous gateway's tens of milliseconds
/// to a slow carrier's minutes.
const DELIVERY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// HTTP latency buckets (seconds): sub-millisecond handlers to the request timeout.
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A float gauge (ages in seconds).
pub(crate) type FloatGauge = Gauge<f64, AtomicU64>;
/// A histogram family whose histograms share one bucket layout.
pub(crate) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// `otpd_verifications_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StartLabels {
    pub channel: &'static str,
    pub country: String,
    pub outcome: &'static str,
}

/// `otpd_approvals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CountryLabels {
    pub channel: &'static str,
    pub country: String,
}

/// `otpd_sends_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SendLabels {
    pub channel: &'static str,
    pub provider: String,
    pub country: String,
    pub outcome: &'static str,
}

/// `otpd_receipts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReceiptLabels {
    pub channel: &'static str,
    pub provider: String,
    pub status: &'static str,
}

/// Labels of per-provider, per-channel series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProviderLabels {
    pub channel: &'static str,
    pub provider: String,
}

/// `otpd_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabels {
    pub outcome: &'static str,
    pub service: String,
    pub country: String,
}

/// `otpd_blocks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BlockLabels {
    pub action: &'static str,
    pub guard: &'static str,
    pub mode: &'static str,
    pub service: String,
    pub country: String,
}

/// `otpd_circuit_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CircuitLabels {
    pub provider: String,
    pub state: &'static str,
}

/// `otpd_circuit_transitions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransitionLabels {
    pub provider: String,
    pub to: &'static str,
}

/// `otpd_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status_class: &'static str,
}

/// Labels made of one `type` or `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: &'static str,
}

/// `otpd_spend_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SpendLabels {
    pub service: String,
    pub channel: &'static str,
    pub country: String,
}

/// `otpd_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BuildLabels {
    pub version: &'static str,
}

/// A float counter (money).
pub(crate) type FloatCounter = Counter<f64, AtomicU64>;

/// `otpd_alerts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AlertLabels {
    pub r#type: &'static str,
}

/// Every family, registered.
pub(crate) struct Families {
    pub verifications: Family<StartLabels, Counter>,
    pub approvals: Family<CountryLabels, Counter>,
    pub sends: Family<SendLabels, Counter>,
    pub receipts: Family<ReceiptLabels, Counter>,
    pub receipt_timeouts: Family<ProviderLabels, Counter>,
    pub delivery_latency: Histograms<ProviderLabels>,
    pub checks: Family<CheckLabels, Counter>,
    pub blocks: Family<BlockLabels, Counter>,
    pub circuit_state: Family<CircuitLabels, Gauge>,
    pub circuit_transitions: Family<TransitionLabels, Counter>,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age: FloatGauge,
    pub webhook_queue_depth: Gauge,
    pub webhook_oldest_age: FloatGauge,
    pub webhook_dead_letters: Gauge,
    pub webhook_attempts: Family<OutcomeLabels, Counter>,
    pub http_duration: Histograms<HttpLabels>,
    pub alerts: Family<AlertLabels, Counter>,
    pub auth_refusals: Counter,
    pub spend: Family<SpendLabels, FloatCounter>,
    pub store_up: Gauge,
}

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

impl Families {
    /// Creates every family and registers it (names get the registry's `otpd_` prefix;
    /// counters get `_total` in the output).
    pub fn register(r: &mut Registry) -> Self {
        let f = Families {
            verifications: Family::default(),
            approvals: Family::default(),
            sends: Family::default(),
            receipts: Family::default(),
            receipt_timeouts: Family::default(),
            delivery_latency: Family::new_with_constructor(delivery_histogram),
            checks: Family::default(),
            blocks: Family::default(),
            circuit_state: Family::default(),
            circuit_transitions: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: FloatGauge::default(),
            webhook_queue_depth: Gauge::default(),
            webhook_oldest_age: FloatGauge::default(),
            webhook_dead_letters: Gauge::default(),
            webhook_attempts: Family::default(),
            http_duration: Family::new_with_constructor(http_histogram),
            alerts: Family::default(),
            auth_refusals: Counter::default(),
            spend: Family::default(),
            store_up: Gauge::default(),
        };
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "The otpd version running (always 1)",
            build_info,
        );
        r.register(
            "spend",
            "What messages handed to providers cost, by service, channel and country, from the [[prices]] table (in its currency)",
            f.spend.clone(),
        );
        r.register(
            "store_up",
            "1 when the store (database, or Redis in front of it) answered at the last scrape, else 0",
            f.store_up.clone(),
        );
        r.register(
            "auth_refusals",
            "Requests refused for want of a valid credential (401): counted here, never stored",
            f.auth_refusals.clone(),
        );
        r.register(
            "verifications",
            "Verifications started (outcome created) or resent, by channel and country",
            f.verifications.clone(),
        );
        r.register(
            "approvals",
            "Verifications approved by a right code, by channel and country (conversion = approvals / verifications{outcome=\"created\"})",
            f.approvals.clone(),
        );
        r.register(
            "sends",
            "Messages handed to providers, by channel, provider, country and outcome (accepted, delivered, retry, failed, skipped, recorded)",
            f.sends.clone(),
        );
        r.register(
            "receipts",
            "Delivery receipts received, by channel, provider and status (delivered, failed)",
            f.receipts.clone(),
        );
        r.register(
            "receipt_timeouts",
            "Messages whose receipt wait ended undelivered (no receipt in time, or a failed one): the code went on to the next provider or channel",
            f.receipt_timeouts.clone(),
        );
        r.register_with_unit(
            "delivery_latency",
            "Time from handing a message to a provider to its delivery receipt, by channel and provider",
            Unit::Seconds,
            f.delivery_latency.clone(),
        );
        r.register(
            "checks",
            "Sent-code checks by outcome (approved, wrong_code, max_attempts, not_found, expired, not_pending, rate_limited, invalid, error), service and recipient country (empty service and ZZ when not known)",
            f.checks.clone(),
        );
        r.register(
            "blocks",
            "Sends and checks refused by a guard (mode enforce), or that a guard in shadow mode would have refused (mode shadow), by service and recipient country",
            f.blocks.clone(),
        );
        r.register(
            "circuit_state",
            "Each provider's circuit: 1 for its current state (closed, open, half_open), 0 for the others",
            f.circuit_state.clone(),
        );
        r.register(
            "circuit_transitions",
            "Provider circuit changes, by the state entered",
            f.circuit_transitions.clone(),
        );
        r.register(
            "outbox_depth",
            "Delivery jobs queued (due now or later)",
            f.outbox_depth.clone(),
        );
        r.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest queued delivery job (0 when none)",
            Unit::Seconds,
            f.outbox_oldest_age.clone(),
        );
        r.register(
            "webhook_queue_depth",
            "Webhook messages waiting to be delivered (due now or later)",
            f.webhook_queue_depth.clone(),
        );
        r.register_with_unit(
            "webhook_oldest_age",
            "Age of the oldest webhook message waiting (0 when none)",
            Unit::Seconds,
            f.webhook_oldest_age.clone(),
        );
        r.register(
            "webhook_dead_letters",
            "Webhook messages given up on after the retry window (replayable)",
            f.webhook_dead_letters.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook POSTs by outcome (delivered, retry, dead)",
            f.webhook_attempts.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "HTTP requests by method, route template and status class",
            Unit::Seconds,
            f.http_duration.clone(),
        );
        r.register("alerts", "Alerts raised, by event type", f.alerts.clone());
        f
    }
}
