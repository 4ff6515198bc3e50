//! The otpd process (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// A running `otpd serve` child process. Dropping it kills the process (and, when the test
/// is failing, prints the tail of the server's output to help debugging).
pub struct OtpdProcess {
    child: Child,
    base_url: String,
    master_key: String,
    output: Arc<Mutex<Vec<String>>>,
    /// The threads forwarding stdout and stderr (finished once both streams closed).
    readers: Vec<std::thread::JoinHandle<()>>,
    client: reqwest::Client,
}

/// Forwards the lines of a child's stream into the shared output buffer, prefixed with the
/// stream's name (`stdout| `, `stderr| `), ANSI colours removed. The thread ends when the
/// stream closes.
pub fn forward_lines(
    stream: impl Read + Send + 'static,
    name: &'static str,
    out: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
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
    })
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
        Self::spawn(dir, Some(&dir.config_path()), env).await
    }

    /// Starts `otpd serve` in `dir` with no `--config`: the configuration file is whatever
    /// `env` names as `OTPD_CONFIG` (none: the built-in defaults, with the `console`
    /// provider). The harness's listen address, database and master key still apply.
    pub async fn start_without_config_file(dir: &TestDir, env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, None, env).await
    }

    async fn spawn(dir: &TestDir, config_path: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_otpd"));
        command.arg("serve");
        if let Some(path) = config_path {
            command.arg("--config").arg(path);
        }
        command
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
        let readers = vec![
            forward_lines(
                child.stdout.take().expect("piped stdout"),
                "stdout",
                Arc::clone(&output),
            ),
            forward_lines(
                child.stderr.take().expect("piped stderr"),
                "stderr",
                Arc::clone(&output),
            ),
        ];

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
            readers,
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

    /// Waits up to `timeout` for an output line containing `needle`; panics (with the
    /// output) if none comes. Returns the first such line.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_output_matching(needle, timeout, |l| l.contains(needle))
            .await
    }

    /// Waits up to `timeout` for an output line satisfying `pred` (`what` describes it in
    /// the panic message); returns the first such line.
    pub async fn wait_for_output_matching(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.output).iter().find(|l| pred(l)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no output line {what:?} within {timeout:?}; output:\n{}",
                self.output().join("\n")
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// After the process exited: waits (up to [`SHUTDOWN_TIMEOUT`]) until both of its
    /// output streams are read to their end, so [`OtpdProcess::output`] holds every line
    /// it printed.
    pub async fn wait_output_closed(&self) {
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while !self.readers.iter().all(|r| r.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "otpd's output streams stayed open"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
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

    /// `otpd_outbox_depth` from `/metrics`: delivery jobs queued, due or not, including
    /// those a worker holds right now (a job leaves the queue only once its attempt is
    /// recorded, after the provider answered).
    pub async fn outbox_depth(&self) -> u64 {
        let reply = self.anonymous(Method::GET, "/metrics").reply().await;
        reply.assert_status(200, "GET /metrics");
        reply
            .text
            .lines()
            .find_map(|l| l.strip_prefix("otpd_outbox_depth "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("no otpd_outbox_depth sample in /metrics:\n{}", reply.text))
    }

    /// Waits (up to [`DELIVERY_TIMEOUT`]) until no delivery job is queued or in a worker's
    /// hands: every message otpd was going to hand to a provider has then been handed
    /// over (or given up). Only a delivery still waiting for a receipt may yet fail over
    /// to another provider; a test relying on this has no such next hop, or checks it.
    pub async fn wait_outbox_empty(&self) {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let depth = self.outbox_depth().await;
            if depth == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{depth} delivery job(s) still queued after {DELIVERY_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
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
