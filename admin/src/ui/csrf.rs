//! CSRF protection of every state-changing request of the portal and the admin UI, in two
//! layers. (1) The browser's own signals: a request whose `Sec-Fetch-Site` says another site
//! sent it, or whose `Origin` names another host, is refused. (2) A token in every form
//! (`csrf` field): a signed-in user's must equal their session's synchronizer token; a
//! signed-out visitor's (login, sign-up, password reset forms) must equal the random value
//! of the `tg_csrf` cookie (double submit), which an attacker on another site can neither
//! read nor set. Comparisons are constant-time.

use axum::http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

use crate::auth::random_token;
use crate::ui::session::{cookie, cookie_header};

/// The form field carrying the token.
pub const FIELD: &str = "csrf";
/// The cookie of signed-out visitors' token.
pub const ANON_COOKIE: &str = "tg_csrf";

/// Whether the browser says this request came from another site (or from a page whose
/// origin is not this host).
pub fn cross_site(headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

/// The `csrf` field of an `application/x-www-form-urlencoded` body.
pub fn form_token(body: &[u8]) -> Option<String> {
    pairs(body).find(|(k, _)| k == FIELD).map(|(_, v)| v)
}

/// The name-value pairs of an `application/x-www-form-urlencoded` body.
pub fn pairs(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    body.split(|&b| b == b'&').filter(|p| !p.is_empty()).map(|pair| {
        let mut it = pair.splitn(2, |&b| b == b'=');
        let k = decode(it.next().unwrap_or_default());
        let v = decode(it.next().unwrap_or_default());
        (k, v)
    })
}

fn decode(raw: &[u8]) -> String {
    let plus: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus).decode_utf8_lossy().into_owned()
}

/// Whether `presented` equals `expected`, in constant time; an empty token never matches.
pub fn matches(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(p) if !expected.is_empty() => p.as_bytes().ct_eq(expected.as_bytes()).into(),
        _ => false,
    }
}

/// The signed-out token of this browser, and a `Set-Cookie` to send when it is new.
pub fn anon_token(headers: &HeaderMap, secure: bool) -> (String, Option<HeaderValue>) {
    match cookie(headers, ANON_COOKIE) {
        Some(t) if t.len() >= 32 => (t.to_owned(), None),
        _ => {
            let token = random_token("", 32);
            let set = cookie_header(ANON_COOKIE, &token, None, secure);
            (token, Some(set))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_form_bodies() {
        assert_eq!(form_token(b"a=1&csrf=abc%2Bd+e&b=2").as_deref(), Some("abc+d e"));
        assert_eq!(form_token(b"csrfx=1"), None);
        assert!(matches(Some("abc"), "abc"));
        assert!(!matches(Some("abd"), "abc"));
        assert!(!matches(Some(""), ""));
        assert!(!matches(None, "abc"));
    }

    #[test]
    fn other_sites_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("portal.example:8002"));
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://portal.example:8002"));
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }
}
