//! The body of a webhook message: `{"type", "timestamp", "data"}` (Standard Webhooks).
//!
//! For an event about a verification, `data` is the verification as
//! `GET /v1/verifications/{id}` shows it when the message is sent, plus the event's own
//! `details` (provider, error, reason, …). For any other event (a factor, a provider's
//! circuit, a budget, an alert) `data` is the event's data, with the service's name
//! when the event belongs to one.

use chrono::{DateTime, Utc};
use otpd_core::event::Event;
use otpd_core::service::Service;
use otpd_core::store::{StoreResult, VerificationStore};
use serde_json::{Map, Value, json};

use crate::api::views::{VerificationView, timestamp};

/// The JSON body for `event`, sent to `service`'s endpoint at `now`.
pub async fn body(
    store: &dyn VerificationStore,
    event: &Event,
    service: &Service,
    now: DateTime<Utc>,
) -> StoreResult<Vec<u8>> {
    let verification = match &event.verification_id {
        Some(id) => store.get_verification(id).await?,
        None => None,
    };
    let data = match verification {
        Some(v) => {
            let mut data = as_object(serde_json::to_value(VerificationView::of(&v, now)));
            data.insert("details".into(), event.data.clone());
            data
        }
        None => {
            let mut data = as_object(Ok(event.data.clone()));
            if let Some(id) = &event.verification_id {
                data.entry("verification_id").or_insert(json!(id));
            }
            if event.service_id.is_some() {
                data.entry("service").or_insert(json!(service.name));
            }
            data
        }
    };
    let body = json!({
        "type": event.kind,
        "timestamp": timestamp(event.created_at),
        "data": data,
    });
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

/// A JSON object from a value (a non-object becomes `{"value": …}`).
fn as_object(value: Result<Value, serde_json::Error>) -> Map<String, Value> {
    match value {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("value".to_string(), other)]),
        Err(_) => Map::new(),
    }
}
