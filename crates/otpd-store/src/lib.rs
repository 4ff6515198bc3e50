//! Storage adapters for otpd: implementations of the `otpd_core::store` traits.
//!
//! - [`sqlite`]: the embedded default (one file, WAL), needing no other server.
//! - [`postgres`]: PostgreSQL, shared by many stateless otpd nodes.
//! - [`redis`]: the hot path (verification state, counters, lockouts, the delivery queue's
//!   intake) in Redis, in front of either durable store, for many nodes.
//!
//! [`open`] chooses the durable backend by the database URL's scheme ([`AnyStore`]).
//!
//! Every backend gets its own migration tree under `migrations/<dialect>/`, embedded in
//! the binary and applied at start and by `otpd migrate`.

pub mod any;
#[cfg(test)]
pub(crate) mod journal_conformance;
mod lookups;
pub mod postgres;
pub mod private_files;
pub mod redis;
pub mod sqlite;

pub use any::{AnyStore, Backend, open, redacted};
pub use postgres::PostgresStore;
pub use redis::{Clock, RedisConfig, RedisHot, Spooler};
pub use sqlite::SqliteStore;
