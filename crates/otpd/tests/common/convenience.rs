//! Convenience (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// Starts a sink and an otpd server using it with the standard configuration. Returns them
/// with the directory, which must outlive the server.
pub async fn start_with_sink() -> (TestDir, Sink, OtpdProcess) {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    (dir, sink, otpd)
}
