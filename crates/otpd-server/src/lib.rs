//! otpd's HTTP server: the native API (`/v1`), the Twilio Verify–compatible API (`/v2`,
//! [`twilio`]), delivery receipts, documentation pages, and the [`app::Application`] that
//! wires the store, the secrets, the delivery worker, the status-callback sender, the
//! [`webhooks`] senders, the [`alerting`] loop and the router together. Requests that
//! leave otpd for user-configured URLs go through [`outbound`]; what operators watch is
//! counted by `otpd_telemetry` and served at `/metrics`.
//!
//! Requests enter in [`api`] (and [`twilio`]), are authenticated by [`auth`] and allowed
//! by [`access`], parsed by [`extract`] into commands for `otpd_engine::Verifier` (where a
//! send or check is decided), and the engine's errors leave through one mapping per face
//! ([`error`] for `/v1`, `twilio::errors` for `/v2`).

pub mod access;
pub mod alerting;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod listener;
pub mod outbound;
pub mod qr;
pub mod retention;
pub mod sdk;
pub mod state;
pub mod twilio;
pub mod webhooks;

pub use app::Application;
pub use config::Config;
