//! The audit context: who caused a change (the API key), in which request (its id), for
//! which end user (the IP address).
//!
//! The HTTP layer opens a context for each request ([`scope`]); authentication and the
//! guards fill in what they learn ([`set_key_id`], [`set_client_ip`]); the stores read it
//! ([`current`]) when they append an event, so every event written while serving a request
//! carries its actor without threading a parameter through every store call. Work that no
//! request caused (the delivery worker, retention purges) runs outside any context: its
//! events have no actor.

use std::cell::RefCell;
use std::future::Future;

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

/// A request's audit context: its actor, and how many events it has written.
#[derive(Debug, Default)]
struct Context {
    actor: Actor,
    events: u32,
}

tokio::task_local! {
    static CURRENT: RefCell<Context>;
}

/// Runs `fut` with `actor` as its audit context.
pub async fn scope<F: Future>(actor: Actor, fut: F) -> F::Output {
    CURRENT
        .scope(RefCell::new(Context { actor, events: 0 }), fut)
        .await
}

/// The actor of the request being served, if any.
pub fn current() -> Option<Actor> {
    CURRENT.try_with(|c| c.borrow().actor.clone()).ok()
}

/// Records the authenticated key (no-op outside a request).
pub fn set_key_id(key_id: &str) {
    let _ = CURRENT.try_with(|c| c.borrow_mut().actor.key_id = Some(key_id.to_string()));
}

/// Records the end user's IP as resolved for the guards (no-op outside a request).
pub fn set_client_ip(ip: &str) {
    let _ = CURRENT.try_with(|c| c.borrow_mut().actor.client_ip = Some(ip.to_string()));
}

/// Counts an event written for the current request (stores call it as they append one).
pub fn note_event() {
    let _ = CURRENT.try_with(|c| c.borrow_mut().events += 1);
}

/// Events written so far for the current request (0 outside a request).
pub fn events_written() -> u32 {
    CURRENT.try_with(|c| c.borrow().events).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn context_is_seen_inside_its_scope_only() {
        assert_eq!(current(), None);
        set_key_id("key_ignored");
        let actor = Actor {
            request_id: Some("req-1".into()),
            client_ip: Some("192.0.2.1".into()),
            ..Actor::default()
        };
        let seen = scope(actor, async {
            set_key_id("key_1");
            set_client_ip("198.51.100.7");
            note_event();
            assert_eq!(events_written(), 1);
            current()
        })
        .await
        .unwrap();
        assert_eq!(seen.key_id.as_deref(), Some("key_1"));
        assert_eq!(seen.request_id.as_deref(), Some("req-1"));
        assert_eq!(seen.client_ip.as_deref(), Some("198.51.100.7"));
        assert_eq!(current(), None);
    }
}
