//! Configuration in layers: built-in defaults → TOML file → `OTPD_*` environment
//! (`OTPD_<SECTION>__<KEY>` for nested keys). Secrets are `SecretString`s and can also be
//! read from files (`master_key_file`, `secret_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use otpd_core::alerts::AlertPolicy;
use otpd_core::guards::budget::PriceTable;
use otpd_delivery::{DeliveryConfig, ProviderConfig, RouteConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

mod problems;
pub use problems::{FileCheck, Problem};

/// Where the database lives when nothing is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/otpd.db";
/// Where otpd listens when nothing is configured (loopback only: safe by default).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Largest request body accepted.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `address:port` to listen on (`OTPD_LISTEN`); port 0 picks a free port.
    pub listen: String,
    /// `sqlite://PATH` (one node) or `postgres://USER:PASSWORD@HOST/DB` (many nodes;
    /// `?pool_max=N&statement_timeout_ms=N` tune the pool) (`OTPD_DATABASE_URL`).
    pub database_url: String,
    /// Redis for the hot path (`OTPD_REDIS_URL`, `redis://[:password@]host:port[/db]`):
    /// verification state, counters, lockouts and the delivery queue's intake, shared by
    /// every node; the database keeps the durable history.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (`OTPD_REDIS_PREFIX`, default `otpd`): deployments
    /// sharing one Redis keep apart by it.
    pub redis_prefix: String,
    /// An admin API key accepted as is (`OTPD_MASTER_KEY`).
    pub master_key: Option<SecretString>,
    /// File holding the master key (`OTPD_MASTER_KEY_FILE`).
    pub master_key_file: Option<PathBuf>,
    /// The server secret (`OTPD_SECRET`).
    pub secret: Option<SecretString>,
    /// Where the server secret is read from, or written to when generated
    /// (`OTPD_SECRET_FILE`; default: `otpd.secret` beside the SQLite file).
    pub secret_file: Option<PathBuf>,
    /// Base URL clients use, for printed links (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// `pretty` (default) or `json` logs.
    pub log_format: LogFormat,
    /// Delivery providers; none means the `console` provider for every channel.
    pub providers: Vec<ProviderConfig>,
    /// Routing rules.
    pub routes: Vec<RouteConfig>,
    /// Outbox worker tuning.
    pub delivery: DeliveryConfig,
    /// HTTP server limits.
    pub http: HttpConfig,
    /// Outbound webhook settings.
    pub webhooks: WebhooksConfig,
    /// `GET /metrics`.
    pub metrics: MetricsConfig,
    /// Alert rules.
    pub alerts: AlertsConfig,
    /// `[[prices]]`: the price of one message per provider, channel and country, for the
    /// services' budgets (no row: free).
    pub prices: PriceTable,
    /// `[retention]`: how long records are kept.
    pub retention: RetentionConfig,
    /// `[dashboard]`: operator dashboard sessions.
    pub dashboard: DashboardConfig,
    /// `[tls]`: HTTPS by otpd itself, or the statement that a proxy terminates it.
    pub tls: TlsConfig,
}

/// `[tls]` (`OTPD_TLS__*`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (`OTPD_TLS__CERT_FILE`); with `key_file`, otpd serves HTTPS
    /// only, and reloads both files on SIGHUP.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (`OTPD_TLS__KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// A TLS-terminating proxy stands in front (`OTPD_TLS__TERMINATED_BY_PROXY`): plain
    /// HTTP is allowed on a non-loopback address.
    pub terminated_by_proxy: bool,
}

/// Who keeps the traffic to otpd encrypted, as decided by [`Config::edge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// otpd terminates TLS itself (`[tls] cert_file`, `key_file`).
    Otpd,
    /// A proxy in front terminates TLS; otpd serves plain HTTP behind it.
    Proxy,
    /// Plain HTTP on a loopback address (only this machine reaches it).
    PlainLoopback,
}

impl TlsMode {
    /// How `otpd config check` names it.
    pub fn describe(self) -> &'static str {
        match self {
            TlsMode::Otpd => "TLS by otpd",
            TlsMode::Proxy => "TLS by proxy (terminated_by_proxy)",
            TlsMode::PlainLoopback => "plain HTTP on loopback",
        }
    }

    /// Whether clients reach otpd over HTTPS (session cookies are then `Secure`).
    pub fn is_https(self) -> bool {
        matches!(self, TlsMode::Otpd | TlsMode::Proxy)
    }
}

/// `[retention]`: ages in days after which the periodic purge deletes records; 0 keeps
/// them forever (the default). Fractions are allowed (tests use seconds), but an age below
/// a service's send-limit or lockout window would shorten that window: keep it above an
/// hour in production.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished verifications, with their deliveries, recorded messages, send log, lockout
    /// and idempotency records.
    pub verifications_days: f64,
    /// Recorded test messages and finished deliveries.
    pub messages_days: f64,
    /// Events (the audit trail).
    pub events_days: f64,
    /// `api.request` events: calls that changed nothing else (admin changes without a
    /// domain event, refused calls of known keys). Default 30 days; 0 keeps them as long
    /// as other events.
    pub api_requests_days: f64,
    /// Guard decision records.
    pub guard_decisions_days: f64,
    /// How often the purge runs.
    pub interval_seconds: u64,
}

/// How long `api.request` events are kept by default: a month of admin calls to look back
/// on, without an unbounded table.
pub const DEFAULT_API_REQUESTS_DAYS: f64 = 30.0;

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            verifications_days: 0.0,
            messages_days: 0.0,
            events_days: 0.0,
            api_requests_days: DEFAULT_API_REQUESTS_DAYS,
            guard_decisions_days: 0.0,
            interval_seconds: 3_600,
        }
    }
}

impl RetentionConfig {
    /// The store's policy (`None` where the age is 0).
    pub fn policy(&self) -> otpd_core::store::RetentionPolicy {
        let age = |days: f64| {
            (days > 0.0).then(|| chrono::Duration::milliseconds((days * 86_400_000.0) as i64))
        };
        otpd_core::store::RetentionPolicy {
            verifications: age(self.verifications_days),
            messages: age(self.messages_days),
            events: age(self.events_days),
            api_requests: age(self.api_requests_days),
            guard_decisions: age(self.guard_decisions_days),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let days = [
            ("verifications_days", self.verifications_days),
            ("messages_days", self.messages_days),
            ("events_days", self.events_days),
            ("api_requests_days", self.api_requests_days),
            ("guard_decisions_days", self.guard_decisions_days),
        ];
        for (name, v) in days {
            if !(0.0..=36_500.0).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "retention.{name} must be 0 (keep) to 36500 days"
                )));
            }
        }
        if self.interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "retention.interval_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `[dashboard]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// How long a sign-in lasts.
    pub session_minutes: u32,
    /// otpd is reached over HTTPS through a proxy: session cookies are `Secure` (they also
    /// are whenever otpd serves TLS itself, `tls.terminated_by_proxy` is set, `public_url`
    /// is https or the proxy says `X-Forwarded-Proto: https`).
    pub behind_tls: bool,
    /// The currency of the `[[prices]]` table (ISO 4217, default `USD`), shown with spend.
    pub currency: String,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            session_minutes: 480,
            behind_tls: false,
            currency: "USD".into(),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body in bytes.
    pub body_limit_bytes: usize,
    /// A request taking longer is answered 408.
    pub request_timeout_ms: u64,
    /// Time a client has to send a request's header, counted from when otpd waits for it
    /// (HTTP/1.1: so also the pause before the next request on a kept-alive connection);
    /// the connection is closed after it.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress and no byte either way for this long is
    /// closed (HTTP/1.1 and HTTP/2 alike).
    pub idle_timeout_ms: u64,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Connections served at once; more wait in the listen queue until one closes.
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` entries are believed, as addresses or CIDRs
    /// (`["10.0.0.0/8"]`): the client is the rightmost address outside them, and the header
    /// is ignored unless the TCP peer is one of them. Empty: `trusted_proxy_hops` decides.
    pub trusted_proxies: TrustedProxies,
    /// Without `trusted_proxies`: how many proxies in front of otpd append to
    /// `X-Forwarded-For` (the client is that many entries from the right).
    pub trusted_proxy_hops: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: DEFAULT_BODY_LIMIT,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
            max_connections: 10_000,
            trusted_proxies: TrustedProxies::default(),
            trusted_proxy_hops: 1,
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), String> {
        if self.body_limit_bytes < 1024 {
            return Err("http.body_limit_bytes must be at least 1024".into());
        }
        for (name, v) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&v) {
                return Err(format!("http.{name} must be 1 ms to an hour"));
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err("http.max_connections must be 1 to 1000000".into());
        }
        if !(1..=16).contains(&self.trusted_proxy_hops) {
            return Err("http.trusted_proxy_hops must be 1 to 16".into());
        }
        Ok(())
    }
}

/// `[http] trusted_proxies`: addresses and networks of proxies in front of otpd.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(items: Vec<String>) -> Result<Self, String> {
        items
            .iter()
            .map(|item| {
                let item = item.trim();
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("http.trusted_proxies: '{item}' is not an address or CIDR")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of them (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// `[webhooks]`: the services' event webhooks (and the SSRF rule for every outbound URL).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow webhook URLs on loopback or private addresses (refused by default: SSRF).
    pub allow_private_targets: bool,
    /// Webhook messages POSTed at once.
    pub workers: usize,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long a message is retried (from its event) before it is dead-lettered.
    pub retry_window_seconds: u64,
    /// Timeout of one POST.
    pub timeout_ms: u64,
    /// How long a sender holds a message; a sender that died leaves it to another after.
    pub lease_seconds: u64,
    /// Longest sleep between queue polls when idle (new events are picked up by the poll).
    pub poll_interval_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private_targets: false,
            workers: 2,
            retry_base_ms: 5_000,
            retry_max_ms: 3_600_000,
            retry_window_seconds: 24 * 3600,
            timeout_ms: 5_000,
            lease_seconds: 60,
            poll_interval_ms: 500,
        }
    }
}

impl WebhooksConfig {
    fn validate(&self) -> Result<(), String> {
        if self.workers == 0 || self.workers > 64 {
            return Err("webhooks.workers must be 1-64".into());
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err("webhooks.retry_base_ms must be > 0 and <= retry_max_ms".into());
        }
        if self.timeout_ms == 0 || self.lease_seconds * 1000 <= self.timeout_ms {
            return Err("webhooks.lease_seconds must outlast webhooks.timeout_ms".into());
        }
        if self.poll_interval_ms == 0 {
            return Err("webhooks.poll_interval_ms must be > 0".into());
        }
        Ok(())
    }
}

/// `[metrics]`: `GET /metrics` (Prometheus / OpenMetrics text).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` (otherwise it answers 404).
    pub enabled: bool,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`
    /// (`OTPD_METRICS__BEARER_TOKEN`); unset, it is open to whoever reaches `listen`.
    pub bearer_token: Option<SecretString>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            bearer_token: None,
        }
    }
}

/// `[alerts]`: the rules that raise `alert.*` events (see `otpd_core::alerts`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// A provider delivering less than this share (percent) of its messages is alerted on.
    pub delivery_rate_percent: f64,
    /// The delivery rate's window.
    pub delivery_window_seconds: u64,
    /// Messages with a known fate needed in the window before the rate is judged.
    pub delivery_min_volume: u64,
    /// A country whose conversion falls by this share (percent) of its baseline is alerted on.
    pub conversion_drop_percent: f64,
    /// The recent window of conversion.
    pub conversion_window_seconds: u64,
    /// The baseline before it.
    pub conversion_baseline_seconds: u64,
    /// Verifications started needed in the window and the baseline.
    pub conversion_min_volume: u64,
    /// How often the rules are evaluated.
    pub evaluate_interval_seconds: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        let p = AlertPolicy::default();
        AlertsConfig {
            delivery_rate_percent: p.delivery_rate_percent,
            delivery_window_seconds: p.delivery_window.num_seconds() as u64,
            delivery_min_volume: p.delivery_min_volume,
            conversion_drop_percent: p.conversion_drop_percent,
            conversion_window_seconds: p.conversion_window.num_seconds() as u64,
            conversion_baseline_seconds: p.conversion_baseline.num_seconds() as u64,
            conversion_min_volume: p.conversion_min_volume,
            evaluate_interval_seconds: 30,
        }
    }
}

impl AlertsConfig {
    /// The rules' policy.
    pub fn policy(&self) -> AlertPolicy {
        let secs = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        AlertPolicy {
            delivery_rate_percent: self.delivery_rate_percent,
            delivery_window: secs(self.delivery_window_seconds),
            delivery_min_volume: self.delivery_min_volume,
            conversion_drop_percent: self.conversion_drop_percent,
            conversion_window: secs(self.conversion_window_seconds),
            conversion_baseline: secs(self.conversion_baseline_seconds),
            conversion_min_volume: self.conversion_min_volume,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let percent = |p: f64| (0.0..=100.0).contains(&p);
        if !percent(self.delivery_rate_percent) || !percent(self.conversion_drop_percent) {
            return Err("alerts: percentages must be 0-100".into());
        }
        let year = 366 * 24 * 3600;
        for (name, v) in [
            ("delivery_window_seconds", self.delivery_window_seconds),
            ("conversion_window_seconds", self.conversion_window_seconds),
            (
                "conversion_baseline_seconds",
                self.conversion_baseline_seconds,
            ),
            ("evaluate_interval_seconds", self.evaluate_interval_seconds),
        ] {
            if v == 0 || v > year {
                return Err(format!("alerts.{name} must be 1 s to a year"));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            database_url: DEFAULT_DATABASE_URL.into(),
            redis_url: None,
            redis_prefix: "otpd".into(),
            master_key: None,
            master_key_file: None,
            secret: None,
            secret_file: None,
            public_url: None,
            log_format: LogFormat::Pretty,
            providers: Vec::new(),
            routes: Vec::new(),
            delivery: DeliveryConfig::default(),
            http: HttpConfig::default(),
            webhooks: WebhooksConfig::default(),
            metrics: MetricsConfig::default(),
            alerts: AlertsConfig::default(),
            prices: PriceTable::default(),
            retention: RetentionConfig::default(),
            dashboard: DashboardConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or has wrong types.
    #[error("{0}")]
    Load(String),
    /// A value makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// Everything wrong with the file and the variables, each with where it was written.
    #[error("{}", problem_list(.0))]
    Problems(Vec<Problem>),
}

fn problem_list(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut out = format!("{} problems in the configuration:", many.len());
            for p in many {
                out.push_str("\n  ");
                out.push_str(&p.to_string());
            }
            out
        }
    }
}

/// Fewest characters of `OTPD_MASTER_KEY`: an admin key anyone may try against the API,
/// so at least as strong as the keys otpd mints (32 random characters).
pub const MIN_MASTER_KEY_CHARS: usize = 32;

/// Refuses a master key shorter than [`MIN_MASTER_KEY_CHARS`] (the message never shows it).
pub fn check_master_key(key: &str) -> Result<(), String> {
    if key.chars().count() < MIN_MASTER_KEY_CHARS {
        return Err(format!(
            "the master key (OTPD_MASTER_KEY or master_key_file) must be at least \
             {MIN_MASTER_KEY_CHARS} characters: `otpd keys create` mints strong keys, or use \
             e.g. `openssl rand -base64 32`"
        ));
    }
    Ok(())
}

impl Config {
    /// Loads defaults, then the TOML file (if given; it must exist), then `OTPD_*`. A key
    /// or variable otpd does not know is refused, and every problem is reported at once
    /// (see [`Problem`]).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::check(file, None, FileCheck::Here)
    }

    /// Loads like [`Config::load`], but takes the `OTPD_*` variables from environment files
    /// (later files win) instead of the process environment: the configuration a systemd
    /// unit (`EnvironmentFile=`) or a compose service (`env_file:`) would run with. What
    /// `otpd config check --env-file` checks.
    pub fn load_with_env_files(
        file: Option<&Path>,
        env_files: &[PathBuf],
    ) -> Result<Config, ConfigError> {
        Self::check(file, Some(env_files), FileCheck::Here)
    }

    /// What `otpd config check` loads: the process environment or, given `env_files`,
    /// theirs; with [`FileCheck::Elsewhere`] the files the configuration names are not
    /// looked for (a configuration meant for another machine or container).
    pub fn check(
        file: Option<&Path>,
        env_files: Option<&[PathBuf]>,
        files: FileCheck,
    ) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = match env_files {
            Some(env_files) => {
                let mut vars = Vec::new();
                for path in env_files {
                    vars.extend(read_env_file(path)?);
                }
                vars
            }
            None => std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((
                        name.into_string().ok()?,
                        value.to_string_lossy().into_owned(),
                    ))
                })
                .collect(),
        };
        problems::load(file, vars, files)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(key) = &self.master_key {
            check_master_key(key.expose_secret()).map_err(ConfigError::Invalid)?;
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid(format!("listen: '{}' is not address:port", self.listen));
        }
        match otpd_store::Backend::of_url(&self.database_url) {
            None => {
                return invalid(
                    "database_url: expected sqlite://PATH or postgres://USER@HOST/DB".into(),
                );
            }
            // Nodes sharing a database must hash and seal codes with one secret: a secret
            // generated by each node at its first start would make a code sent by one
            // node fail its check on another.
            Some(backend)
                if backend.is_shared() && self.secret.is_none() && self.secret_file.is_none() =>
            {
                return invalid(
                    "secret: with a shared (postgres://) database every node needs the same server secret: set OTPD_SECRET or OTPD_SECRET_FILE".into(),
                );
            }
            Some(_) => {}
        }
        if let Some(url) = &self.redis_url
            && !url.starts_with("redis://")
        {
            return invalid("redis_url: expected redis://[:password@]host:port[/db]".into());
        }
        if self.redis_prefix.is_empty()
            || !self
                .redis_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return invalid("redis_prefix: letters, digits, '_', '-' or '.'".into());
        }
        self.delivery.validate().map_err(ConfigError::Invalid)?;
        self.retention.validate()?;
        if !(1..=10_080).contains(&self.dashboard.session_minutes) {
            return invalid("dashboard.session_minutes must be 1 to 10080 (a week)".into());
        }
        let currency = &self.dashboard.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return invalid(format!(
                "dashboard.currency: `{currency}` is not an ISO 4217 code (three capitals: \
                 USD, EUR, GHS)"
            ));
        }
        self.webhooks.validate().map_err(ConfigError::Invalid)?;
        self.alerts.validate().map_err(ConfigError::Invalid)?;
        self.http.validate().map_err(ConfigError::Invalid)?;
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid(
                "tls: set both cert_file and key_file (OTPD_TLS__CERT_FILE, OTPD_TLS__KEY_FILE)"
                    .into(),
            );
        }
        otpd_delivery::Router::new(&self.effective_providers(), &self.routes)
            .map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The rules for where and how otpd may listen, checked by `serve` and `config check`
    /// (not by other commands, which never listen): plain HTTP beyond loopback needs a
    /// TLS-terminating proxy, and `/metrics` beyond loopback needs its token. Returns who
    /// terminates TLS.
    pub fn edge(&self) -> Result<TlsMode, ConfigError> {
        let addr: SocketAddr = self.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!("listen: '{}' is not address:port", self.listen))
        })?;
        let loopback = addr.ip().to_canonical().is_loopback();
        let mode = if self.tls.cert_file.is_some() {
            TlsMode::Otpd
        } else if self.tls.terminated_by_proxy {
            TlsMode::Proxy
        } else if loopback {
            TlsMode::PlainLoopback
        } else {
            return Err(ConfigError::Invalid(format!(
                "listen: refusing plain HTTP on {addr}, which is not a loopback address: OTP \
                 codes and API keys would cross the network in clear. Either let otpd serve \
                 HTTPS (OTPD_TLS__CERT_FILE and OTPD_TLS__KEY_FILE, or [tls] cert_file and \
                 key_file), or, if a TLS-terminating proxy stands in front, say so with \
                 OTPD_TLS__TERMINATED_BY_PROXY=true ([tls] terminated_by_proxy = true)"
            )));
        };
        if self.metrics.enabled && !loopback && self.metrics.bearer_token.is_none() {
            return Err(ConfigError::Invalid(format!(
                "metrics: /metrics would be open to anyone reaching {addr} (not a loopback \
                 address): set a scrape token with OTPD_METRICS__BEARER_TOKEN ([metrics] \
                 bearer_token; Prometheus sends it as a bearer token), or turn /metrics off \
                 with OTPD_METRICS__ENABLED=false"
            )));
        }
        Ok(mode)
    }

    /// Whether clients reach otpd over HTTPS: otpd's own TLS or a declared TLS proxy.
    pub fn is_https(&self) -> bool {
        self.tls.cert_file.is_some() || self.tls.terminated_by_proxy
    }

    /// The providers in force: the configured ones, or `console` for every channel.
    pub fn effective_providers(&self) -> Vec<ProviderConfig> {
        if !self.providers.is_empty() {
            return self.providers.clone();
        }
        vec![ProviderConfig {
            name: "console".into(),
            kind: "console".into(),
            url: None,
            channels: otpd_core::Channel::ALL.to_vec(),
            timeout_ms: 1_000,
            ..Default::default()
        }]
    }

    /// Where the generated server secret is kept.
    pub fn secret_path(&self) -> PathBuf {
        if let Some(p) = &self.secret_file {
            return p.clone();
        }
        let db = self
            .database_url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let db = db.split('?').next().unwrap_or(db);
        match Path::new(db)
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && db != ":memory:")
        {
            Some(dir) => dir.join("otpd.secret"),
            None => PathBuf::from("otpd.secret"),
        }
    }
}

/// Reads an environment file the way systemd's `EnvironmentFile=` and compose's
/// `env_file:` read the plain cases: `KEY=VALUE` lines, `#` comments and blank lines
/// skipped, an optional `export ` prefix, a value optionally in single or double quotes.
/// Errors name the file and line, never a value (values may be secrets).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let where_ = |line: usize| format!("env file {} line {line}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Load(format!("env file {}: {e}", path.display())))?;
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Load(format!(
                "{}: expected KEY=VALUE",
                where_(n + 1)
            )));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::Load(format!(
                "{}: a variable name is letters, digits and _",
                where_(n + 1)
            )));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        vars.push((key.to_string(), value.to_string()));
    }
    Ok(vars)
}

/// The configuration key an environment variable sets, as `Env::prefixed("OTPD_")
/// .split("__").ignore(&["config"])` maps it (`OTPD_DELIVERY__MAX_ATTEMPTS` →
/// `delivery.max_attempts`); `None` for other variables.
fn env_key(name: &str) -> Option<String> {
    let rest = name
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("OTPD_"))
        .map(|_| &name[5..])?;
    let key = rest.to_ascii_lowercase().replace("__", ".");
    (key != "config" && !key.split('.').any(str::is_empty)).then_some(key)
}

/// The defaults of the scalar keys, as a figment source (lists and secrets stay empty).
#[derive(Serialize)]
struct DefaultsOnly {
    listen: &'static str,
    database_url: &'static str,
}

impl Default for DefaultsOnly {
    fn default() -> Self {
        DefaultsOnly {
            listen: DEFAULT_LISTEN,
            database_url: DEFAULT_DATABASE_URL,
        }
    }
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        figment::Jail::expect_with(|_| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.listen, DEFAULT_LISTEN);
            assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
            assert_eq!(c.effective_providers()[0].kind, "console");
            assert_eq!(c.secret_path(), PathBuf::from("data/otpd.secret"));
            Ok(())
        });
    }

    #[test]
    fn env_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "otpd.toml",
                r#"
                listen = "127.0.0.1:9000"
                [[providers]]
                name = "sink"
                kind = "http"
                url = "http://127.0.0.1:9999/messages"
                channels = ["sms", "voice"]
                [delivery]
                max_attempts = 3
                "#,
            )?;
            jail.set_env("OTPD_LISTEN", "127.0.0.1:9001");
            jail.set_env("OTPD_DELIVERY__RETRY_BASE_MS", "50");
            jail.set_env("OTPD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
            jail.set_env("OTPD_WEBHOOKS__RETRY_WINDOW_SECONDS", "60");
            jail.set_env("OTPD_METRICS__BEARER_TOKEN", "scrape-token");
            jail.set_env("OTPD_CONFIG", "otpd.toml");
            let c = Config::load(Some(Path::new("otpd.toml"))).unwrap();
            assert_eq!(c.listen, "127.0.0.1:9001");
            assert_eq!(c.delivery.max_attempts, 3);
            assert_eq!(c.delivery.retry_base_ms, 50);
            assert!(c.webhooks.allow_private_targets);
            assert_eq!(c.webhooks.retry_window_seconds, 60);
            assert!(c.metrics.enabled && c.metrics.bearer_token.is_some());
            assert_eq!(c.providers[0].name, "sink");
            Ok(())
        });
    }

    #[test]
    fn dev_null_as_the_file_gives_the_built_in_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTPD_LISTEN", "127.0.0.1:9002");
            let c = Config::load(Some(Path::new("/dev/null"))).unwrap();
            assert_eq!(c.listen, "127.0.0.1:9002");
            assert_eq!(c.database_url, Config::default().database_url);
            assert!(c.providers.is_empty());
            let missing = Config::load(Some(Path::new("no-such-otpd.toml")));
            assert!(
                matches!(&missing, Err(e) if e.to_string().contains("not found")),
                "{:?}",
                missing.err()
            );
            Ok(())
        });
    }

    #[test]
    fn postgres_urls_are_accepted_with_a_shared_secret_only() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "OTPD_DATABASE_URL",
                "postgres://otpd:pw@127.0.0.1:5432/otpd",
            );
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("OTPD_SECRET"), "{e}");
            assert!(!e.contains("pw@"), "{e}");
            jail.set_env("OTPD_SECRET", "a shared secret, long enough for everyone");
            let c = Config::load(None).unwrap();
            assert!(c.database_url.starts_with("postgres://"));
            jail.set_env("OTPD_DATABASE_URL", "mysql://h/db");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("database_url"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn env_files_stand_in_for_the_process_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("otpd.toml", "listen = \"127.0.0.1:9000\"\n")?;
            jail.create_file(
                "common.env",
                "# shared by every node\n\nOTPD_LISTEN=0.0.0.0:8080\n\
                 export OTPD_DELIVERY__MAX_ATTEMPTS=\"4\"\n\
                 OTPD_METRICS__BEARER_TOKEN='scrape token'\n\
                 OTPD_CONFIG=ignored.toml\nPATH=/bin\n",
            )?;
            jail.create_file("node.env", "otpd_listen = 0.0.0.0:8081\n")?;
            // The process environment is not what the unit or container would see.
            jail.set_env("OTPD_DELIVERY__RETRY_BASE_MS", "nonsense");
            let files = [PathBuf::from("common.env"), PathBuf::from("node.env")];
            let c = Config::load_with_env_files(Some(Path::new("otpd.toml")), &files).unwrap();
            assert_eq!(c.listen, "0.0.0.0:8081", "later files win");
            assert_eq!(c.delivery.max_attempts, 4);
            assert!(c.metrics.bearer_token.is_some());
            let c = Config::load_with_env_files(None, &files[..1]).unwrap();
            assert_eq!(c.listen, "0.0.0.0:8080");

            jail.create_file(
                "bad.env",
                "OTPD_LISTEN=0.0.0.0:1\nOTPD_SECRET hunter2-secret\n",
            )?;
            let e = Config::load_with_env_files(None, &[PathBuf::from("bad.env")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("bad.env line 2"), "{e}");
            assert!(!e.contains("hunter2"), "no value in errors: {e}");
            assert!(Config::load_with_env_files(None, &[PathBuf::from("missing.env")]).is_err());
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused_with_a_clear_message() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[[providers]]\nname = \"x\"\nkind = \"http\"\n")?;
            let e = Config::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("needs url"), "{e}");
            jail.create_file("bad2.toml", "listen = \"nowhere\"\n")?;
            let e = Config::load(Some(Path::new("bad2.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("listen"), "{e}");
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn redis_is_accepted_by_url_with_a_safe_prefix() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTPD_REDIS_URL", "redis://127.0.0.1:6379/2");
            jail.set_env("OTPD_REDIS_PREFIX", "otpd-prod");
            let c = Config::load(None).unwrap();
            assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379/2"));
            assert_eq!(c.redis_prefix, "otpd-prod");
            jail.set_env("OTPD_REDIS_URL", "http://127.0.0.1:6379");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("redis_url"), "{e}");
            jail.set_env("OTPD_REDIS_URL", "redis://127.0.0.1:6379");
            jail.set_env("OTPD_REDIS_PREFIX", "a{b}");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("redis_prefix"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn plain_http_beyond_loopback_needs_tls_or_a_declared_proxy() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.edge().unwrap(), TlsMode::PlainLoopback);
            jail.set_env("OTPD_LISTEN", "[::1]:8080");
            assert_eq!(
                Config::load(None).unwrap().edge().unwrap(),
                TlsMode::PlainLoopback
            );
            jail.set_env("OTPD_LISTEN", "0.0.0.0:8080");
            jail.set_env("OTPD_METRICS__BEARER_TOKEN", "scrape-token");
            let e = Config::load(None).unwrap().edge().unwrap_err().to_string();
            assert!(e.contains("OTPD_TLS__CERT_FILE"), "{e}");
            assert!(e.contains("OTPD_TLS__TERMINATED_BY_PROXY=true"), "{e}");
            jail.set_env("OTPD_TLS__TERMINATED_BY_PROXY", "true");
            let c = Config::load(None).unwrap();
            assert_eq!(c.edge().unwrap(), TlsMode::Proxy);
            assert!(c.is_https());
            jail.create_file("cert.pem", "")?;
            jail.create_file("key.pem", "")?;
            jail.set_env("OTPD_TLS__CERT_FILE", "cert.pem");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("key_file"), "{e}");
            jail.set_env("OTPD_TLS__KEY_FILE", "key.pem");
            assert_eq!(Config::load(None).unwrap().edge().unwrap(), TlsMode::Otpd);
            Ok(())
        });
    }

    #[test]
    fn open_metrics_beyond_loopback_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTPD_LISTEN", "0.0.0.0:8080");
            jail.set_env("OTPD_TLS__TERMINATED_BY_PROXY", "true");
            let e = Config::load(None).unwrap().edge().unwrap_err().to_string();
            assert!(e.contains("OTPD_METRICS__BEARER_TOKEN"), "{e}");
            assert!(e.contains("OTPD_METRICS__ENABLED=false"), "{e}");
            jail.set_env("OTPD_METRICS__ENABLED", "false");
            assert!(Config::load(None).unwrap().edge().is_ok());
            Ok(())
        });
    }

    #[test]
    fn http_limits_and_trusted_proxies_are_read_and_checked() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.http.header_read_timeout_ms, 10_000);
            assert_eq!(c.http.idle_timeout_ms, 60_000);
            assert_eq!(c.http.max_connections, 10_000);
            assert_eq!(c.http.trusted_proxy_hops, 1);
            jail.create_file(
                "otpd.toml",
                "[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\nmax_connections = 5\n",
            )?;
            let c = Config::load(Some(Path::new("otpd.toml"))).unwrap();
            assert!(
                c.http
                    .trusted_proxies
                    .contains("10.200.0.1".parse().unwrap())
            );
            assert!(
                c.http
                    .trusted_proxies
                    .contains("192.0.2.1".parse().unwrap())
            );
            assert!(
                !c.http
                    .trusted_proxies
                    .contains("192.0.2.2".parse().unwrap())
            );
            jail.create_file("bad.toml", "[http]\ntrusted_proxies = [\"ten/8\"]\n")?;
            let e = Config::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("trusted_proxies"), "{e}");
            jail.set_env("OTPD_HTTP__IDLE_TIMEOUT_MS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("idle_timeout_ms"), "{e}");
            Ok(())
        });
    }

    // Issue 23: a misspelt key, an unknown section, a misspelt variable, a region written
    // `USA` and a `*_file` pointing nowhere were all "configuration OK".
    #[test]
    fn typos_are_refused_all_at_once_with_their_place_and_the_closest_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "otpd.toml",
                "databse_url = \"sqlite://x.db\"\n\
                 [dashbord]\n\
                 session_minutes = 5\n\
                 [[providers]]\n\
                 name = \"sink\"\n\
                 kind = \"console\"\n\
                 channel = [\"sms\"]\n\
                 [[routes]]\n\
                 channel = \"sms\"\n\
                 countries = [\"GH\", \"USA\", \"gb\"]\n\
                 providers = [\"sink\"]\n",
            )?;
            jail.set_env("OTPD_DELIVERY__MAX_ATTEMPS", "3");
            jail.set_env("OTPD_MASTER_KEY_FILE", "/nowhere/master.key");
            // Not configuration: the CLI's, the SMPP adapter's and the test tooling's.
            jail.set_env("OTPD_URL", "http://127.0.0.1:1");
            jail.set_env("OTPD_PROVIDER_SMSC_PASSWORD", "pw");
            jail.set_env("OTPD_REQUIRE_STORES", "1");
            let e = Config::load(Some(Path::new("otpd.toml"))).unwrap_err();
            let ConfigError::Problems(problems) = &e else {
                panic!("not a problem list: {e}");
            };
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let expected = [
                "otpd.toml:1:1: unknown key `databse_url`; did you mean `database_url`?",
                "otpd.toml:2:2: unknown section `dashbord`; did you mean `dashboard`?",
                "otpd.toml:7:1: unknown key `channel` in `providers[0]`; did you mean \
                 `channels`?",
                "OTPD_DELIVERY__MAX_ATTEMPS: no such configuration variable; did you mean \
                 OTPD_DELIVERY__MAX_ATTEMPTS?",
                "OTPD_MASTER_KEY_FILE: master_key_file: no file at /nowhere/master.key \
                 (checking a configuration meant for another machine? `otpd config check \
                 --skip-files`)",
                "otpd.toml:10:20: routes[0].countries[1]: `USA` is not an ISO 3166 alpha-2 \
                 region code (two capitals: `US`, `GB`, `GH`)",
                "otpd.toml:10:27: routes[0].countries[2]: `gb` is written `GB` (ISO 3166 \
                 alpha-2, capitals)",
            ];
            for want in expected {
                assert!(
                    lines.iter().any(|l| l == want),
                    "missing {want:?} in {lines:#?}"
                );
            }
            assert_eq!(lines.len(), expected.len(), "{lines:#?}");
            assert!(
                e.to_string()
                    .starts_with("7 problems in the configuration:\n  ")
            );
            // A configuration meant for another machine: its files are not looked for.
            let e = Config::check(Some(Path::new("otpd.toml")), None, FileCheck::Elsewhere)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("6 problems"), "{e}");
            assert!(!e.contains("master_key_file"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_variables_are_named_as_written() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTPD_DATABSE_URL", "sqlite://x.db");
            jail.set_env("OTPD_DASHBOARD__SESION_MINUTES", "5");
            jail.set_env("OTPD_NOTHING_LIKE_IT", "1");
            jail.set_env("OTPD___LISTEN", "1");
            let e = Config::load(None).unwrap_err().to_string();
            let lines: Vec<&str> = e.lines().map(str::trim).collect();
            for want in [
                "OTPD_DATABSE_URL: no such configuration variable; did you mean \
                 OTPD_DATABASE_URL?",
                "OTPD_DASHBOARD__SESION_MINUTES: no such configuration variable; did you \
                 mean OTPD_DASHBOARD__SESSION_MINUTES?",
                "OTPD_NOTHING_LIKE_IT: no such configuration variable",
                "OTPD___LISTEN: not a configuration variable (a nested key is written \
                 OTPD_<SECTION>__<KEY>, e.g. OTPD_DELIVERY__MAX_ATTEMPTS)",
            ] {
                assert!(lines.contains(&want), "missing {want:?} in {e}");
            }
            Ok(())
        });
    }

    #[test]
    fn wrong_types_and_bad_syntax_name_the_line_and_column() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "otpd.toml",
                "listen = \"127.0.0.1:8080\"\n[delivery]\nmax_attempts = \"three\"\n\
                 workers = 2\n[http]\nbody_limit_bytes = true\n",
            )?;
            jail.set_env("OTPD_WEBHOOKS__WORKERS", "many");
            let e = Config::load(Some(Path::new("otpd.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("otpd.toml:3:1: delivery.max_attempts: invalid type"),
                "{e}"
            );
            assert!(
                e.contains("otpd.toml:6:1: http.body_limit_bytes: invalid type"),
                "{e}"
            );
            assert!(
                e.contains("OTPD_WEBHOOKS__WORKERS: webhooks.workers: invalid type"),
                "{e}"
            );
            jail.create_file("broken.toml", "listen = \"127.0.0.1:8080\"\n[delivery\n")?;
            let e = Config::load(Some(Path::new("broken.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("broken.toml:2:"), "{e}");
            assert!(e.contains(": not valid TOML: "), "{e}");
            Ok(())
        });
    }
}
