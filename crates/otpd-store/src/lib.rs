//! Storage adapters for otpd: implementations of the `otpd_core::store` traits.
//!
//! - [`sqlite`]: the embedded default (one file, WAL), needing no other server.
//! - [`redis`]: the hot path (verification state, counters, lockouts, the delivery queue's
//!   intake) in Redis, in front of a durable store, for many nodes.
//!
//! Every backend gets its own migration tree under `migrations/<dialect>/`, embedded in
//! the binary and applied at start and by `otpd migrate`.

#[cfg(test)]
pub(crate) mod journal_conformance;
pub mod redis;
pub mod sqlite;

pub use redis::{RedisConfig, RedisHot, Spooler};
pub use sqlite::SqliteStore;
