//! A short-lived cache of the two lookups nearly every API request makes before its real
//! work: the API key by its digest, and the service by name, id or SID.
//!
//! Both are read far more often than they change, and on SQLite each was a read
//! transaction on a cold page cache (a reader's cache is dropped whenever another
//! connection commits), on PostgreSQL a round trip. A store keeps one [`Lookups`] and:
//! - answers a lookup from it while the entry is younger than [`FRESH_FOR`];
//! - forgets every entry of a kind when this process changes a record of that kind (so a
//!   key revoked or a service changed through this process is seen at once);
//! - never remembers a miss (a key or service created anywhere is found at once).
//!
//! A change made by another process (`otpd keys revoke` beside a running server, or
//! another node) is seen within [`FRESH_FOR`].
//!
//! [`Fresh`], the map behind it, also keeps the Redis store's service names and lockout
//! policies.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use otpd_core::apikey::ApiKey;
use otpd_core::service::Service;
use otpd_core::store::StoreResult;

/// How long a looked-up record is answered from memory.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

/// Entries kept per kind at most; a full map starts over (no caller can grow it without
/// bound: only found records are kept).
const MAX_ENTRIES: usize = 4096;

/// The cached lookups of one store.
pub(crate) struct Lookups {
    /// Live API keys by digest.
    pub(crate) keys: Fresh<Vec<u8>, ApiKey>,
    /// Services by the name, id or SID they were looked up by.
    pub(crate) services: Fresh<String, Service>,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            keys: Fresh::new(FRESH_FOR),
            services: Fresh::new(FRESH_FOR),
        }
    }
}

/// Records by lookup key, each answered for a fixed time after it was read.
pub(crate) struct Fresh<K, V> {
    inner: Mutex<Entries<K, V>>,
    /// How long an entry is answered from memory.
    fresh_for: Duration,
}

struct Entries<K, V> {
    map: HashMap<K, (Instant, V)>,
    /// Bumped by every [`Fresh::forget_all`]: a load that started before it does not
    /// store what it read (it may predate the change).
    generation: u64,
}

impl<K: Hash + Eq, V: Clone> Fresh<K, V> {
    /// An empty cache whose entries are answered for `fresh_for`.
    pub(crate) fn new(fresh_for: Duration) -> Self {
        Fresh {
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                generation: 0,
            }),
            fresh_for,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record for `key`: from memory while fresh, else from `load` (remembered when
    /// found and nothing was forgotten meanwhile).
    pub(crate) async fn get_or_load<Q, Fut>(
        &self,
        key: &Q,
        load: impl FnOnce() -> Fut,
    ) -> StoreResult<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        Fut: Future<Output = StoreResult<Option<V>>>,
    {
        let generation = {
            let entries = self.entries();
            if let Some((at, value)) = entries.map.get(key)
                && at.elapsed() < self.fresh_for
            {
                return Ok(Some(value.clone()));
            }
            entries.generation
        };
        let found = load().await?;
        if let Some(value) = &found {
            let mut entries = self.entries();
            if entries.generation == generation {
                if entries.map.len() >= MAX_ENTRIES {
                    entries.map.clear();
                }
                entries
                    .map
                    .insert(key.to_owned(), (Instant::now(), value.clone()));
            }
        }
        Ok(found)
    }

    /// Forgets every entry (after this process changed a record of this kind).
    pub(crate) fn forget_all(&self) {
        let mut entries = self.entries();
        entries.map.clear();
        entries.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Fresh<String, u32> {
        Fresh::new(FRESH_FOR)
    }

    #[tokio::test]
    async fn a_found_record_is_answered_from_memory_while_fresh() {
        let f = fresh();
        assert_eq!(
            f.get_or_load("a", || async { Ok(Some(1)) }).await.unwrap(),
            Some(1)
        );
        let again = f.get_or_load("a", || async { panic!("not loaded again") });
        assert_eq!(again.await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_miss_is_not_remembered() {
        let f = fresh();
        assert_eq!(
            f.get_or_load("a", || async { Ok(None) }).await.unwrap(),
            None
        );
        assert_eq!(
            f.get_or_load("a", || async { Ok(Some(2)) }).await.unwrap(),
            Some(2)
        );
    }

    #[tokio::test]
    async fn forgetting_makes_the_next_lookup_load() {
        let f = fresh();
        f.get_or_load("a", || async { Ok(Some(1)) }).await.unwrap();
        f.forget_all();
        assert_eq!(
            f.get_or_load("a", || async { Ok(Some(2)) }).await.unwrap(),
            Some(2)
        );
    }

    #[tokio::test]
    async fn a_load_overtaken_by_a_change_is_not_remembered() {
        let f = fresh();
        // The change lands while the load is under way: what it read may be stale.
        let read = f
            .get_or_load("a", || async {
                f.forget_all();
                Ok(Some(1))
            })
            .await;
        assert_eq!(read.unwrap(), Some(1));
        assert_eq!(
            f.get_or_load("a", || async { Ok(Some(2)) }).await.unwrap(),
            Some(2)
        );
    }

    #[tokio::test]
    async fn an_entry_older_than_fresh_for_is_loaded_again() {
        let f = fresh();
        f.get_or_load("a", || async { Ok(Some(1)) }).await.unwrap();
        {
            let mut entries = f.entries();
            let at = &mut entries.map.get_mut("a").unwrap().0;
            *at = at.checked_sub(FRESH_FOR).unwrap();
        }
        assert_eq!(
            f.get_or_load("a", || async { Ok(Some(2)) }).await.unwrap(),
            Some(2)
        );
    }

    #[tokio::test]
    async fn a_full_map_starts_over() {
        let f = fresh();
        for i in 0..MAX_ENTRIES as u32 {
            f.get_or_load(&i.to_string(), || async move { Ok(Some(i)) })
                .await
                .unwrap();
        }
        f.get_or_load("one more", || async { Ok(Some(0)) })
            .await
            .unwrap();
        assert_eq!(f.entries().map.len(), 1);
    }
}
