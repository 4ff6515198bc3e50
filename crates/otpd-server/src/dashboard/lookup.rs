//! Finding a verification from the dashboard (by number, address or id) and reading its
//! timeline: created → failed on one provider → sent via another → wrong code → approved,
//! with times, providers and guard decisions. Numbers are normalised server-side and
//! always shown masked.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use otpd_core::mask::mask_recipient;
use otpd_core::recipient::{EmailAddress, PhoneNumber, UNKNOWN_COUNTRY};
use otpd_core::store::{DeliveryFilter, EventFilter};
use otpd_core::verification::Verification;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::session::Operator;
use crate::api::views::timestamp;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// Most verifications a search returns (the latest).
const MAX_FOUND: usize = 20;
/// Most events and guard decisions read for one timeline.
const MAX_ENTRIES: u32 = 500;

/// What to look for.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A phone number in international form (`+14155550123`), an email address, or a
    /// verification id (`ver_…`).
    pub q: String,
}

/// A verification found (recipient masked).
#[derive(Serialize, ToSchema)]
pub struct FoundView {
    /// `ver_…`
    pub id: String,
    /// Service name.
    pub service: String,
    /// Masked recipient.
    pub to: String,
    /// The recipient's ISO 3166 region (`ZZ`: unknown, e.g. email).
    pub country: String,
    /// Current channel.
    pub channel: String,
    /// Current status.
    pub status: String,
    /// Created.
    pub created_at: String,
}

/// One step of a verification's life.
#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    /// When.
    pub at: String,
    /// The event type (`verification.delivery_failed`, …) or `guard.decision`.
    pub kind: String,
    /// The provider concerned, if any.
    pub provider: Option<String>,
    /// What happened, in words.
    pub text: String,
}

/// A verification and its timeline, oldest first.
#[derive(Serialize, ToSchema)]
pub struct TimelineView {
    /// The verification.
    pub verification: FoundView,
    /// What happened to it.
    pub entries: Vec<TimelineEntry>,
}

fn found(v: &Verification, now: DateTime<Utc>) -> FoundView {
    FoundView {
        id: v.id.clone(),
        service: v.service_name.clone(),
        to: mask_recipient(&v.to),
        country: otpd_telemetry::region_of(&v.to).unwrap_or_else(|| UNKNOWN_COUNTRY.into()),
        channel: v.channel.as_str().to_owned(),
        status: v.status_at(now).as_str().to_owned(),
        created_at: timestamp(v.created_at),
    }
}

/// The recipient as stored, from what the operator typed.
fn normalise(q: &str) -> Option<String> {
    if q.contains('@') {
        return EmailAddress::parse(q).ok().map(|e| e.as_str().to_owned());
    }
    PhoneNumber::parse_possible(q, None)
        .ok()
        .map(|p| p.e164().to_owned())
}

/// Finds verifications by number, address or id.
#[utoipa::path(
    get, path = "/v1/stats/verifications", tag = "operations",
    params(SearchQuery),
    responses(
        (status = 200, description = "The latest matching verifications (at most 20), recipients masked", body = [FoundView]),
        (status = 400, description = "Neither a number, an address nor an id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No admin key and no dashboard session", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    _operator: Operator,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<FoundView>>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let q = q.q.trim();
    let now = state.clock.now();
    if q.starts_with("ver_") {
        let v = state.store.get_verification(q).await?;
        return Ok(Json(v.iter().map(|v| found(v, now)).collect()));
    }
    let Some(to) = normalise(q) else {
        return Err(ApiError::invalid(format!(
            "'{}' is not a phone number in international form (+14155550123), an email \
             address or a verification id (ver_…)",
            q.chars().take(40).collect::<String>()
        )));
    };
    let deliveries = state
        .store
        .list_deliveries(&DeliveryFilter {
            to: Some(to),
            limit: 200,
            ..DeliveryFilter::default()
        })
        .await?;
    let mut ids: Vec<(DateTime<Utc>, String)> = Vec::new();
    for d in deliveries {
        if !ids.iter().any(|(_, id)| id == &d.verification_id) {
            ids.push((d.delivery.created_at, d.verification_id));
        }
    }
    ids.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut out = Vec::new();
    for (_, id) in ids.into_iter().take(MAX_FOUND) {
        if let Some(v) = state.store.get_verification(&id).await? {
            out.push(found(&v, now));
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(Json(out))
}

/// A verification's timeline: its events and the guard decisions about it.
#[utoipa::path(
    get, path = "/v1/stats/verifications/{id}", tag = "operations",
    params(("id" = String, Path, description = "`ver_…`")),
    responses(
        (status = 200, description = "The verification and what happened to it, oldest first", body = TimelineView),
        (status = 401, description = "No admin key and no dashboard session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such verification", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn timeline(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<TimelineView>> {
    let now = state.clock.now();
    let Some(v) = state.store.get_verification(&id).await? else {
        return Err(ApiError::not_found("verification"));
    };
    let events = state
        .store
        .list_events(&EventFilter {
            verification_id: Some(id.clone()),
            limit: MAX_ENTRIES,
            ..EventFilter::default()
        })
        .await?;
    let mut entries: Vec<(DateTime<Utc>, TimelineEntry)> = events
        .iter()
        .map(|e| {
            let provider = e.data["provider"].as_str().map(str::to_owned);
            (
                e.created_at,
                TimelineEntry {
                    at: timestamp(e.created_at),
                    kind: e.kind.clone(),
                    text: event_text(&e.kind, &e.data),
                    provider,
                },
            )
        })
        .collect();
    let decisions = state
        .store
        .list_decisions(&v.service_id, MAX_ENTRIES)
        .await?;
    for d in decisions
        .iter()
        .filter(|d| d.record.verification_id.as_deref() == Some(id.as_str()))
    {
        let r = &d.record;
        let mut text = format!(
            "{} {} by the guards",
            r.action.as_str(),
            if r.allowed { "allowed" } else { "refused" }
        );
        if let Some(b) = &r.blocked {
            text.push_str(&format!(": {} ({})", b.guard.as_str(), b.reason));
        }
        if !r.shadow.is_empty() {
            let would: Vec<String> = r
                .shadow
                .iter()
                .map(|s| format!("{} ({})", s.guard.as_str(), s.reason))
                .collect();
            text.push_str(&format!(
                "; in shadow mode would refuse: {}",
                would.join(", ")
            ));
        }
        entries.push((
            d.created_at,
            TimelineEntry {
                at: timestamp(d.created_at),
                kind: "guard.decision".into(),
                provider: None,
                text,
            },
        ));
    }
    // A decision precedes the event it let through at the same instant.
    entries.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| (b.1.kind == "guard.decision").cmp(&(a.1.kind == "guard.decision")))
    });
    Ok(Json(TimelineView {
        verification: found(&v, now),
        entries: entries.into_iter().map(|(_, e)| e).collect(),
    }))
}

/// One event of a verification, in words.
fn event_text(kind: &str, data: &Value) -> String {
    let s = |k: &str| data[k].as_str().unwrap_or("?").to_owned();
    let error = data["error"].as_str().unwrap_or("").to_owned();
    match kind {
        "verification.created" => format!("created, to be sent by {}", s("channel")),
        "verification.delivery_sent" if data["test"] == true => {
            "recorded for a test key (never sent)".into()
        }
        "verification.delivery_sent" => format!("sent via {}", s("provider")),
        "verification.delivered" => format!("delivered by {}", s("provider")),
        "verification.delivery_failed" if data["receipt_timeout"] == true => format!(
            "no delivery receipt from {} in time; on to {}",
            s("provider"),
            data["next_provider"].as_str().unwrap_or("the next channel")
        ),
        "verification.delivery_failed" if data["receipt"] == true => {
            format!("{} reported the message undelivered", s("provider"))
        }
        "verification.delivery_failed"
            if error.ends_with(otpd_core::event::SKIPPED_FOR_OPEN_CIRCUIT) =>
        {
            format!("skipped {}: its circuit is open", s("provider"))
        }
        "verification.delivery_failed" => format!(
            "failed on {}: {error}{}",
            s("provider"),
            if data["final"] == true {
                ""
            } else {
                " (tried again or on the next provider)"
            }
        ),
        "verification.approved" => "approved: the right code".into(),
        "verification.check_failed" => match data["check_attempts"].as_u64() {
            Some(n) => format!("wrong code (check {n})"),
            None => "wrong code".into(),
        },
        "verification.expired" => "expired unused".into(),
        "verification.canceled" => "canceled by the application".into(),
        "verification.max_attempts_reached" => "no attempts left".into(),
        "verification.blocked" => format!("blocked by {}: {}", s("guard"), s("reason")),
        "verification.resent" => format!("resend requested (by {})", s("channel")),
        "verification.failed" => "no delivery was possible: failed".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_delivery_story_reads_in_words() {
        let story = [
            ("verification.created", json!({"channel": "sms"})),
            (
                "verification.delivery_failed",
                json!({"provider": "a", "error": "a: HTTP 503 (after 1 attempts)", "final": false}),
            ),
            (
                "verification.delivery_failed",
                json!({"provider": "a", "error": "a: circuit open, skipped", "final": false}),
            ),
            ("verification.delivery_sent", json!({"provider": "b"})),
            ("verification.check_failed", json!({"check_attempts": 1})),
            ("verification.approved", json!({})),
        ];
        let texts: Vec<String> = story.iter().map(|(k, d)| event_text(k, d)).collect();
        assert_eq!(
            texts,
            [
                "created, to be sent by sms",
                "failed on a: a: HTTP 503 (after 1 attempts) (tried again or on the next provider)",
                "skipped a: its circuit is open",
                "sent via b",
                "wrong code (check 1)",
                "approved: the right code",
            ]
        );
        assert_eq!(
            normalise("+1 415 555 0123").as_deref(),
            Some("+14155550123")
        );
        assert_eq!(
            normalise("Ann@Example.COM").as_deref(),
            Some("Ann@example.com")
        );
        assert_eq!(normalise("nonsense"), None);
    }
}
