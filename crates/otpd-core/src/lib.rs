//! otpd's domain: what a verification is and the rules it obeys.
//!
//! Everything here is pure: no network, no database, no clock of its own (callers pass
//! `now`). The HTTP server parses requests into these types at its edge, the stores persist
//! them behind the traits in [`store`], and the delivery worker renders and routes them.

pub mod apikey;
pub mod channel;
pub mod code;
pub mod error;
pub mod event;
pub mod ids;
pub mod mask;
pub mod recipient;
pub mod secret;
pub mod service;
pub mod store;
pub mod template;
pub mod verification;

pub use channel::Channel;
pub use error::DomainError;
