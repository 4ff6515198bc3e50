//! Shared harness for otpd's end-to-end tests.
//!
//! Every test runs the real `otpd` binary as a child process against its own temporary
//! directory (config file, SQLite database, current directory), and talks to it over HTTP
//! exactly as an integrator would, following the public contract in `API.md`.
//!
//! The pieces:
//!
//! - [`TestDir`]: a temporary directory plus a random master key. It outlives the server
//!   processes started in it, so a test can kill a server and start another one on the same
//!   database with the same key.
//! - [`Sink`]: a small axum server inside the test process that plays the SMS gateway for
//!   otpd's generic `http` provider. It records every POST it receives together with the
//!   status it answered, and can be switched to answer 500 for a while.
//! - [`Config`]: the TOML configuration the harness writes (one `http` provider pointing at
//!   the sink, plus a tunable `[delivery]` section).
//! - [`OtpdProcess`]: a running `otpd serve`; it collects all of the child's output, parses
//!   the base URL from the ready line, and offers HTTP helpers returning a [`Reply`].
//!
//! Delivery is asynchronous (an outbox worker), so tests always poll the sink with
//! [`Sink::wait_for`] and friends, never assume a message has already arrived.

// Each test file compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod stores;

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
pub use reqwest::Method;
use serde_json::{Value, json};

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time to wait for a message to reach the sink.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of every HTTP request the harness makes to otpd.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval at which the harness polls (sink records, process output, process exit).
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The marker otpd prints on stdout once it accepts connections.
const READY_MARKER: &str = "otpd listening on ";

// ---------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the data that
/// explains the panic).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Returns `n_bytes` random bytes from the OS, hex-encoded (`2 * n_bytes` characters).
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read random bytes from /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts the OTP code from a message body.
///
/// The default template is "Your {service} verification code is {code}. It expires in
/// {minutes} minutes. …", so the body holds other digit runs too (the minutes); the code is
/// the run of 4–10 digits right after `code is `. Voice scripts read the code digit by
/// digit (`code is: 4, 8, 1, 5, 1, 6.`): the digits are gathered across `, `.
pub fn extract_code(body: &str) -> Option<String> {
    let start = body.find("code is")? + "code is".len();
    let rest = body[start..].trim_start_matches([':', ' ']);
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == ' ')
        .filter(char::is_ascii_digit)
        .collect();
    (4..=10).contains(&digits.len()).then_some(digits)
}

/// A code of the same length as `code` that differs from it in every digit.
pub fn wrong_code(code: &str) -> String {
    code.chars()
        .map(|c| {
            let d = c.to_digit(10).expect("codes are made of digits");
            char::from_digit((d + 1) % 10, 10).expect("a digit")
        })
        .collect()
}

/// Removes ANSI escape sequences (colours) from a line of process output.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether `needle` occurs in `haystack` as a run of ASCII digits delimited on both sides by
/// a non-digit byte or the start/end of the data (the byte-level equivalent of the regex
/// `(?-u:[^0-9])NEEDLE(?-u:[^0-9])`, slightly stricter at the edges).
pub fn contains_delimited_digits(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() || haystack.len() < needle.len() {
        return false;
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .any(|(i, window)| {
            window == needle
                && (i == 0 || !haystack[i - 1].is_ascii_digit())
                && haystack
                    .get(i + needle.len())
                    .is_none_or(|b| !b.is_ascii_digit())
        })
}

/// Whether `needle` occurs anywhere in `haystack`, byte for byte.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Test directory
// ---------------------------------------------------------------------------------------

/// A temporary directory holding one otpd installation (config, database) and the master
/// key its servers run with. Create it first and keep it alive for the whole test: servers
/// started with [`OtpdProcess::start`] borrow it only while starting.
pub struct TestDir {
    dir: tempfile::TempDir,
    master_key: String,
}

impl TestDir {
    /// Creates a fresh directory and a random master key `otpd_live_<32 hex>`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("otpd-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        Self {
            dir,
            master_key: format!("otpd_live_{}", random_hex(16)),
        }
    }

    /// The directory itself (also the servers' current directory).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the harness writes `otpd.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("otpd.toml")
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("otpd.db")
    }

    /// The `OTPD_DATABASE_URL` the servers get.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    /// The admin key passed as `OTPD_MASTER_KEY`.
    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    /// The raw bytes of every SQLite file of the database that exists: `otpd.db` and its
    /// `-wal`, `-shm` and `-journal` companions.
    pub fn database_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| self.path().join(format!("otpd.db{suffix}")))
            .filter(|path| path.exists())
            .map(|path| {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                (path, bytes)
            })
            .collect()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// The sink (fake SMS gateway)
// ---------------------------------------------------------------------------------------

/// One POST received by the sink.
#[derive(Clone, Debug)]
pub struct SinkRecord {
    /// The JSON body (or, if it was not JSON, the body as a JSON string).
    pub body: Value,
    /// The HTTP status the sink answered with.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

impl SinkRecord {
    /// Whether the sink accepted this message (answered 2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The message's `to` field.
    pub fn to(&self) -> Option<&str> {
        self.body.get("to").and_then(Value::as_str)
    }

    /// The message's `verification_id` field.
    pub fn verification_id(&self) -> Option<&str> {
        self.body.get("verification_id").and_then(Value::as_str)
    }

    /// The code found in the message's `body` field.
    pub fn code(&self) -> Option<String> {
        self.body
            .get("body")
            .and_then(Value::as_str)
            .and_then(extract_code)
    }
}

#[derive(Debug)]
struct SinkState {
    records: Mutex<Vec<SinkRecord>>,
    status: AtomicU16,
    reply: Mutex<Value>,
}

/// A fake message gateway for otpd's `http` provider, listening on `127.0.0.1:0` inside the
/// test process. It answers `200 {}` unless switched with [`Sink::set_status`].
pub struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    task: tokio::task::JoinHandle<()>,
}

/// The sink's only route: record the message, answer with the current status.
async fn sink_receive(
    State(state): State<Arc<SinkState>>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let status = state.status.load(Ordering::SeqCst);
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    lock(&state.records).push(SinkRecord {
        body,
        status,
        at: Instant::now(),
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(lock(&state.reply).clone()))
}

/// `GET /messages`: the bodies of the accepted messages so far, for test programs outside
/// this process (the SDK suites read their codes here).
async fn sink_list(State(state): State<Arc<SinkState>>) -> Json<Value> {
    let accepted: Vec<Value> = lock(&state.records)
        .iter()
        .filter(|r| r.accepted())
        .map(|r| r.body.clone())
        .collect();
    Json(Value::Array(accepted))
}

impl Sink {
    /// Starts the sink on an ephemeral loopback port (in the current tokio runtime).
    pub async fn start() -> Self {
        let state = Arc::new(SinkState {
            records: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            reply: Mutex::new(json!({})),
        });
        let app = Router::new()
            .route("/messages", post(sink_receive).get(sink_list))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink listener");
        let addr = listener.local_addr().expect("sink local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("sink server");
        });
        Self { addr, state, task }
    }

    /// The URL to configure as the provider's `url`.
    pub fn url(&self) -> String {
        format!("http://{}/messages", self.addr)
    }

    /// Makes the sink answer every following message with `status` (e.g. 500 to simulate
    /// an outage, 200 to recover).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Makes the sink answer with this JSON body (e.g. `{"status": "delivered"}`, a
    /// synchronous delivery receipt).
    pub fn set_reply(&self, body: Value) {
        *lock(&self.state.reply) = body;
    }

    /// Every POST received so far, accepted or not, in arrival order.
    pub fn attempts(&self) -> Vec<SinkRecord> {
        lock(&self.state.records).clone()
    }

    /// The records the sink accepted (answered 2xx).
    pub fn accepted(&self) -> Vec<SinkRecord> {
        self.attempts()
            .into_iter()
            .filter(SinkRecord::accepted)
            .collect()
    }

    /// The bodies of the accepted messages.
    pub fn messages(&self) -> Vec<Value> {
        self.accepted().into_iter().map(|r| r.body).collect()
    }

    /// The bodies of the accepted messages sent to `to`.
    pub fn messages_to(&self, to: &str) -> Vec<Value> {
        self.accepted()
            .into_iter()
            .filter(|r| r.to() == Some(to))
            .map(|r| r.body)
            .collect()
    }

    /// The codes of the accepted messages sent to `to`, in arrival order.
    pub fn codes_for(&self, to: &str) -> Vec<String> {
        self.accepted()
            .into_iter()
            .filter(|r| r.to() == Some(to))
            .filter_map(|r| r.code())
            .collect()
    }

    /// Waits until at least `count` accepted records satisfy `pred`, and returns them.
    /// Panics after `timeout`, describing what was awaited and everything received.
    pub async fn wait_for_matching(
        &self,
        what: &str,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&SinkRecord) -> bool,
    ) -> Vec<SinkRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let matching: Vec<SinkRecord> =
                self.accepted().into_iter().filter(|r| pred(r)).collect();
            if matching.len() >= count {
                return matching;
            }
            if Instant::now() >= deadline {
                panic!(
                    "sink: waited {timeout:?} for {count} accepted message(s) {what}, got {}; \
                     all records: {:#?}",
                    matching.len(),
                    self.attempts()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the sink has accepted at least `count` messages in total; returns their
    /// bodies.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for_matching("(any)", count, timeout, |_| true)
            .await
            .into_iter()
            .map(|r| r.body)
            .collect()
    }

    /// Waits until at least `count` messages to `to` were accepted; returns their bodies.
    pub async fn wait_for_to(&self, to: &str, count: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for_matching(&format!("to {to}"), count, timeout, |r| r.to() == Some(to))
            .await
            .into_iter()
            .map(|r| r.body)
            .collect()
    }

    /// Waits for the first accepted message to `to` and returns the code it carries.
    pub async fn code_for(&self, to: &str) -> String {
        let bodies = self.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
        let text = bodies[0]["body"]
            .as_str()
            .unwrap_or_else(|| panic!("sink message without a string `body`: {}", bodies[0]));
        extract_code(text).unwrap_or_else(|| panic!("no code in message body {text:?}"))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// HTTP replies
// ---------------------------------------------------------------------------------------

/// A reply from otpd, fully read: status, headers, raw text and the body parsed as JSON
/// (`Value::Null` when empty or not JSON).
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} ({}) {}",
            self.status,
            self.content_type(),
            self.text
        )
    }
}

impl Reply {
    /// Reads a whole response.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the reply body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` header (empty when absent).
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// A top-level string field of the JSON body; panics (showing the reply) if missing.
    pub fn str(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("reply has no string field {field:?}: {self:?}"))
    }

    /// The `id` field.
    pub fn id(&self) -> String {
        self.str("id").to_owned()
    }

    /// The problem `code` field, if any.
    pub fn problem_code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    /// Asserts the status, showing `context` and the whole reply on failure.
    #[track_caller]
    pub fn assert_status(&self, status: u16, context: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "{context}: unexpected status; reply: {self:?}"
        );
        self
    }

    /// Asserts a 2xx status.
    #[track_caller]
    pub fn assert_success(&self, context: &str) -> &Self {
        assert!(
            (200..300).contains(&self.status),
            "{context}: expected a 2xx reply, got {self:?}"
        );
        self
    }

    /// Asserts the reply is an `application/problem+json` error (never a 5xx) carrying the
    /// RFC 9457 members and one of the `codes`.
    #[track_caller]
    pub fn assert_problem_in(&self, status: u16, codes: &[&str], context: &str) -> &Self {
        assert!(
            self.status < 500,
            "{context}: server error on bad input: {self:?}"
        );
        self.assert_status(status, context);
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "{context}: expected application/problem+json, got {self:?}"
        );
        for member in ["type", "title", "detail", "code"] {
            assert!(
                self.body.get(member).is_some_and(Value::is_string),
                "{context}: problem without string member {member:?}: {self:?}"
            );
        }
        assert_eq!(
            self.body.get("status").and_then(Value::as_u64),
            Some(u64::from(status)),
            "{context}: problem `status` member differs from the HTTP status: {self:?}"
        );
        let code = self.problem_code().unwrap_or_default();
        assert!(
            codes.contains(&code),
            "{context}: expected problem code in {codes:?}, got {code:?}: {self:?}"
        );
        self
    }

    /// [`Reply::assert_problem_in`] with a single expected code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str, context: &str) -> &Self {
        self.assert_problem_in(status, &[code], context)
    }
}

/// Sends a request and reads the whole [`Reply`]: `builder.reply().await`.
pub trait SendReply {
    /// Sends the request; panics if otpd cannot be reached at all.
    fn reply(self) -> impl Future<Output = Reply> + Send;
}

impl SendReply for reqwest::RequestBuilder {
    async fn reply(self) -> Reply {
        let response = self.send().await.expect("send the HTTP request to otpd");
        Reply::read(response).await
    }
}

// ---------------------------------------------------------------------------------------
// The otpd process
// ---------------------------------------------------------------------------------------

/// A running `otpd serve` child process. Dropping it kills the process (and, when the test
/// is failing, prints the tail of the server's output to help debugging).
pub struct OtpdProcess {
    child: Child,
    base_url: String,
    master_key: String,
    output: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

/// Forwards the lines of a child's stream into the shared output buffer, prefixed with the
/// stream's name (`stdout| `, `stderr| `), ANSI colours removed.
fn forward_lines(
    stream: impl Read + Send + 'static,
    name: &'static str,
    out: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = strip_ansi(line.trim_end_matches(['\n', '\r']));
                    lock(&out).push(format!("{name}| {line}"));
                }
            }
        }
    });
}

/// Finds the base URL in a stdout line `otpd listening on http://127.0.0.1:PORT` (or
/// `https://…` when otpd serves TLS itself).
pub fn parse_ready_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix("stdout| ")?;
    let start = rest.find(READY_MARKER)? + READY_MARKER.len();
    let url: String = rest[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ','))
        .collect();
    (url.starts_with("http://") || url.starts_with("https://"))
        .then(|| url.trim_end_matches('/').to_owned())
}

impl OtpdProcess {
    /// Writes `config` into `dir`, starts `otpd serve` there and waits (up to
    /// [`READY_TIMEOUT`]) for its ready line. Panics, with the server's output, if it exits
    /// or stays silent.
    pub async fn start(dir: &TestDir, config: &Config) -> Self {
        Self::start_with_env(dir, config, &[]).await
    }

    /// [`OtpdProcess::start`] with more environment variables (they win over the
    /// harness's own, e.g. `RUST_LOG`).
    pub async fn start_with_env(dir: &TestDir, config: &Config, env: &[(&str, &str)]) -> Self {
        std::fs::write(dir.config_path(), config.to_toml()).expect("write otpd.toml");
        let mut command = Command::new(env!("CARGO_BIN_EXE_otpd"));
        command
            .arg("serve")
            .arg("--config")
            .arg(dir.config_path())
            .current_dir(dir.path())
            // Nothing from the developer's environment may leak into the test server.
            .env_remove("OTPD_CONFIG")
            .env_remove("OTPD_REDIS_URL")
            .env_remove("OTPD_REDIS_PREFIX")
            .env_remove("OTPD_SECRET")
            .env("OTPD_LISTEN", "127.0.0.1:0")
            .env("OTPD_DATABASE_URL", dir.database_url())
            .env("OTPD_MASTER_KEY", dir.master_key())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        // `OTPD_E2E_REDIS_URL` runs every end-to-end test with Redis in front, under a key
        // prefix of the test's directory (a restarted server finds its Redis state again).
        if let Ok(url) = std::env::var("OTPD_E2E_REDIS_URL") {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            dir.path().hash(&mut h);
            command
                .env("OTPD_REDIS_URL", url)
                .env("OTPD_REDIS_PREFIX", format!("otpde2e{:016x}", h.finish()));
        }
        command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the otpd binary");

        let output = Arc::new(Mutex::new(Vec::new()));
        forward_lines(
            child.stdout.take().expect("piped stdout"),
            "stdout",
            Arc::clone(&output),
        );
        forward_lines(
            child.stderr.take().expect("piped stderr"),
            "stderr",
            Arc::clone(&output),
        );

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("build the HTTP client");

        let deadline = Instant::now() + READY_TIMEOUT;
        let base_url = loop {
            if let Some(url) = lock(&output).iter().find_map(|l| parse_ready_line(l)) {
                break url;
            }
            if let Some(status) = child.try_wait().expect("poll the otpd process") {
                // Give the reader threads a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "otpd exited ({status}) before it was ready; output:\n{}",
                    lock(&output).join("\n")
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "otpd printed no `{READY_MARKER}http://…` line within {READY_TIMEOUT:?}; \
                     output:\n{}",
                    lock(&output).join("\n")
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };

        Self {
            child,
            base_url,
            master_key: dir.master_key().to_owned(),
            output,
            client,
        }
    }

    /// The server's base URL, e.g. `http://127.0.0.1:40123` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The master (admin) key this server was started with.
    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line the process printed so far, prefixed `stdout| ` or `stderr| `.
    pub fn output(&self) -> Vec<String> {
        lock(&self.output).clone()
    }

    /// Whether any output line contains `needle`.
    pub fn output_contains(&self, needle: &str) -> bool {
        lock(&self.output).iter().any(|l| l.contains(needle))
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_hard(&mut self) {
        // On Unix, `Child::kill` sends SIGKILL.
        self.child.kill().expect("SIGKILL otpd");
        self.child.wait().expect("reap otpd");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run `kill -TERM`");
        assert!(
            status.success(),
            "`kill -TERM {}` failed: {status}",
            self.pid()
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the otpd process") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Graceful stop: SIGTERM, then wait up to [`SHUTDOWN_TIMEOUT`] for the exit. Panics
    /// (after a SIGKILL) if the process does not exit in time; returns its exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        self.terminate();
        match self.wait_exit(SHUTDOWN_TIMEOUT).await {
            Some(status) => status,
            None => {
                self.kill_hard();
                panic!(
                    "otpd did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; output:\n{}",
                    self.output().join("\n")
                );
            }
        }
    }

    // -- HTTP --------------------------------------------------------------------------

    /// The HTTP client (cheap to clone, e.g. into spawned tasks).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request authenticated with the master key; finish it with `.json(..)` and
    /// [`SendReply::reply`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(self.master_key(), method, path)
    }

    /// A request authenticated with `key`.
    pub fn request_as(&self, key: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.anonymous(method, path).bearer_auth(key)
    }

    /// A request without `Authorization`.
    pub fn anonymous(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// `GET path` as admin.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path).reply().await
    }

    /// `GET path` with `key`.
    pub async fn get_as(&self, key: &str, path: &str) -> Reply {
        self.request_as(key, Method::GET, path).reply().await
    }

    /// `POST path` with a JSON body, as admin.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::POST, path).json(body).reply().await
    }

    /// `POST path` with a JSON body and `key`.
    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> Reply {
        self.request_as(key, Method::POST, path)
            .json(body)
            .reply()
            .await
    }

    /// `POST path` with a raw body and content type, as admin.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Reply {
        self.request(Method::POST, path)
            .header("content-type", content_type)
            .body(body.into())
            .reply()
            .await
    }

    /// `POST /v1/verifications` as admin.
    pub async fn send(&self, body: &Value) -> Reply {
        self.post("/v1/verifications", body).await
    }

    /// `POST /v1/verifications` as admin; asserts 201.
    pub async fn send_ok(&self, body: &Value) -> Reply {
        let reply = self.send(body).await;
        reply.assert_status(201, &format!("send {body}"));
        reply
    }

    /// `POST /v1/verifications/check` as admin.
    pub async fn check(&self, body: &Value) -> Reply {
        self.post("/v1/verifications/check", body).await
    }

    /// `GET /v1/verifications/{id}` as admin; asserts 200.
    pub async fn verification(&self, id: &str) -> Reply {
        let reply = self.get(&format!("/v1/verifications/{id}")).await;
        reply.assert_status(200, &format!("GET verification {id}"));
        reply
    }

    /// Creates an API key (`POST /v1/keys`) and returns the whole 201 reply.
    pub async fn create_key_reply(&self, name: &str, role: &str, test: bool) -> Reply {
        let reply = self
            .post(
                "/v1/keys",
                &json!({"name": name, "role": role, "test": test}),
            )
            .await;
        reply.assert_status(201, &format!("create key {name}"));
        reply
    }

    /// Creates an API key and returns its secret string (`otpd_live_…` / `otpd_test_…`).
    pub async fn create_key(&self, name: &str, role: &str, test: bool) -> String {
        self.create_key_reply(name, role, test)
            .await
            .str("key")
            .to_owned()
    }

    /// `POST /v1/receipts/sink` with `body` and the sink's receipt token.
    pub fn sink_receipt(&self, body: &Value) -> reqwest::RequestBuilder {
        self.anonymous(Method::POST, "/v1/receipts/sink")
            .bearer_auth(SINK_RECEIPT_TOKEN)
            .json(body)
    }

    /// Creates a service (`POST /v1/services`); asserts 201 and returns the service object.
    pub async fn create_service(&self, body: &Value) -> Value {
        let reply = self.post("/v1/services", body).await;
        reply.assert_status(201, &format!("create service {body}"));
        reply.body
    }
}

impl Drop for OtpdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let output = self.output();
            let tail = &output[output.len().saturating_sub(200)..];
            eprintln!(
                "---- otpd output ({} lines, last {} shown) ----\n{}\n---- end of otpd output ----",
                output.len(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Convenience
// ---------------------------------------------------------------------------------------

/// Starts a sink and an otpd server using it with the standard configuration. Returns them
/// with the directory, which must outlive the server.
pub async fn start_with_sink() -> (TestDir, Sink, OtpdProcess) {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    (dir, sink, otpd)
}

// ---------------------------------------------------------------------------------------
// Python peers (packages pinned in tests/requirements-test.txt)
// ---------------------------------------------------------------------------------------

/// The Python named by `OTPD_PY` if it can import every one of `modules`; otherwise
/// prints "skipped: …" and returns `None` — or fails when `OTPD_REQUIRE_PEERS=1` (as in
/// `.ci/run`).
pub fn python_with(modules: &[&str]) -> Option<String> {
    let required = std::env::var("OTPD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "OTPD_REQUIRE_PEERS=1 but {why}");
        println!("skipped: {why}; set OTPD_PY to a python with tests/requirements-test.txt");
        None
    };
    let Ok(py) = std::env::var("OTPD_PY") else {
        return skip("OTPD_PY is not set".into());
    };
    for module in modules {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return skip(format!("OTPD_PY has no {module}"));
        }
    }
    Some(py)
}

/// The path of a script in `tests/peers/`.
pub fn peer_script(name: &str) -> String {
    format!("{}/tests/peers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python peer process: started with a script and arguments, ready once it prints
/// `READY`, then read one JSON line at a time. Killed when dropped.
pub struct PythonPeer {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

impl PythonPeer {
    /// Starts `py script args…` and waits for its `READY` line.
    pub async fn start(py: &str, script: &str, args: &[&str]) -> PythonPeer {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(py)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the python peer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .expect("the peer is ready in time")
            .expect("read the peer's output")
            .expect("a line from the peer");
        assert_eq!(ready, "READY", "{script}");
        PythonPeer {
            lines,
            _child: child,
        }
    }

    /// The next JSON line, or `None` if none comes within `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .ok()?
            .expect("read the peer's output")?;
        Some(serde_json::from_str(&line).expect("a JSON line from the peer"))
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `GET /v1/verifications/{id}` until `pred` holds (15 s at most); returns the body.
pub async fn wait_verification(
    otpd: &OtpdProcess,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = otpd.verification(id).await;
        if pred(&v.body) {
            return v.body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            v.body
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
