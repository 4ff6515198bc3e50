//! The dashboard's factor panel: what authenticator apps and passkeys did in the window,
//! counted from the event log (the one log every kind of check writes to), so sign-ins
//! beside sent codes show where the operator already looks.

use chrono::{DateTime, Utc};
use otpd_core::event::EventType;
use otpd_core::store::{EventFilter, Store, StoreResult};
use serde::Serialize;
use utoipa::ToSchema;

/// Events counted per kind, at most (a busier window reads as this many, `capped`).
const MAX_COUNTED: u32 = 1_000;

/// The kinds counted, with the factor and the outcome they show.
const KINDS: [(EventType, &str, &str); 6] = [
    (EventType::PasskeyRegistered, "passkey", "registered"),
    (EventType::PasskeyAuthenticated, "passkey", "signed in"),
    (EventType::PasskeyFailed, "passkey", "failed"),
    (EventType::FactorVerified, "authenticator app", "registered"),
    (EventType::FactorApproved, "authenticator app", "signed in"),
    (EventType::FactorCheckFailed, "authenticator app", "failed"),
];

/// One row: a factor kind's outcome and how often it happened in the window.
#[derive(Serialize, ToSchema)]
pub struct FactorActivity {
    /// `passkey` or `authenticator app`.
    pub factor: &'static str,
    /// `registered`, `signed in` or `failed`.
    pub outcome: &'static str,
    /// The event type counted (`passkey.authenticated`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// How many in the window.
    pub count: u64,
    /// The count reached its cap (there were at least this many).
    pub capped: bool,
}

/// The factor activity between `since` and `now`, every row listed (zeros too).
pub async fn activity(
    store: &dyn Store,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<FactorActivity>> {
    let mut rows = Vec::with_capacity(KINDS.len());
    for (kind, factor, outcome) in KINDS {
        let n = store
            .list_events(&EventFilter {
                kind: Some(kind.as_str().into()),
                since: Some(since),
                until: Some(now),
                limit: MAX_COUNTED,
                ..EventFilter::default()
            })
            .await?
            .len() as u64;
        rows.push(FactorActivity {
            factor,
            outcome,
            kind: kind.as_str(),
            count: n,
            capped: n >= u64::from(MAX_COUNTED),
        });
    }
    Ok(rows)
}
