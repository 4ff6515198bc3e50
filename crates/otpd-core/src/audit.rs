//! The audit context: who caused a change (the API key), in which request (its id), for
//! which end user (the IP address), and how many events the change has written.
//!
//! The HTTP layer makes a [`WriteContext`] for each request; authentication and the
//! guards fill in what they learn ([`WriteContext::set_key_id`],
//! [`WriteContext::set_client_ip`]); it is passed, explicitly, through the engine to every
//! store method that appends an event, and the store writes its actor with the event and
//! counts it. Work that no request caused (the delivery worker, retention purges, alerts)
//! passes [`WriteContext::system`]: its events have no actor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// Who acted, as recorded with an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The API key's id (`key_…`, or `master` for the configured master key).
    pub key_id: Option<String>,
    /// The request's id (the `x-request-id` header).
    pub request_id: Option<String>,
    /// The end user's IP: `client_ip` as the application gave it, else the address the
    /// request came from.
    pub client_ip: Option<String>,
}

/// The context of a change: its [`Actor`] and a count of the events written under it.
///
/// Clones share one context (a request's handlers, the engine and the stores all see the
/// key id once authentication set it, and all count into the same total).
#[derive(Clone, Debug, Default)]
pub struct WriteContext(Arc<Shared>);

/// What the clones of a [`WriteContext`] share.
#[derive(Debug, Default)]
struct Shared {
    actor: Mutex<Actor>,
    events: AtomicU64,
}

impl WriteContext {
    /// The context of a request acting as `actor`.
    pub fn new(actor: Actor) -> Self {
        WriteContext(Arc::new(Shared {
            actor: Mutex::new(actor),
            events: AtomicU64::new(0),
        }))
    }

    /// The context of work no request caused (workers, purges): events with no actor.
    pub fn system() -> Self {
        Self::default()
    }

    /// The actor, as known so far.
    pub fn actor(&self) -> Actor {
        self.lock().clone()
    }

    /// Records the authenticated key.
    pub fn set_key_id(&self, key_id: &str) {
        self.lock().key_id = Some(key_id.to_string());
    }

    /// Records the end user's IP as resolved for the guards.
    pub fn set_client_ip(&self, ip: &str) {
        self.lock().client_ip = Some(ip.to_string());
    }

    /// Counts an event written under this context (stores call it as they append one).
    pub fn note_event(&self) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Events written so far under this context.
    pub fn events_written(&self) -> u64 {
        self.0.events.load(Ordering::Relaxed)
    }

    /// The actor, locked (a poisoned lock still holds a whole `Actor`).
    fn lock(&self) -> MutexGuard<'_, Actor> {
        self.0.actor.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_actor_and_the_count() {
        let ctx = WriteContext::new(Actor {
            request_id: Some("req-1".into()),
            client_ip: Some("192.0.2.1".into()),
            ..Actor::default()
        });
        let seen_by_store = ctx.clone();
        ctx.set_key_id("key_1");
        ctx.set_client_ip("198.51.100.7");
        seen_by_store.note_event();
        assert_eq!(ctx.events_written(), 1);
        let seen = seen_by_store.actor();
        assert_eq!(seen.key_id.as_deref(), Some("key_1"));
        assert_eq!(seen.request_id.as_deref(), Some("req-1"));
        assert_eq!(seen.client_ip.as_deref(), Some("198.51.100.7"));
    }

    #[test]
    fn a_system_context_has_no_actor() {
        let ctx = WriteContext::system();
        assert_eq!(ctx.actor(), Actor::default());
        assert_eq!(ctx.events_written(), 0);
    }
}
