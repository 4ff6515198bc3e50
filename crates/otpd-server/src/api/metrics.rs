//! `GET /metrics` (Prometheus, OpenMetrics text) and the layer that times every HTTP
//! request by its route template.
//!
//! `/metrics` is open to whoever reaches the listen address (loopback by default) unless
//! `metrics.bearer_token` is set; it never shows a number, an id or a secret, only counts
//! by channel, provider, country code, outcome and route.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use otpd_telemetry::{QueueGauges, Telemetry};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorCode, Problem};
use crate::state::AppState;

/// Every circuit state, for the `otpd_circuit_state` state set.
const CIRCUIT_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// Whether the request carries the configured scrape token (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(token.as_bytes()))
        .into()
}

/// Seconds since `t`, or 0.
fn age_secs(t: Option<chrono::DateTime<chrono::Utc>>, now: chrono::DateTime<chrono::Utc>) -> f64 {
    t.map_or(0.0, |t| {
        ((now - t).num_milliseconds().max(0) as f64) / 1000.0
    })
}

/// Metrics for Prometheus.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    description = "Counters, gauges and histograms in the OpenMetrics text format (Prometheus \
        scrapes it as is). Open unless `metrics.bearer_token` is configured, then \
        `Authorization: Bearer <token>` is required. docs/operations.md lists every metric.",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "A scrape token is configured and was not given", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Metrics are disabled (`metrics.enabled = false`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let config = &state.config.metrics;
    if !config.enabled {
        return ApiError::not_found("metrics (disabled)").into_response();
    }
    if let Some(token) = &config.bearer_token
        && !authorized(&headers, token.expose_secret())
    {
        return ApiError::new(
            ErrorCode::Unauthorized,
            "a valid metrics bearer token is required",
        )
        .into_response();
    }
    let now = state.clock.now();
    let mut gauges = QueueGauges::default();
    match state.store.outbox_stats().await {
        Ok(q) => {
            gauges.outbox_depth = q.depth;
            gauges.outbox_oldest_age_secs = age_secs(q.oldest, now);
            state.telemetry.set_store_up(true);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: outbox size unavailable");
            state.telemetry.set_store_up(false);
        }
    }
    match state.store.webhook_stats().await {
        Ok((q, dead)) => {
            gauges.webhook_depth = q.depth;
            gauges.webhook_oldest_age_secs = age_secs(q.oldest, now);
            gauges.webhook_dead = dead;
        }
        Err(e) => tracing::warn!(error = %e, "metrics: webhook queue size unavailable"),
    }
    state.telemetry.set_queues(gauges);
    let circuits = state.router.breakers().states(Instant::now());
    state.telemetry.set_circuits(
        circuits.iter().map(|(p, s)| (p.as_str(), s.as_str())),
        &CIRCUIT_STATES,
    );
    (
        [(header::CONTENT_TYPE, otpd_telemetry::CONTENT_TYPE)],
        state.telemetry.encode(),
    )
        .into_response()
}

/// Times a request and counts it under its route template (`/v1/verifications/{id}`;
/// `unmatched` for requests no route took), method and status class.
pub async fn track(
    State(telemetry): State<Arc<Telemetry>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    telemetry.http_request(
        method.as_str(),
        route.as_deref(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
