//! Test support for the paid-API adapters: a local stand-in of a provider's API that
//! records every request exactly as the provider would receive it (method, path, headers,
//! raw body) and answers with a reply the test sets (a documented success or error).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use otpd_core::channel::Channel;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::provider::OutboundMessage;

/// One request as the fake API received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// Path (no query).
    pub path: String,
    /// Every header.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
}

impl Seen {
    /// A header as text (empty when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// The body as form pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The parts of a `multipart/form-data` body, in order: `(name, file name, content
    /// type, bytes)` (empty when the body is not multipart).
    pub async fn multipart(&self) -> Vec<Part> {
        let Ok(boundary) = multer::parse_boundary(self.header("content-type")) else {
            return Vec::new();
        };
        let body = self.body.clone();
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut form = multer::Multipart::new(stream, boundary);
        let mut parts = Vec::new();
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(|m| m.to_string());
            let bytes = field.bytes().await.unwrap_or_default();
            parts.push(Part {
                name,
                file_name,
                content_type,
                bytes,
            });
        }
        parts
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One part of a multipart body.
#[derive(Clone, Debug)]
pub struct Part {
    /// The form field's name.
    pub name: String,
    /// The file name, for a file part.
    pub file_name: Option<String>,
    /// The part's content type, when given.
    pub content_type: Option<String>,
    /// The part's bytes.
    pub bytes: Bytes,
}

/// A running fake provider API.
#[derive(Clone)]
pub struct FakeApi {
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<(u16, Value)>>,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
}

async fn record(
    State(fake): State<FakeApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    fake.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    let (status, body) = fake.reply.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
}

impl FakeApi {
    /// Starts the fake on a free loopback port, answering `status` with `body`.
    pub async fn start(status: u16, body: Value) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeApi {
            seen: Arc::default(),
            reply: Arc::new(Mutex::new((status, body))),
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new().fallback(record).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Answers every following request with `status` and `body`.
    pub fn reply(&self, status: u16, body: Value) {
        *self.reply.lock().unwrap() = (status, body);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The latest request.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("a request reached the fake API")
    }
}

/// A message as the worker hands it over (`dlv_1` of `ver_1`).
pub fn message(channel: Channel, to: &str, body: &str, locale: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "dlv_1".into(),
        verification_id: "ver_1".into(),
        to: to.into(),
        channel,
        subject: None,
        body: Zeroizing::new(body.into()),
        html: None,
        code: Zeroizing::new("123456".into()),
        locale: locale.into(),
        receipt_wait: std::time::Duration::from_secs(60),
        call_script: None,
        messaging_service_sid: None,
    }
}

/// Form pairs from `(&str, &str)` literals, for comparing with [`Seen::form`].
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
