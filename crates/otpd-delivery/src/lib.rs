//! Delivery: how a code leaves otpd.
//!
//! The [`worker`] claims jobs from the outbox, [`render`]s the message, asks the
//! [`router`] which provider serves the channel, and hands the message to a provider
//! adapter in [`providers`] through the [`provider::Provider`] trait. Failures are retried
//! with [`backoff`], then moved to the next provider, then to a fallback channel; a
//! provider that keeps failing is skipped while its [`breaker`] is open (its optional
//! [`health`] check feeds the same breaker), and a message with no delivery receipt in
//! time goes to the next provider with the same code. Receipts arrive by HTTP (the
//! server's receipts endpoint) or, for providers with a session of their own (SMPP),
//! through [`receipts`] from inside the process. A provider that fetches a call's text
//! when the call is answered gets it sealed in its own callback URL ([`call_script`]).

pub mod backoff;
pub mod breaker;
pub mod call_script;
pub mod config;
pub mod health;
pub mod provider;
pub mod providers;
pub mod receipts;
pub mod render;
pub mod router;
pub mod sms;
pub mod voice_clips;
pub mod worker;

pub use config::{DeliveryConfig, ProviderConfig, RouteConfig};
pub use router::Router;
pub use worker::Worker;
