//! A local message sink for otpd's generic `http` provider: accepts every POST with
//! `200 {"status": "delivered"}` (a synchronous receipt, so no message waits for one: in a
//! drain longer than the receipt timeout, missing receipts would count against the
//! provider's circuit and fail the rest), counts the messages and the distinct verification ids, and reports on
//! `GET /stats` how many arrived and when the first and the last did (for the delivery
//! drain rate).
//!
//! Usage: `sink [--listen 127.0.0.1:0]`; prints `sink listening on http://ADDR`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};

/// Command line.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[derive(Default)]
struct Counts {
    messages: u64,
    verifications: HashSet<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Sink {
    started: Instant,
    counts: Mutex<Counts>,
}

async fn receive(State(sink): State<Arc<Sink>>, body: Bytes) -> Json<Value> {
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("verification_id")?.as_str().map(String::from));
    let now = Instant::now();
    let mut c = sink.counts.lock().unwrap_or_else(|e| e.into_inner());
    c.messages += 1;
    if let Some(id) = id {
        c.verifications.insert(id);
    }
    c.first.get_or_insert(now);
    c.last = Some(now);
    Json(json!({"status": "delivered"}))
}

async fn stats(State(sink): State<Arc<Sink>>) -> Json<Value> {
    let c = sink.counts.lock().unwrap_or_else(|e| e.into_inner());
    let ms = |t: Option<Instant>| t.map(|t| t.duration_since(sink.started).as_secs_f64() * 1e3);
    Json(json!({
        "messages": c.messages,
        "verifications": c.verifications.len(),
        "first_ms": ms(c.first),
        "last_ms": ms(c.last),
        "now_ms": sink.started.elapsed().as_secs_f64() * 1e3,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sink = Arc::new(Sink {
        started: Instant::now(),
        counts: Mutex::new(Counts::default()),
    });
    let app = Router::new()
        .route("/messages", post(receive))
        .route("/stats", get(stats))
        .with_state(sink);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("sink listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
