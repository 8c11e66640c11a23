//! The client's address behind trusted proxies (load balancers in front of the gateway).
//!
//! Starting from the TCP peer, `X-Forwarded-For` is walked from the right while the hop that
//! added an entry is trusted: the first address added by an untrusted hop is the client. A
//! client can prepend anything to the header, so entries left of that point are never
//! believed. With no trusted proxies configured, the peer is the client.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client address of a request that arrived from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Header lines in order; within a line, entries left to right. Walk all of it backwards.
    let lines: Vec<&str> = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
    for entry in lines.iter().rev().flat_map(|l| l.rsplit(',')) {
        let Some(ip) = parse_entry(entry.trim()) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An IPv4-mapped IPv6 address as IPv4, so `10.0.0.0/8` matches `::ffff:10.1.2.3`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    None
}

/// Parses a comma-separated list of addresses and CIDR ranges (a bare address is a /32 or /128).
pub fn parse_trusted(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = parse_trusted("10.0.0.0/8").unwrap();
        assert_eq!(client_ip(peer, &headers(&["1.1.1.1"]), &trusted), peer);
        assert_eq!(client_ip(peer, &headers(&["1.1.1.1"]), &[]), peer);
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = parse_trusted("10.0.0.0/8, 192.168.1.1").unwrap();
        // The client forged 6.6.6.6; 198.51.100.7 is what our first trusted hop saw.
        let h = headers(&["6.6.6.6, 198.51.100.7", "192.168.1.1"]);
        assert_eq!(client_ip(peer, &h, &trusted), "198.51.100.7".parse::<IpAddr>().unwrap());
        // Everything trusted: the leftmost address.
        let h = headers(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(client_ip(peer, &h, &trusted), "10.1.1.1".parse::<IpAddr>().unwrap());
        // Garbage stops the walk at the last good hop.
        let h = headers(&["198.51.100.7, nonsense, 10.9.9.9"]);
        assert_eq!(client_ip(peer, &h, &trusted), "10.9.9.9".parse::<IpAddr>().unwrap());
        let h = headers(&["[2001:db8::1]:443"]);
        assert_eq!(client_ip(peer, &h, &trusted), "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_lists_are_validated() {
        assert!(parse_trusted("10.0.0.0/8,::1").is_ok());
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("example.com").is_err());
    }
}
