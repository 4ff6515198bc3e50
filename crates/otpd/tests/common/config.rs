//! Configuration (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// The `[delivery]` section of the configuration (outbox worker tuning).
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
    pub lease_seconds: u64,
}

impl Default for DeliveryConfig {
    /// Fast retries, many attempts, a short lease: what end-to-end tests want.
    fn default() -> Self {
        Self {
            retry_base_ms: 100,
            retry_max_ms: 1000,
            max_attempts: 50,
            lease_seconds: 5,
        }
    }
}

/// The `receipt_token` of the `sink` provider: receipts posted to `/v1/receipts/sink`
/// carry it as `Authorization: Bearer` (see [`OtpdProcess::sink_receipt`]).
pub const SINK_RECEIPT_TOKEN: &str = "e2e-sink-receipt-token";

/// The configuration file the harness writes before starting a server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the `sink` http provider POSTs its messages.
    pub sink_url: String,
    /// Channels the sink provider serves.
    pub channels: Vec<String>,
    /// The provider's request timeout.
    pub timeout_ms: u64,
    /// The `[delivery]` section.
    pub delivery: DeliveryConfig,
    /// Raw TOML appended verbatim at the end of the file (more sections, if a test needs them).
    pub extra_toml: String,
}

impl Config {
    /// The standard configuration: one `http` provider named `sink`, pointing at `sink`, for
    /// every channel the tests use, taking receipts with [`SINK_RECEIPT_TOKEN`], and the
    /// default [`DeliveryConfig`].
    pub fn for_sink(sink: &Sink) -> Self {
        Self::for_url(sink.url())
    }

    /// Like [`Config::for_sink`], with an explicit provider URL.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            sink_url: url.into(),
            channels: ["sms", "voice", "whatsapp", "email"]
                .map(String::from)
                .to_vec(),
            timeout_ms: 2000,
            delivery: DeliveryConfig::default(),
            extra_toml: String::new(),
        }
    }

    /// Renders the TOML file.
    pub fn to_toml(&self) -> String {
        let channels = self
            .channels
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let DeliveryConfig {
            retry_base_ms,
            retry_max_ms,
            max_attempts,
            lease_seconds,
        } = &self.delivery;
        format!(
            r#"[[providers]]
name = "sink"
kind = "http"
url = {url:?}
channels = [{channels}]
timeout_ms = {timeout_ms}
receipt_token = {SINK_RECEIPT_TOKEN:?}

[delivery]
retry_base_ms = {retry_base_ms}
retry_max_ms = {retry_max_ms}
max_attempts = {max_attempts}
lease_seconds = {lease_seconds}

{extra}
"#,
            url = self.sink_url,
            timeout_ms = self.timeout_ms,
            extra = self.extra_toml,
        )
    }
}
