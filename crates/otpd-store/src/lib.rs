//! Storage adapters for otpd: implementations of the `otpd_core::store` traits.
//!
//! - [`sqlite`]: the embedded default (one file, WAL), needing no other server.
//! - [`postgres`]: PostgreSQL, shared by many stateless otpd nodes.
//!
//! [`open`] chooses the backend by the database URL's scheme ([`AnyStore`]).
//!
//! Every backend gets its own migration tree under `migrations/<dialect>/`, embedded in
//! the binary and applied at start and by `otpd migrate`.

pub mod any;
pub mod postgres;
pub mod sqlite;

pub use any::{AnyStore, Backend, open, redacted};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
