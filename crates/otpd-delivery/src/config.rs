//! Delivery configuration: `[[providers]]`, `[[routes]]` and `[delivery]` tuning.

use std::collections::BTreeMap;

use otpd_core::channel::Channel;
use secrecy::SecretString;
use serde::Deserialize;

/// One `[[providers]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, used by routes, receipts and events.
    pub name: String,
    /// Adapter kind: `console` or `http`.
    pub kind: String,
    /// Endpoint of the `http` adapter.
    #[serde(default)]
    pub url: Option<String>,
    /// Channels this provider serves.
    #[serde(default = "all_channels")]
    pub channels: Vec<Channel>,
    /// Extra request headers of the `http` adapter (values are secrets: never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// Request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn all_channels() -> Vec<Channel> {
    Channel::ALL.to_vec()
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// One `[[routes]]` entry: which providers serve a channel, in order.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The channel.
    pub channel: Channel,
    /// Only numbers of these regions (ISO 3166); all when absent.
    #[serde(default)]
    pub countries: Option<Vec<String>>,
    /// Provider names, tried in order.
    pub providers: Vec<String>,
    /// Seconds to wait for a delivery receipt before trying the next provider.
    #[serde(default)]
    pub receipt_timeout_seconds: Option<u64>,
}

/// `[delivery]`: retry and lease tuning of the outbox worker.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts with one provider before moving on (transient failures only).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long a claimed job stays with its worker; after that another worker takes it.
    pub lease_seconds: u64,
    /// Jobs handled at once.
    pub workers: usize,
    /// Longest sleep between outbox polls when idle (new sends wake workers at once).
    pub poll_interval_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 5,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            lease_seconds: 30,
            workers: 4,
            poll_interval_ms: 1_000,
        }
    }
}

impl DeliveryConfig {
    /// Checks the values for sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.workers == 0 || self.lease_seconds == 0 {
            return Err("delivery.max_attempts, delivery.workers and delivery.lease_seconds must be at least 1".into());
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err("delivery.retry_base_ms must be ≥ 1 and ≤ delivery.retry_max_ms".into());
        }
        Ok(())
    }
}
