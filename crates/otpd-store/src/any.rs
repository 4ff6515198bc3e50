//! The store a URL names: `sqlite://PATH` (one node, embedded) or `postgres://…` /
//! `postgresql://…` (many nodes). The server holds an [`AnyStore`] and uses it as
//! `dyn Store` (it dereferences to one), so nothing above this module knows the backend.

use std::ops::Deref;
use std::sync::Arc;

use otpd_core::store::{DurableStore, Store};

use crate::{postgres, sqlite};

/// Which backend a database URL names, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH` or `sqlite:PATH`.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Backend {
    /// The backend of `url` (by its scheme only; the rest is checked on open).
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// Whether several otpd nodes can share this backend.
    pub fn is_shared(self) -> bool {
        self == Backend::Postgres
    }
}

/// Errors opening or migrating a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names no supported backend.
    #[error("database URL must start with sqlite:// or postgres://")]
    Scheme,
    /// The SQLite store failed.
    #[error(transparent)]
    Sqlite(#[from] sqlite::OpenError),
    /// The PostgreSQL store failed.
    #[error(transparent)]
    Postgres(#[from] postgres::OpenError),
}

/// One of the stores, chosen by URL.
#[derive(Clone)]
pub enum AnyStore {
    /// The embedded SQLite store.
    Sqlite(sqlite::SqliteStore),
    /// The PostgreSQL store.
    Postgres(postgres::PostgresStore),
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        write!(f, "AnyStore({:?})", self.backend())
    }
}

/// `url` with its password (if any) replaced by `***`, fit for logs and messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.into()
        }
        Ok(_) => url.to_string(),
        // Not parseable: show only the scheme.
        Err(_) => url.split(':').next().unwrap_or_default().to_string() + ":…",
    }
}

/// Opens the store `url` names (without migrating it).
pub async fn open(url: &str) -> Result<AnyStore, OpenError> {
    AnyStore::open(url).await
}

impl AnyStore {
    /// Opens the store `url` names (without migrating it).
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        match Backend::of_url(url).ok_or(OpenError::Scheme)? {
            Backend::Sqlite => Ok(AnyStore::Sqlite(sqlite::SqliteStore::open(url).await?)),
            Backend::Postgres => Ok(AnyStore::Postgres(
                postgres::PostgresStore::connect(url).await?,
            )),
        }
    }

    /// Applies the backend's pending migrations (safe from several nodes at once on
    /// PostgreSQL).
    pub async fn migrate(&self) -> Result<(), OpenError> {
        match self {
            AnyStore::Sqlite(s) => s.migrate().await?,
            AnyStore::Postgres(p) => p.migrate().await?,
        }
        Ok(())
    }

    /// Closes the store's connections.
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(p) => p.close().await,
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            AnyStore::Sqlite(_) => Backend::Sqlite,
            AnyStore::Postgres(_) => Backend::Postgres,
        }
    }

    /// The store as a durable store a hot store (Redis) can wrap.
    pub fn durable(&self) -> Arc<dyn DurableStore> {
        match self {
            AnyStore::Sqlite(s) => Arc::new(s.clone()),
            AnyStore::Postgres(p) => Arc::new(p.clone()),
        }
    }

    /// The store as a shared trait object.
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            AnyStore::Sqlite(s) => Arc::new(s.clone()),
            AnyStore::Postgres(p) => Arc::new(p.clone()),
        }
    }
}

impl Deref for AnyStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self {
            AnyStore::Sqlite(s) => s,
            AnyStore::Postgres(p) => p,
        }
    }
}

impl From<sqlite::SqliteStore> for AnyStore {
    fn from(s: sqlite::SqliteStore) -> Self {
        AnyStore::Sqlite(s)
    }
}

impl From<postgres::PostgresStore> for AnyStore {
    fn from(p: postgres::PostgresStore) -> Self {
        AnyStore::Postgres(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_chooses_the_backend() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://h/db"), Some(Backend::Postgres));
        assert_eq!(
            Backend::of_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://h/db"), None);
        assert!(Backend::Postgres.is_shared() && !Backend::Sqlite.is_shared());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("postgres://otpd:s3cret@db:5432/otpd?sslmode=require"),
            "postgres://otpd:***@db:5432/otpd?sslmode=require"
        );
        assert_eq!(redacted("sqlite://data/otpd.db"), "sqlite://data/otpd.db");
        assert_eq!(
            redacted("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redacted("postgres://db/otpd?user=a@b"),
            "postgres://db/otpd?user=a@b"
        );
        assert!(!redacted("postgres://u:p@[bad").contains("p@"));
    }

    #[tokio::test]
    async fn an_sqlite_url_opens_the_sqlite_store_as_dyn_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        store.ping().await.unwrap();
        assert_eq!(store.count_live_keys().await.unwrap(), 0);
        store.shared().ping().await.unwrap();
        store.close().await;
        assert!(matches!(open("redis://x").await, Err(OpenError::Scheme)));
    }
}
