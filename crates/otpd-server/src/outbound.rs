//! Requests that leave otpd for URLs its users configure (status callbacks, webhooks):
//! an HTTP client that refuses private, loopback and other non-global targets (SSRF), both
//! for IP literals and for every address a host name resolves to, follows no redirect and
//! goes through no proxy.
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

/// Whether an address is publicly routable. The one rule every outbound target is judged
/// by (webhooks, status callbacks, the resolver of their client):
///
/// - IPv4: not loopback, private, link-local, shared (100.64/10), documentation,
///   benchmarking, IETF protocol assignments, multicast, broadcast, reserved or "this
///   network".
/// - IPv6 that carries an IPv4 address is judged as that IPv4 address: IPv4-mapped
///   (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64's well-known
///   prefix (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
/// - Other IPv6 must be global unicast (`2000::/3`), which leaves out loopback,
///   unspecified, unique local (`fc00::/7`), link-local (`fe80::/10`), site-local
///   (`fec0::/10`), multicast, discard-only (`100::/64`) and local-use NAT64
///   (`64:ff9b:1::/48`); inside it, Teredo (`2001::/32`), benchmarking (`2001:2::/48`),
///   ORCHID (`2001:10::/28`, `2001:20::/28`) and documentation (`2001:db8::/32`,
///   `3fff::/20`) are not global either.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_global_v4(v4),
            None => is_global_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, when it is one of the forms that carry
/// one: IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (`::` and `::1` included,
/// as `0.0.0.0` and `0.0.0.1`, neither global), NAT64 `64:ff9b::/96`, 6to4 `2002::/16`.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        return Some(low); // compatible or mapped
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low); // NAT64, well-known prefix
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        )); // 6to4
    }
    None
}

/// IPv6 without an embedded IPv4 address: global unicast (`2000::/3`) minus the special
/// blocks allocated inside it.
fn is_global_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    (s[0] & 0xe000) == 0x2000 // global unicast 2000::/3
        && !(s[0] == 0x2001 && s[1] == 0 // Teredo 2001::/32
            || s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0 // benchmarking 2001:2::/48
            || s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010 // ORCHID 2001:10::/28
            || s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0020 // ORCHIDv2 2001:20::/28
            || s[0] == 0x2001 && s[1] == 0x0db8 // documentation 2001:db8::/32
            || (s[0] & 0xfff0) == 0x3ff0) // documentation 3fff::/20
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
/// allowed — not an IP literal that is not global ([`is_global`]) nor a `localhost` name
/// (a trailing dot changes nothing: `localhost.` is `localhost`). Names that resolve to
/// private addresses are refused when the request is made (see [`client`]).
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
        Some(url::Host::Domain(d)) if is_local_name(d) => Err(TargetError::Private),
        Some(_) => Ok(parsed),
        None => Err(TargetError::NotHttp),
    }
}

/// Whether a host name is `localhost` or a name under it (RFC 6761), with or without the
/// trailing dot of a fully qualified name (`localhost.` resolves as `localhost` does).
fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
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

/// The client for outbound calls: timeouts, no redirects, no proxy (`HTTP_PROXY`,
/// `HTTPS_PROXY` and `ALL_PROXY` in the environment are ignored: a proxy would resolve
/// and reach the target itself, past the resolver's check), and (unless private targets
/// are allowed) the global-only resolver.
pub fn client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(OUTBOUND_TIMEOUT)
        .connect_timeout(OUTBOUND_TIMEOUT)
        .no_proxy()
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
    fn ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it() {
        for ip in [
            "::127.0.0.1",            // IPv4-compatible
            "::10.0.0.1",             // IPv4-compatible
            "::",                     // unspecified (0.0.0.0)
            "::ffff:169.254.169.254", // IPv4-mapped
            "64:ff9b::127.0.0.1",     // NAT64
            "64:ff9b::c0a8:101",      // NAT64 of 192.168.1.1
            "2002:7f00:1::",          // 6to4 of 127.0.0.1
            "2002:a00:1::1",          // 6to4 of 10.0.0.1
            "2002:c0a8:101:1::1",     // 6to4 of 192.168.1.1
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "::8.8.8.8",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn special_ipv6_blocks_are_not_global() {
        for ip in [
            "fec0::1",         // site-local
            "feff::1",         // site-local, top of fec0::/10
            "ff02::1",         // multicast
            "100::1",          // discard-only
            "64:ff9b:1::1",    // local-use NAT64
            "::ffff:0:7f00:1", // IPv4-translated
            "2001::1",         // Teredo
            "2001:2::1",       // benchmarking
            "2001:10::1",      // ORCHID
            "2001:db8::1",     // documentation
            "3fff::1",         // documentation
            "4000::1",         // outside 2000::/3
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["2001:4860:4860::8888", "2a00:1450:4001::1", "2400:cb00::1"] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_findings_urls_are_refused() {
        for bad in [
            "http://localhost./",
            "http://LOCALHOST./hook",
            "http://api.localhost./hook",
            "http://[::127.0.0.1]/",
            "http://[fec0::1]/",
            "http://[2002:7f00:1::]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[::ffff:7f00:1]/",
        ] {
            assert_eq!(check_target(bad, false), Err(TargetError::Private), "{bad}");
            assert!(check_target(bad, true).is_ok(), "{bad}");
        }
        assert!(check_target("https://hooks.example.com./x", false).is_ok());
        assert!(check_target("https://notlocalhost/x", false).is_ok());
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
