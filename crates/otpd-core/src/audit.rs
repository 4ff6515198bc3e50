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

tokio::task_local! {
    static CURRENT: RefCell<Actor>;
}

/// Runs `fut` with `actor` as its audit context.
pub async fn scope<F: Future>(actor: Actor, fut: F) -> F::Output {
    CURRENT.scope(RefCell::new(actor), fut).await
}

/// The actor of the request being served, if any.
pub fn current() -> Option<Actor> {
    CURRENT.try_with(|a| a.borrow().clone()).ok()
}

/// Records the authenticated key (no-op outside a request).
pub fn set_key_id(key_id: &str) {
    let _ = CURRENT.try_with(|a| a.borrow_mut().key_id = Some(key_id.to_string()));
}

/// Records the end user's IP as resolved for the guards (no-op outside a request).
pub fn set_client_ip(ip: &str) {
    let _ = CURRENT.try_with(|a| a.borrow_mut().client_ip = Some(ip.to_string()));
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
