//! The end user's IP of a send or check: what the caller's backend gave (`client_ip`), else
//! — when the service trusts its proxy — the address the face read from the forwarding
//! header. The face reads the header (an HTTP matter); whether to believe it is the
//! service's rule, decided here.

use std::net::IpAddr;

use otpd_core::audit::WriteContext;
use otpd_core::service::Service;

use crate::error::{VerifyError, VerifyResult};

/// Where the end user's IP of a request may come from.
#[derive(Clone, Debug, Default)]
pub struct ClientIp {
    /// `client_ip` as the caller wrote it.
    pub given: Option<String>,
    /// The client's address in the request's `X-Forwarded-For`, read from the right past
    /// the trusted proxies; believed only when the service says so.
    pub forwarded: Option<IpAddr>,
}

impl ClientIp {
    /// The IP the guards key on for `service`; also recorded in `ctx` as the request's
    /// audited end-user IP.
    pub(crate) fn resolve(
        &self,
        service: &Service,
        ctx: &WriteContext,
    ) -> VerifyResult<Option<String>> {
        let ip = if let Some(given) = &self.given {
            let ip = given
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| VerifyError::invalid("client_ip must be an IPv4 or IPv6 address"))?;
            Some(ip.to_string())
        } else if service.settings.guards.rate_limits.trust_forwarded_for {
            self.forwarded.map(|ip| ip.to_string())
        } else {
            None
        };
        if let Some(ip) = &ip {
            ctx.set_client_ip(ip);
        }
        Ok(ip)
    }
}
