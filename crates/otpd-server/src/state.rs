//! The state every handler shares: configuration, store, secrets, routing, telemetry, and
//! the verification engine.

use std::sync::Arc;

use otpd_core::secret::ServerSecret;
use otpd_core::store::Store;
use otpd_delivery::Router;
use otpd_engine::Verifier;
use tokio::sync::Notify;

use crate::config::Config;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Configuration in force.
    pub config: Arc<Config>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Keys derived from the server secret.
    pub secret: Arc<ServerSecret>,
    /// Provider routing.
    pub router: Arc<Router>,
    /// Wakes the delivery worker when a job is queued.
    pub wake: Arc<Notify>,
    /// Digest of `OTPD_MASTER_KEY`, if set.
    pub master_key_digest: Option<Arc<[u8]>>,
    /// Where sends and checks are decided: every face's verification requests go here.
    pub verifier: Arc<Verifier>,
    /// Metrics and the alert rules' observations (this process only).
    pub telemetry: Arc<otpd_telemetry::Telemetry>,
    /// Where "now" comes from: every decision a request makes is made at `clock.now()`.
    pub clock: Arc<dyn otpd_core::clock::Clock>,
}
