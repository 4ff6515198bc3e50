//! Keys that sign a verification's status callbacks (Twilio's `X-Twilio-Signature` is
//! keyed by the API key that started it), held **in memory only**, zeroed on drop, until
//! the verification ends or expires. The engine remembers a key when a send is accepted;
//! the callback sender in `otpd-server` reads it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

/// A signing key is kept this long past its verification's expiry (the expiry event comes
/// from the sweeper within seconds).
const KEY_GRACE: chrono::Duration = chrono::Duration::minutes(2);
/// Most signing keys held at once (bounds memory; beyond it new ones are not kept).
const MAX_KEYS: usize = 200_000;

/// A held key and the time after which it is dropped.
type HeldKey = (Zeroizing<String>, DateTime<Utc>);

/// Signing keys by verification id, in memory only.
#[derive(Default)]
pub struct CallbackKeys {
    keys: Mutex<HashMap<String, HeldKey>>,
}

impl CallbackKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HeldKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `key` to sign the callbacks of `verification_id` until it ends.
    pub fn remember(
        &self,
        verification_id: &str,
        key: Zeroizing<String>,
        expires_at: DateTime<Utc>,
    ) {
        let mut keys = self.lock();
        if keys.len() >= MAX_KEYS && !keys.contains_key(verification_id) {
            tracing::warn!(
                "too many status-callback signing keys held; this verification's callbacks will not be sent"
            );
            return;
        }
        keys.insert(verification_id.to_string(), (key, expires_at + KEY_GRACE));
    }

    /// The key of a verification, if held.
    pub fn get(&self, verification_id: &str) -> Option<Zeroizing<String>> {
        self.lock().get(verification_id).map(|(k, _)| k.clone())
    }

    /// Drops the key of a verification.
    pub fn forget(&self, verification_id: &str) {
        self.lock().remove(verification_id);
    }

    /// Drops the keys held past their time.
    pub fn sweep(&self, now: DateTime<Utc>) {
        self.lock().retain(|_, (_, until)| *until > now);
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_held_until_forgotten_or_past_expiry() {
        let keys = CallbackKeys::new();
        let now = Utc::now();
        keys.remember("ver_1", Zeroizing::new("k1".into()), now);
        keys.remember(
            "ver_2",
            Zeroizing::new("k2".into()),
            now - chrono::Duration::hours(1),
        );
        keys.sweep(now);
        assert_eq!(keys.get("ver_1").as_deref().map(String::as_str), Some("k1"));
        assert!(keys.get("ver_2").is_none());
        keys.forget("ver_1");
        assert!(keys.is_empty());
    }
}
