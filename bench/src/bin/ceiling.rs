//! The same-run ceiling: a bare axum server on otpd's two hot routes that reads the body,
//! parses it with serde into otpd's own request types (`StartBody`, `CheckBody`), and
//! answers a small JSON object. No auth, no store, no logging: what any handler on this
//! stack costs at least, measured by the same load tool in the same run, so otpd's
//! figures can be given as ratios to it.
//!
//! Usage: `ceiling [--listen 127.0.0.1:0]`; prints `ceiling listening on http://ADDR`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use otpd_server::api::verifications::{CheckBody, StartBody};
use serde_json::{Value, json};

/// Command line.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

/// `POST /v1/verifications`: parse a start body, answer 201.
async fn start(body: Bytes) -> (StatusCode, Json<Value>) {
    match serde_json::from_slice::<StartBody>(&body) {
        Ok(b) => (
            StatusCode::CREATED,
            Json(json!({"id": "ver_ceiling", "to": b.to, "status": "pending"})),
        ),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": "invalid_request"})),
        ),
    }
}

/// `POST /v1/verifications/check`: parse a check body, answer 200.
async fn check(body: Bytes) -> (StatusCode, Json<Value>) {
    match serde_json::from_slice::<CheckBody>(&body) {
        Ok(b) => (
            StatusCode::OK,
            Json(json!({"id": b.id, "status": "pending", "valid": false})),
        ),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": "invalid_request"})),
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Router::new()
        .route("/v1/verifications", post(start))
        .route("/v1/verifications/check", post(check));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("ceiling listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
