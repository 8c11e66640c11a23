//! Stable hashing for consistent-hash load balancing: the same input hashes the same on every
//! node and every build (FNV-1a with a murmur3 finaliser, not `RandomState`), and the request
//! attribute to hash is extracted from headers, cookies or the client address.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::COOKIE;

use super::config::HashOn;
use crate::wire::ExtraFields;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A stable 64-bit hash of the concatenation of `parts`.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let fnv = parts.iter().flat_map(|p| p.iter()).fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
    fmix64(fnv)
}

/// murmur3's finaliser: FNV alone leaves short keys clustered on the ring.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hash of the attribute `on` names, or `None` when the request lacks it (or it is empty).
/// An identity header (`X-Consumer-ID`, ...) is taken from the caller's `identity`.
pub(crate) fn request_hash(
    on: &HashOn,
    headers: &HeaderMap,
    identity: Option<&dyn ExtraFields>,
    client_ip: Option<IpAddr>,
) -> Option<u64> {
    match on {
        HashOn::Header(name) => match identity.and_then(|i| i.get(name)) {
            Some(v) => Some(v.as_bytes()).filter(|v| !v.is_empty()).map(hash_one),
            None => headers.get(name).map(|v| v.as_bytes()).filter(|v| !v.is_empty()).map(hash_one),
        },
        HashOn::Cookie(name) => cookie_value(headers, name.as_bytes()).filter(|v| !v.is_empty()).map(hash_one),
        HashOn::ClientIp => client_ip.map(|ip| match ip.to_canonical() {
            IpAddr::V4(v4) => hash_one(&v4.octets()),
            IpAddr::V6(v6) => hash_one(&v6.octets()),
        }),
    }
}

fn hash_one(bytes: &[u8]) -> u64 {
    stable_hash(&[bytes])
}

/// The value of cookie `name` in any `Cookie` header (RFC 6265 `name=value; name2=value2`).
fn cookie_value<'a>(headers: &'a HeaderMap, name: &[u8]) -> Option<&'a [u8]> {
    headers.get_all(COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = pair.split_at(eq);
        (key.trim_ascii() == name).then(|| value.get(1..).unwrap_or_default().trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::HeaderName;

    use super::*;

    #[test]
    fn hash_is_stable_across_builds() {
        // Pinned: changing the function would move every consistent-hash key.
        assert_eq!(stable_hash(&[b"tollgate"]), stable_hash(&[b"toll", b"gate"]));
        assert_eq!(stable_hash(&[b""]), fmix64(FNV_OFFSET));
        assert_ne!(stable_hash(&[b"a"]), stable_hash(&[b"b"]));
    }

    #[test]
    fn extracts_header_cookie_and_ip() -> Result<(), std::net::AddrParseError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.append(COOKIE, HeaderValue::from_static("theme=dark"));
        headers.append(COOKIE, HeaderValue::from_static("a=1; session = s1 ;b=2"));
        let header = HashOn::Header(HeaderName::from_static("x-user"));
        assert_eq!(request_hash(&header, &headers, None, None), Some(hash_one(b"alice")));
        let cookie = HashOn::Cookie("session".into());
        assert_eq!(request_hash(&cookie, &headers, None, None), Some(hash_one(b"s1")));
        assert_eq!(request_hash(&HashOn::Cookie("none".into()), &headers, None, None), None);
        assert_eq!(request_hash(&HashOn::Header(HeaderName::from_static("x-none")), &headers, None, None), None);
        let v4: IpAddr = [10, 0, 0, 1].into();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse()?;
        assert_eq!(request_hash(&HashOn::ClientIp, &headers, None, Some(mapped)), Some(hash_one(&[10, 0, 0, 1])));
        assert_eq!(request_hash(&HashOn::ClientIp, &headers, None, Some(v4)), Some(hash_one(&[10, 0, 0, 1])));
        assert_eq!(request_hash(&HashOn::ClientIp, &headers, None, None), None);
        Ok(())
    }
}
