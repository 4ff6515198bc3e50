//! The sink (fake SMS gateway) (part of the end-to-end harness; see the module docs of `common`).

use super::*;

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
pub struct SinkState {
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
pub async fn sink_receive(
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
pub async fn sink_list(State(state): State<Arc<SinkState>>) -> Json<Value> {
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

    /// Waits until a POST satisfying `pred` has arrived, accepted or not, and returns it.
    /// Panics after `timeout`, describing what was awaited and everything received.
    pub async fn wait_for_attempt(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&SinkRecord) -> bool,
    ) -> SinkRecord {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.attempts().into_iter().find(|r| pred(r)) {
                return r;
            }
            if Instant::now() >= deadline {
                panic!(
                    "sink: waited {timeout:?} for an attempt {what}; all records: {:#?}",
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
