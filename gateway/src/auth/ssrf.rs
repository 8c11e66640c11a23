//! SSRF policy for operator-supplied URLs (JWKS, token introspection).
//!
//! A URL is checked when it is saved and again right before each connection: the host is
//! resolved, every address must be public (unless the operator allows private ranges), and
//! the caller connects to exactly the addresses returned by [`UrlPolicy::check`] — never
//! re-resolving — so DNS rebinding between check and connect cannot reach an internal host.
//! `pinned_client` builds the HTTP(S) client that does exactly that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

/// Why a URL was refused. The messages name the URL's problem, never a resolved address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// Not an absolute `http(s)://host[:port]/...` URL, or it carries credentials.
    #[error("invalid URL")]
    InvalidUrl,
    /// `http` without `allow_private`, or any other scheme.
    #[error("scheme not allowed (https required)")]
    SchemeNotAllowed,
    /// The host did not resolve, or resolved to nothing.
    #[error("host did not resolve")]
    Unresolvable,
    /// An address the host resolved to is in a forbidden range.
    #[error("address in a forbidden range ({0})")]
    ForbiddenAddress(&'static str),
}

/// Which destinations outbound fetches may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Allow loopback, private, link-local, CGNAT and unique-local addresses, and plain
    /// `http` (for in-cluster identity providers and tests).
    pub allow_private: bool,
}

/// The parts of a checked URL a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
}

impl UrlPolicy {
    /// Parses `url`, resolves its host and returns the addresses to connect to: all of them
    /// passed the policy (one forbidden address refuses the whole URL).
    pub async fn check(&self, url: &str) -> Result<Vec<SocketAddr>, SsrfError> {
        let target = self.parse(url)?;
        let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|_| SsrfError::Unresolvable)?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(SsrfError::Unresolvable);
        }
        if !self.allow_private {
            for addr in &addrs {
                if let Some(range) = forbidden_range(addr.ip()) {
                    return Err(SsrfError::ForbiddenAddress(range));
                }
            }
        }
        Ok(addrs)
    }

    /// Syntactic part of [`check`](Self::check): scheme, host and port, no DNS.
    pub(crate) fn parse(&self, url: &str) -> Result<Target, SsrfError> {
        let uri: http::Uri = url.parse().map_err(|_| SsrfError::InvalidUrl)?;
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            Some("http") if self.allow_private => 80,
            Some(_) => return Err(SsrfError::SchemeNotAllowed),
            None => return Err(SsrfError::InvalidUrl),
        };
        let authority = uri.authority().ok_or(SsrfError::InvalidUrl)?;
        // Userinfo (`user@host`) is a classic parser-confusion vector; no JWKS needs it.
        if authority.as_str().contains('@') {
            return Err(SsrfError::InvalidUrl);
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(SsrfError::InvalidUrl);
        }
        let port = authority.port_u16().unwrap_or(default_port);
        Ok(Target { host: host.to_owned(), port })
    }
}

/// An HTTP(S) client whose every connection goes to addresses [`UrlPolicy::check`] returned.
pub(crate) type PinnedClient<B> = Client<HttpsConnector<HttpConnector<Pinned>>, B>;

/// A client (HTTP/1, webpki roots) that connects only to `addrs`, whatever the URL's host
/// resolves to by then; `http` URLs are allowed here because the policy already vetted them.
pub(crate) fn pinned_client<B>(addrs: Vec<SocketAddr>, connect_timeout: Duration) -> anyhow::Result<PinnedClient<B>>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new_with_resolver(Pinned(addrs));
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .context("tls config")?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A resolver that answers every lookup with the addresses the SSRF check approved, so the
/// connection cannot go anywhere a second DNS answer (rebinding) would point it.
#[derive(Debug, Clone)]
pub(crate) struct Pinned(Vec<SocketAddr>);

impl tower_service::Service<Name> for Pinned {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        std::future::ready(Ok(self.0.clone().into_iter()))
    }
}

/// The name of the forbidden range `ip` falls in, or `None` for a public address.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let range = match (a, b) {
        (0, _) => "this-network",
        (127, _) => "loopback",
        (10, _) => "private",
        (172, 16..=31) => "private",
        (192, 168) => "private",
        (169, 254) => "link-local",
        (100, 64..=127) => "cgnat",
        (198, 18..=19) => "benchmarking",
        (192, 0) if c == 0 => "ietf-protocol",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved",
        _ => return None,
    };
    Some(range)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    match first {
        _ if first & 0xfe00 == 0xfc00 => Some("unique-local"),
        _ if first & 0xffc0 == 0xfe80 => Some("link-local"),
        _ if first & 0xffc0 == 0xfec0 => Some("site-local"),
        _ if first & 0xff00 == 0xff00 => Some("multicast"),
        _ => None,
    }
}

/// The IPv4 address carried by IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) addresses: each reaches that IPv4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_addresses_are_classified() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("0.0.0.0", "this-network"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "cgnat"),
            ("100.127.255.255", "cgnat"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.1.2.3", "private"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:c0a8:0101::1", "private"),
        ];
        for (addr, range) in cases {
            assert_eq!(forbidden_range(ip(addr)), Some(range), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for addr in public {
            assert_eq!(forbidden_range(ip(addr)), None, "{addr}");
        }
    }

    #[tokio::test]
    async fn check_applies_scheme_and_range_policy() {
        let strict = UrlPolicy { allow_private: false };
        let open = UrlPolicy { allow_private: true };
        assert_eq!(strict.check("https://127.0.0.1/jwks").await, Err(SsrfError::ForbiddenAddress("loopback")));
        assert_eq!(
            strict.check("https://[::ffff:169.254.169.254]/").await,
            Err(SsrfError::ForbiddenAddress("link-local"))
        );
        assert_eq!(strict.check("http://8.8.8.8/").await, Err(SsrfError::SchemeNotAllowed));
        assert_eq!(strict.check("ftp://8.8.8.8/").await, Err(SsrfError::SchemeNotAllowed));
        assert_eq!(strict.check("https://u:p@8.8.8.8/").await, Err(SsrfError::InvalidUrl));
        assert_eq!(strict.check("/relative").await, Err(SsrfError::InvalidUrl));
        let ok = strict.check("https://8.8.8.8:8443/keys").await.unwrap();
        assert_eq!(ok, vec!["8.8.8.8:8443".parse().unwrap()]);
        let local = open.check("http://[::1]:9000/").await.unwrap();
        assert_eq!(local, vec!["[::1]:9000".parse().unwrap()]);
        // `localhost` resolves to loopback: refused by name as well as by literal.
        assert!(strict.check("https://localhost/").await.is_err());
    }
}
