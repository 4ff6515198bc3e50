//! Storage adapters for otpd: implementations of the `otpd_core::store` traits.
//!
//! - [`sqlite`]: the embedded default (one file, WAL), needing no other server.
//!
//! Every backend gets its own migration tree under `migrations/<dialect>/`, embedded in
//! the binary and applied at start and by `otpd migrate`.

pub mod sqlite;

pub use sqlite::SqliteStore;
