//! Twilio-style status callbacks: when a service has a `status_callback_url`, every status
//! change of its verifications (`pending` at start, then `approved`, `canceled`, `expired`,
//! `max_attempts_reached` or `failed`) is POSTed there as a form, signed with
//! `X-Twilio-Signature` so that receivers validate it with Twilio's own
//! `RequestValidator` — next to otpd's own (Standard Webhooks) events.
//!
//! The sender tails the event log (so changes made anywhere — `/v1`, `/v2`, the expiry
//! sweeper, the delivery worker — are seen), and delivers each callback in its own task
//! with a timeout and retries with exponential backoff, through the SSRF-safe client of
//! [`crate::outbound`].
//!
//! **The signing key.** Twilio signs with the account's auth token; otpd signs with the
//! API key that started the verification, so `RequestValidator(<that key>)` validates.
//! otpd stores API keys only as digests, so that key is captured when the verification
//! starts and held **in memory only** ([`CallbackKeys`], zeroed on drop) until the
//! verification ends or expires. Consequences, on purpose: callbacks are sent by the node
//! that started the verification (every node tails the shared event log; the others skip
//! it, so each callback is sent once), and after a restart the callbacks of verifications
//! started before it are not sent (logged at debug) rather than sent unsigned or with a
//! key kept at rest. Events from before a process started are not replayed.

use std::sync::Arc;
use std::time::Duration;

use otpd_core::event::{Event, EventType};
use otpd_core::ids::Kind;
use otpd_core::store::{EventFilter, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::views::{ACCOUNT_SID, channel_name, twilio_date};
use crate::outbound;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
/// The header that carries the event's id, for receivers to drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "I-Twilio-Idempotency-Token";
/// How often the event log is read.
const POLL: Duration = Duration::from_millis(200);
/// Events read per poll.
const BATCH: u32 = 200;
/// Attempts per callback (the first included).
const MAX_ATTEMPTS: u32 = 5;
/// Backoff before the second attempt; doubled each time, capped at [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Callbacks in flight at once.
const CONCURRENCY: usize = 16;
pub use otpd_delivery::providers::twilio::signature;
pub use otpd_engine::CallbackKeys;

/// The Twilio status of an event that changes it, and whether the verification ends.
fn status_of(kind: &str) -> Option<(&'static str, bool)> {
    let kinds = [
        (EventType::Created, "pending", false),
        (EventType::Approved, "approved", true),
        (EventType::Canceled, "canceled", true),
        (EventType::Expired, "expired", true),
        (EventType::MaxAttemptsReached, "max_attempts_reached", true),
        (EventType::Failed, "failed", true),
    ];
    kinds
        .into_iter()
        .find(|(t, _, _)| t.as_str() == kind)
        .map(|(_, s, end)| (s, end))
}

/// The background sender.
pub struct CallbackSender {
    store: Arc<dyn Store>,
    keys: Arc<CallbackKeys>,
    client: reqwest::Client,
    allow_private: bool,
    slots: Arc<Semaphore>,
    clock: Arc<dyn otpd_core::clock::Clock>,
}

impl CallbackSender {
    /// A sender over the event log of `store`, signing with `keys`.
    pub fn new(store: Arc<dyn Store>, keys: Arc<CallbackKeys>, allow_private: bool) -> Self {
        CallbackSender {
            store,
            keys,
            client: outbound::client(allow_private),
            allow_private,
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
            clock: Arc::new(otpd_core::clock::SystemClock),
        }
    }

    /// Decides by `clock` instead of the system clock (tests move it by hand).
    pub fn with_clock(mut self, clock: Arc<dyn otpd_core::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Tails the event log from now until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let started = self.clock.now();
        let mut after: Option<i64> = None;
        while !stop.is_cancelled() {
            let filter = EventFilter {
                after_seq: after,
                since: after.is_none().then_some(started),
                limit: BATCH,
                ..EventFilter::default()
            };
            match self.store.list_events(&filter).await {
                Ok(events) => {
                    for e in &events {
                        after = Some(e.seq);
                        self.dispatch(e).await;
                    }
                    if events.len() as u32 == BATCH {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "status callbacks: event log unavailable"),
            }
            self.keys.sweep(self.clock.now());
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Sends the callback an event calls for, if its service asks for callbacks.
    async fn dispatch(&self, e: &Event) {
        let Some((status, ends)) = status_of(&e.kind) else {
            return;
        };
        let Some(vid) = e.verification_id.as_deref() else {
            return;
        };
        let key = self.keys.get(vid);
        if ends {
            self.keys.forget(vid);
        }
        // Only the node that started a verification of a service with a callback URL holds
        // its signing key: everywhere else there is nothing to send, and nothing is read
        // (every node tails the event log, so this spares the store a read per event).
        let Some(key) = key else {
            tracing::trace!(
                verification_id = vid,
                status,
                "no status callback from this process: it holds no signing key for this verification (none asked for, started on another node, or before a restart)"
            );
            return;
        };
        let v = match self.store.get_verification(vid).await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, verification_id = vid, "status callback skipped: store unavailable");
                return;
            }
        };
        let url = match self.store.find_service(&v.service_id).await {
            Ok(Some(s)) => s.settings.status_callback_url,
            _ => None,
        };
        let Some(url) = url else { return };
        if outbound::check_target(&url, self.allow_private).is_err() {
            tracing::warn!(
                verification_id = vid,
                "status callback not sent: the target is refused (private address)"
            );
            return;
        }
        let params: Vec<(String, String)> = [
            ("AccountSid", ACCOUNT_SID.to_string()),
            ("ServiceSid", Kind::Service.sid_of(&v.service_id)),
            ("VerificationSid", Kind::Verification.sid_of(&v.id)),
            ("To", v.to.clone()),
            ("Channel", channel_name(v.channel).to_string()),
            ("Status", status.to_string()),
            ("DateCreated", twilio_date(v.created_at)),
            ("DateUpdated", twilio_date(e.created_at)),
            ("SendCodeAttempts", v.deliveries.len().to_string()),
            ("EventSid", Kind::Event.sid_of(&e.id)),
            ("EventType", e.kind.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let sig = signature(&key, &url, &params);
        drop(key);
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let client = self.client.clone();
        let event_id = e.id.clone();
        let vid = vid.to_string();
        tokio::spawn(async move {
            let _permit = permit;
            deliver(&client, &url, &params, &sig, &event_id, &vid, status).await;
        });
    }
}

/// POSTs one callback, retrying transient failures with exponential backoff.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    params: &[(String, String)],
    sig: &str,
    event_id: &str,
    verification_id: &str,
    status: &str,
) {
    let mut delay = BACKOFF_BASE;
    for attempt in 1..=MAX_ATTEMPTS {
        let sent = client
            .post(url)
            .header(SIGNATURE_HEADER, sig)
            .header(IDEMPOTENCY_HEADER, event_id)
            .form(params)
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(verification_id, status, "status callback delivered");
                return;
            }
            Ok(r) => {
                let s = r.status();
                s.is_server_error()
                    || s == reqwest::StatusCode::REQUEST_TIMEOUT
                    || s == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            Err(_) => true,
        };
        if !retry || attempt == MAX_ATTEMPTS {
            tracing::warn!(
                verification_id,
                status,
                attempt,
                "status callback failed; giving up"
            );
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Vectors computed with the official twilio-python 9.13.0
    /// `RequestValidator(token).compute_signature(url, params)`.
    #[test]
    fn signatures_match_the_official_request_validator() {
        let params = pairs(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ServiceSid", "VA0190f2a3b4c5d6e7f8091a2b3c4d5e6f"),
            ("VerificationSid", "VE0190f2a3b4c5d6e7f8091a2b3c4d5e70"),
            ("To", "+14155550123"),
            ("Channel", "sms"),
            ("Status", "approved"),
        ]);
        assert_eq!(
            signature(
                "otpd_live_8hN2xQk1cTzR4mVb7LpW3sYd9FjG6aHe",
                "https://hooks.example.com/otp/status?tenant=42",
                &params
            ),
            "HUJBCOzes0iWHcSmpjKvPQVA154="
        );
        let call = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &call
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn order_of_parameters_does_not_matter() {
        let a = pairs(&[("B", "2"), ("A", "1")]);
        let b = pairs(&[("A", "1"), ("B", "2")]);
        assert_eq!(
            signature("k", "https://x/", &a),
            signature("k", "https://x/", &b)
        );
    }

    #[test]
    fn events_that_change_the_twilio_status() {
        assert_eq!(status_of("verification.approved"), Some(("approved", true)));
        assert_eq!(status_of("verification.created"), Some(("pending", false)));
        assert_eq!(status_of("verification.resent"), None);
    }
}
