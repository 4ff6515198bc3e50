//! The verification engine: what otpd does when a code is sent, checked, ended or read.
//!
//! The HTTP faces (`/v1` and the Twilio-compatible `/v2`, in `otpd-server`) parse a
//! request into a command, hand it to the [`Verifier`], and map its result or its one
//! error type, [`VerifyError`], to their wire format. Everything between — validation,
//! the guards in their order, code minting, budget charges and refunds, the store's atomic
//! step, status-callback keys, telemetry — happens here, once, whichever face a request
//! came through. The engine holds no HTTP type: a request enters in `otpd-server`, is
//! decided here and in `otpd_core`'s rules, is kept by `otpd-store`, and leaves as a
//! message through `otpd-delivery`.

mod callback_keys;
mod check;
mod client_ip;
mod end;
mod error;
mod guards;
mod passkeys;
mod pumping;
mod recipient;
mod start;

use std::sync::Arc;

use otpd_core::clock::Clock;
use otpd_core::guards::budget::PriceTable;
use otpd_core::secret::ServerSecret;
use otpd_core::store::Store;
use otpd_delivery::Router;
use otpd_telemetry::Telemetry;
use tokio::sync::Notify;

pub use callback_keys::CallbackKeys;
pub use check::{CheckBy, Checked};
pub use client_ip::ClientIp;
pub use end::{OpenedMessage, normalize_id};
pub use error::{VerifyError, VerifyResult};
pub use passkeys::{CeremonyStarted, Passkeys, SignIn};
pub use pumping::Pumping;
pub use recipient::check_recipient;
pub use start::{StartCommand, StartKind, Started};

/// The application service every face goes through (cheap to share behind an `Arc`).
pub struct Verifier {
    store: Arc<dyn Store>,
    secret: Arc<ServerSecret>,
    router: Arc<Router>,
    prices: PriceTable,
    wake: Arc<Notify>,
    callback_keys: Arc<CallbackKeys>,
    pumping: Pumping,
    telemetry: Arc<Telemetry>,
    clock: Arc<dyn Clock>,
}

/// What a [`Verifier`] is built from.
pub struct Parts {
    /// Where verifications, limits and events are kept.
    pub store: Arc<dyn Store>,
    /// Keys derived from the server secret (code hashes, sealed codes).
    pub secret: Arc<ServerSecret>,
    /// Which providers serve a channel and region.
    pub router: Arc<Router>,
    /// Prices of messages, charged to budgets.
    pub prices: PriceTable,
    /// Wakes the delivery worker when a job is queued.
    pub wake: Arc<Notify>,
    /// Keys that sign status callbacks, held in memory only.
    pub callback_keys: Arc<CallbackKeys>,
    /// Metrics and the alert rules' observations.
    pub telemetry: Arc<Telemetry>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
}

impl Verifier {
    /// A verifier over these parts.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            store,
            secret,
            router,
            prices,
            wake,
            callback_keys,
            telemetry,
            clock,
        } = parts;
        Verifier {
            store,
            secret,
            router,
            prices,
            wake,
            callback_keys,
            pumping: Pumping::default(),
            telemetry,
            clock,
        }
    }

    /// The clock decisions are made at.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}
