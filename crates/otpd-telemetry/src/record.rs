//! The recording functions: the only way counts enter the registry. The server and the
//! delivery worker call them where things happen; each names its outcome with a closed
//! enum, so no label value is spelled twice in the code base.

use std::time::Duration;

use chrono::Utc;
use otpd_core::channel::Channel;
use otpd_core::guards::{Action, GuardName};

use crate::families::{
    AlertLabels, BlockLabels, CheckLabels, CircuitLabels, CountryLabels, HttpLabels, OutcomeLabels,
    ProviderLabels, ReceiptLabels, SendLabels, SpendLabels, StartLabels, TransitionLabels,
};
use crate::{Telemetry, country_label};

/// What became of one hand-off of a message to a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted; a delivery receipt is awaited.
    Accepted,
    /// Accepted and confirmed delivered in the same reply.
    Delivered,
    /// A transient failure; the same provider is tried again later.
    Retry,
    /// A final failure with this provider (the next provider or channel follows).
    Failed,
    /// Not tried: the provider's circuit is open.
    Skipped,
    /// Recorded for a test key, never handed to a provider.
    Recorded,
}

impl SendOutcome {
    fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Accepted => "accepted",
            SendOutcome::Delivered => "delivered",
            SendOutcome::Retry => "retry",
            SendOutcome::Failed => "failed",
            SendOutcome::Skipped => "skipped",
            SendOutcome::Recorded => "recorded",
        }
    }
}

/// How a code check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The right code.
    Approved,
    /// A wrong code, attempts left.
    WrongCode,
    /// A wrong code that used up the attempts, or any check after that.
    MaxAttempts,
    /// Nothing pending for that recipient, or no such verification.
    NotFound,
    /// The verification expired.
    Expired,
    /// The verification had already ended (approved, canceled, …).
    NotPending,
    /// Refused by a check rate limit or a wrong-code lockout.
    RateLimited,
    /// The request was malformed or not allowed (no code compared).
    Invalid,
    /// The store failed (the check failed closed).
    Error,
}

impl CheckResult {
    fn as_str(self) -> &'static str {
        match self {
            CheckResult::Approved => "approved",
            CheckResult::WrongCode => "wrong_code",
            CheckResult::MaxAttempts => "max_attempts",
            CheckResult::NotFound => "not_found",
            CheckResult::Expired => "expired",
            CheckResult::NotPending => "not_pending",
            CheckResult::RateLimited => "rate_limited",
            CheckResult::Invalid => "invalid",
            CheckResult::Error => "error",
        }
    }
}

/// What became of one webhook POST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A 2xx.
    Delivered,
    /// Refused or unreachable; retried later.
    Retry,
    /// Refused or unreachable at the end of the retry window: dead-lettered.
    Dead,
}

/// The queue figures read from the store when `/metrics` is scraped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueGauges {
    /// Delivery jobs queued.
    pub outbox_depth: u64,
    /// Age of the oldest, in seconds.
    pub outbox_oldest_age_secs: f64,
    /// Webhook messages waiting.
    pub webhook_depth: u64,
    /// Age of the oldest, in seconds.
    pub webhook_oldest_age_secs: f64,
    /// Dead-lettered webhook messages.
    pub webhook_dead: u64,
}

/// The class of an HTTP status (`2xx` … `5xx`).
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Where a check or a refusal happened, as far as it is known: the service's name and the
/// recipient's region (both bounded: services are the operator's, regions ISO 3166).
#[derive(Clone, Copy, Debug, Default)]
pub struct Place<'a> {
    /// The service's name.
    pub service: Option<&'a str>,
    /// The recipient's region (see [`region_of`](crate::region_of)).
    pub region: Option<&'a str>,
}

impl Telemetry {
    /// A send request was accepted: a new verification (`resent` false) or a resend.
    pub fn verification_started(&self, channel: Channel, region: Option<&str>, resent: bool) {
        let country = country_label(region);
        if !resent {
            self.monitor(|m| m.verification_started(&country, Utc::now()));
        }
        let outcome = if resent { "resent" } else { "created" };
        self.families
            .verifications
            .get_or_create(&StartLabels {
                channel: channel.as_str(),
                country,
                outcome,
            })
            .inc();
    }

    /// A code check ended, in `place` (`approved` carries the verification's channel).
    pub fn check(&self, result: CheckResult, place: Place<'_>, approved: Option<Channel>) {
        let country = country_label(place.region);
        self.families
            .checks
            .get_or_create(&CheckLabels {
                outcome: result.as_str(),
                service: place.service.unwrap_or_default().to_string(),
                country: country.clone(),
            })
            .inc();
        if let (CheckResult::Approved, Some(channel)) = (result, approved) {
            self.monitor(|m| m.verification_approved(&country, Utc::now()));
            self.families
                .approvals
                .get_or_create(&CountryLabels {
                    channel: channel.as_str(),
                    country,
                })
                .inc();
        }
    }

    /// A guard refused a send or check in `place` (`shadow`: would have refused, in shadow
    /// mode).
    pub fn guard_refused(&self, action: Action, guard: GuardName, shadow: bool, place: Place<'_>) {
        self.families
            .blocks
            .get_or_create(&BlockLabels {
                action: action.as_str(),
                guard: guard.as_str(),
                mode: if shadow { "shadow" } else { "enforce" },
                service: place.service.unwrap_or_default().to_string(),
                country: country_label(place.region),
            })
            .inc();
    }

    /// A message was handed to a provider (or not), with this outcome. A `Delivered`
    /// outcome also records its latency (the provider's reply time); a final `Failed`
    /// counts against the provider's delivery rate.
    pub fn provider_send(
        &self,
        channel: Channel,
        provider: &str,
        region: Option<&str>,
        outcome: SendOutcome,
        elapsed: Duration,
    ) {
        self.families
            .sends
            .get_or_create(&SendLabels {
                channel: channel.as_str(),
                provider: provider.to_string(),
                country: country_label(region),
                outcome: outcome.as_str(),
            })
            .inc();
        match outcome {
            SendOutcome::Delivered => self.delivered(channel, provider, Some(elapsed)),
            SendOutcome::Failed => {
                self.monitor(|m| m.delivery_outcome(provider, false, Utc::now()));
            }
            _ => {}
        }
    }

    /// A delivery receipt came back for a message (`waited`: since the hand-off, when
    /// otpd was still waiting for it; a late receipt records no latency).
    pub fn receipt(
        &self,
        channel: Channel,
        provider: &str,
        delivered: bool,
        waited: Option<Duration>,
    ) {
        self.families
            .receipts
            .get_or_create(&ReceiptLabels {
                channel: channel.as_str(),
                provider: provider.to_string(),
                status: if delivered { "delivered" } else { "failed" },
            })
            .inc();
        if delivered && waited.is_some() {
            self.delivered(channel, provider, waited);
        }
    }

    /// A message counts as delivered: its latency, and the provider's delivery rate.
    fn delivered(&self, channel: Channel, provider: &str, latency: Option<Duration>) {
        if let Some(latency) = latency {
            self.families
                .delivery_latency
                .get_or_create(&ProviderLabels {
                    channel: channel.as_str(),
                    provider: provider.to_string(),
                })
                .observe(latency.as_secs_f64());
        }
        self.monitor(|m| m.delivery_outcome(provider, true, Utc::now()));
    }

    /// The wait for a message's receipt ended undelivered (none in time, or a failed one).
    pub fn receipt_timeout(&self, channel: Channel, provider: &str) {
        self.families
            .receipt_timeouts
            .get_or_create(&ProviderLabels {
                channel: channel.as_str(),
                provider: provider.to_string(),
            })
            .inc();
        self.monitor(|m| m.delivery_outcome(provider, false, Utc::now()));
    }

    /// A provider's circuit entered `to` (`closed`, `open`, `half_open`).
    pub fn circuit_transition(&self, provider: &str, to: &'static str) {
        self.families
            .circuit_transitions
            .get_or_create(&TransitionLabels {
                provider: provider.to_string(),
                to,
            })
            .inc();
    }

    /// Sets every provider's circuit state (called when `/metrics` is scraped).
    pub fn set_circuits<'a>(
        &self,
        circuits: impl IntoIterator<Item = (&'a str, &'static str)>,
        states: &[&'static str],
    ) {
        for (provider, current) in circuits {
            for state in states {
                self.families
                    .circuit_state
                    .get_or_create(&CircuitLabels {
                        provider: provider.to_string(),
                        state,
                    })
                    .set(i64::from(*state == current));
            }
        }
    }

    /// Sets the queue gauges (called when `/metrics` is scraped).
    pub fn set_queues(&self, q: QueueGauges) {
        let f = &self.families;
        f.outbox_depth
            .set(i64::try_from(q.outbox_depth).unwrap_or(i64::MAX));
        f.outbox_oldest_age.set(q.outbox_oldest_age_secs);
        f.webhook_queue_depth
            .set(i64::try_from(q.webhook_depth).unwrap_or(i64::MAX));
        f.webhook_oldest_age.set(q.webhook_oldest_age_secs);
        f.webhook_dead_letters
            .set(i64::try_from(q.webhook_dead).unwrap_or(i64::MAX));
    }

    /// One webhook POST ended.
    pub fn webhook_attempt(&self, outcome: WebhookOutcome) {
        let outcome = match outcome {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Retry => "retry",
            WebhookOutcome::Dead => "dead",
        };
        self.families
            .webhook_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// An HTTP request was answered. `route` is the matched route template
    /// (`/v1/verifications/{id}`), never the raw path; `None` for unrouted requests.
    pub fn http_request(&self, method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
        // Methods outside the standard set are one label value, not one each.
        let method = match method {
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method,
            _ => "OTHER",
        };
        self.families
            .http_duration
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.unwrap_or("unmatched").to_string(),
                status_class: status_class(status),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A message was handed to a provider that charges `price` (price-table currency)
    /// for it; `service` is the service's name.
    pub fn spent(&self, service: &str, channel: Channel, region: Option<&str>, price: f64) {
        if price > 0.0 {
            self.families
                .spend
                .get_or_create(&SpendLabels {
                    service: service.to_string(),
                    channel: channel.as_str(),
                    country: country_label(region),
                })
                .inc_by(price);
        }
    }

    /// Whether the store answered when `/metrics` was scraped.
    pub fn set_store_up(&self, up: bool) {
        self.families.store_up.set(i64::from(up));
    }

    /// A request was refused for want of a valid credential (401).
    pub fn auth_refused(&self) {
        self.families.auth_refusals.inc();
    }

    /// An alert event was raised (`type` is its event type).
    pub(crate) fn alert_raised(&self, r#type: &'static str) {
        self.families
            .alerts
            .get_or_create(&AlertLabels { r#type })
            .inc();
    }
}
