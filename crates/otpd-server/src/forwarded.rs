//! The end user's address as the request's forwarding header tells it: read from the
//! right, past the proxies the server trusts (`[http] trusted_proxies` /
//! `trusted_proxy_hops`), never a client-written entry. Whether a service believes it is
//! the engine's rule (`otpd_engine::ClientIp`).

use std::net::IpAddr;

use axum::http::HeaderMap;
use otpd_engine::ClientIp;

use crate::config::{HttpConfig, TrustedProxies};

/// Where a send's or check's end-user IP may come from: the caller's `client_ip`, and the
/// client in the request's `X-Forwarded-For` (believed only if the service says so).
pub fn client_ip(given: Option<String>, headers: &HeaderMap, http: &HttpConfig) -> ClientIp {
    ClientIp {
        given,
        forwarded: forwarded_for(headers)
            .and_then(|h| forwarded_client(&h, &http.trusted_proxies, http.trusted_proxy_hops)),
    }
}

/// The client's address in an `X-Forwarded-For` chain. Proxies append what they saw, so
/// only the right end is vouched for: with `proxies` configured, the rightmost address
/// outside them (the listener already dropped the header when the TCP peer is not one of
/// them); otherwise the entry `hops` places from the right (1: the address the one proxy
/// in front saw). Whatever a client wrote at the left is never taken over a proxy's
/// entry. `None` when the chain is shorter than the hops or the entry is not an address.
pub fn forwarded_client(header: &str, proxies: &TrustedProxies, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if proxies.is_empty() {
        let i = entries.len().checked_sub(hops.max(1))?;
        return parse_forwarded(entries[i]);
    }
    let mut client = None;
    for entry in entries.iter().rev() {
        let ip = parse_forwarded(entry)?;
        client = Some(ip);
        if !proxies.contains(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry as an address (`[v6]:port` and `v4:port` forms tolerated).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

/// The raw `X-Forwarded-For` header, if any.
pub fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod forwarded_tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::try_from(list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_rightmost_entry_wins_over_a_client_written_one() {
        let none = TrustedProxies::default();
        // nginx appended the real peer (198.51.100.7) to what the client sent.
        let header = "1.2.3.4, 198.51.100.7";
        assert_eq!(
            forwarded_client(header, &none, 1),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            forwarded_client("9.9.9.9, 1.1.1.1, 198.51.100.7, 10.0.0.2", &none, 2),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(forwarded_client("198.51.100.7", &none, 2), None);
        assert_eq!(forwarded_client("", &none, 1), None);
        assert_eq!(forwarded_client("garbage", &none, 1), None);
    }

    #[test]
    fn trusted_cidrs_are_skipped_from_the_right() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        let header = "6.6.6.6, 203.0.113.9, 192.168.1.1, 10.1.2.3";
        assert_eq!(
            forwarded_client(header, &p, 1),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            forwarded_client("10.0.0.1, 10.0.0.2", &p, 1),
            Some("10.0.0.1".parse().unwrap()),
            "all trusted: the farthest one"
        );
        assert_eq!(
            forwarded_client("[2001:db8::1]:443, 10.0.0.1", &p, 1),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(p.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(TrustedProxies::try_from(vec!["10.0.0.0/33".to_string()]).is_err());
    }
}
