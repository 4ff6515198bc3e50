//! The SMSC message ids of first segments submitted lately. A fast SMSC can send a
//! delivery receipt before the worker has recorded the message id in the store (the
//! record is written once `send` returns); a receipt naming one of these ids that finds
//! no delivery yet is tried again shortly instead of being dropped.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How many ids are remembered (the oldest are forgotten first).
pub const CAPACITY: usize = 65_536;

/// A bounded set of recent ids.
#[derive(Debug, Default)]
pub struct RecentIds {
    inner: Mutex<(VecDeque<String>, HashSet<String>)>,
}

impl RecentIds {
    /// Remembers `id`.
    pub fn insert(&self, id: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (order, set) = &mut *guard;
        if set.insert(id.to_string()) {
            order.push_back(id.to_string());
            if order.len() > CAPACITY
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }

    /// Whether `id` was submitted lately.
    pub fn contains(&self, id: &str) -> bool {
        let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_ids_up_to_capacity() {
        let r = RecentIds::default();
        for i in 0..CAPACITY + 10 {
            r.insert(&i.to_string());
        }
        assert!(!r.contains("0") && !r.contains("9"));
        assert!(r.contains("10") && r.contains(&(CAPACITY + 9).to_string()));
        r.insert("10");
        assert!(r.contains("10"));
    }
}
