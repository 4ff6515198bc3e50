//! Requests that leave otpd for URLs its users configure (status callbacks, webhooks):
//! an HTTP client that refuses private, loopback and other non-global targets (SSRF), both
//! for IP literals and for every address a host name resolves to, and follows no redirect.
//! `webhooks.allow_private_targets = true` lifts the restriction (development, tests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Timeout of one outbound request (connect included).
pub const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a target was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not an absolute http(s) URL.
    #[error("not an http(s) URL")]
    NotHttp,
    /// The host is (or resolves only to) a private, loopback or otherwise non-global address.
    #[error("the host is a private or loopback address")]
    Private,
}

/// Whether an address is publicly routable (not loopback, private, link-local, shared,
/// documentation, multicast, reserved or unspecified). IPv4-mapped IPv6 addresses are
/// judged as the IPv4 address they carry.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (may reach private v4)
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1))
        }
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// Checks a URL before it is stored or used: http(s), and — unless private targets are
/// allowed — not an IP literal or `localhost` name that is not global. Names that resolve
/// to private addresses are refused when the request is made (see [`client`]).
pub fn check_target(url: &str, allow_private: bool) -> Result<reqwest::Url, TargetError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::NotHttp);
    }
    if allow_private {
        return Ok(parsed);
    }
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) if !is_global(IpAddr::V4(ip)) => Err(TargetError::Private),
        Some(url::Host::Ipv6(ip)) if !is_global(IpAddr::V6(ip)) => Err(TargetError::Private),
        Some(url::Host::Domain(d))
            if d.eq_ignore_ascii_case("localhost")
                || d.to_ascii_lowercase().ends_with(".localhost") =>
        {
            Err(TargetError::Private)
        }
        Some(_) => Ok(parsed),
        None => Err(TargetError::NotHttp),
    }
}

/// A resolver that drops every non-global address a name resolves to, and fails when none
/// is left, so a public-looking name cannot point otpd at an internal service.
struct GlobalOnly;

impl Resolve for GlobalOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_global(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(std::io::Error::other(format!(
                    "{host} resolves to no public address"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The client for outbound calls: timeouts, no redirects, and (unless private targets are
/// allowed) the global-only resolver.
pub fn client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(OUTBOUND_TIMEOUT)
        .connect_timeout(OUTBOUND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("otpd/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(GlobalOnly));
    }
    builder
        .build()
        .expect("a client with these settings always builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_global() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn targets_are_checked_unless_private_ones_are_allowed() {
        assert!(check_target("https://hooks.example.com/x", false).is_ok());
        for bad in [
            "http://127.0.0.1:9000/cb",
            "http://[::1]/cb",
            "http://10.0.0.8/cb",
            "http://localhost:8080/cb",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert_eq!(check_target(bad, false), Err(TargetError::Private), "{bad}");
            assert!(check_target(bad, true).is_ok(), "{bad}");
        }
        assert_eq!(
            check_target("ftp://example.com", true),
            Err(TargetError::NotHttp)
        );
    }
}
