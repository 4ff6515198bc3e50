//! otpd's domain: what a verification is and the rules it obeys.
//!
//! Everything here is pure: no network, no database, no clock of its own (callers pass
//! `now`). The HTTP server parses requests into these types at its edge, the stores persist
//! them behind the traits in [`store`], and the delivery worker renders and routes them.
//! Authenticator-app factors ([`totp`]) share the same lockout ([`lockout`]) as sent codes.

pub mod alerts;
pub mod apikey;
pub mod audit;
pub mod channel;
pub mod clock;
pub mod code;
pub mod entity;
pub mod error;
pub mod event;
pub mod factor_webhook;
pub mod guards;
pub mod ids;
pub mod lockout;
pub mod mask;
pub mod messaging;
pub mod passkey;
pub mod recipient;
pub mod secret;
pub mod service;
pub mod start;
pub mod store;
pub mod template;
pub mod text;
pub mod totp;
pub mod verification;

pub use channel::Channel;
pub use error::DomainError;
