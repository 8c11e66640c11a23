//! The path-normalisation corpus of the security review (issue 12) through a real gateway:
//! an anonymous `/public/*` route and a key-protected `/private/*` route in front of the same
//! upstream, as a Tomcat or Spring application would sit behind both. No hostile path may
//! reach that upstream anonymously as a path it resolves under `/private`; what does reach
//! it is exactly the path docs/gateway.md ("Request paths") says.

use serde_json::json;

use crate::helpers::{Gateway, Upstream, api, config, raw};

const KEY: &str = "tg_paths_test_key_0123456789abcdef";

/// What the gateway does with a path sent without a key.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Answered with this status; the upstream sees nothing.
    Refused(u16),
    /// Forwarded with exactly this path.
    Sent(&'static str),
}

use Outcome::{Refused, Sent};

/// 400: refused by normalisation; 401: normalised into `/private`, which needs a key.
const CORPUS: &[(&str, Outcome)] = &[
    ("/public/..;/private", Refused(400)),
    ("/public/..;x=1/private", Refused(400)),
    ("/public/%2e%2e;/private", Refused(400)),
    ("/public/%2E.;/private", Refused(400)),
    ("/public/.;/private", Refused(400)),
    ("/public/..%3b/private", Refused(400)),
    ("/public/..;", Refused(400)),
    ("/public/..;/../private", Refused(400)),
    ("/public/%252e%252e/private", Refused(400)),
    ("/public/..%252fprivate", Refused(400)),
    ("/public/%25%32%65%25%32%65/private", Refused(400)),
    ("/public/%2e%2e/private", Refused(401)),
    ("/public/.%2e/private", Refused(401)),
    ("/public/./../private", Refused(401)),
    ("/public//..//private", Refused(401)),
    ("/public/..%2fprivate", Refused(400)),
    ("/public/..%5cprivate", Refused(400)),
    ("/public/..\\private", Refused(400)),
    ("/public/%u002e%u002e/private", Refused(400)),
    ("/public/%00/../../private", Refused(400)),
    ("/public/..%09/private", Refused(400)),
    ("/public/%c0%ae%c0%ae/private", Refused(400)),
    ("/public/../../private", Refused(400)),
    ("/public/x;y=1/private", Sent("/public/x;y=1/private")),
    ("/public/x;", Sent("/public/x;")),
    ("/public/...;/private", Sent("/public/...;/private")),
    ("/public/100%25", Sent("/public/100%25")),
    ("/public/%c3%a9", Sent("/public/%C3%A9")),
    ("/public/%61/./b", Sent("/public/a/b")),
    ("/public/..%3f/private", Sent("/public/..%3F/private")),
    ("/public/..%3F/private?x=/../private", Sent("/public/..%3F/private?x=/../private")),
    ("/public/a?/../../private", Sent("/public/a?/../../private")),
    // The fragment is cut by the URI parser; what is left is routed and sent.
    ("/public/a#/../../private", Sent("/public/a")),
    ("/public/%23/../x", Sent("/public/x")),
];

async fn setup(app: &Upstream) -> Gateway {
    let public = api("site", &[app], json!([{ "name": "public", "paths": ["/public/*"] }]), json!({}));
    let private = api(
        "internal",
        &[app],
        json!([{ "name": "private", "paths": ["/private/*"] }]),
        json!({ "auth_methods": ["key_auth"], "plans": [{ "name": "p", "rate_limit_per_minute": 10000, "burst": 1000 }] }),
    );
    let mut doc = config(vec![public, private]);
    doc["consumers"] =
        json!([{ "name": "c", "keys": [{ "key": KEY }], "subscriptions": [{ "api": "internal", "plan": "p" }] }]);
    Gateway::start(doc).await
}

#[tokio::test]
async fn hostile_paths_never_reach_private_anonymously() {
    let app = Upstream::echo("app").await;
    let gw = setup(&app).await;
    for (path, want) in CORPUS {
        let before = app.requests();
        let r = raw::get(gw.addr, path, "example.com").await;
        match want {
            Refused(status) => {
                assert_eq!(r.status, *status, "{path:?}: {}", r.text());
                assert_eq!(app.requests(), before, "{path:?} reached the upstream");
            }
            Sent(sent) => {
                assert_eq!(r.status, 200, "{path:?}: {}", r.text());
                assert_eq!(r.json()["path"], *sent, "{path:?}");
            }
        }
    }
    for seen in app.seen() {
        let (path, _) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
        for reading in [servlet_reading(path, 1), servlet_reading(path, 2)] {
            assert!(!reading.starts_with("/private"), "{} is read as {reading}", seen.path);
        }
    }
}

/// With a key, the paths that resolve into `/private` are served there, as `/private`;
/// the refused ones stay refused.
#[tokio::test]
async fn resolved_paths_reach_private_as_private_with_a_key() {
    let app = Upstream::echo("app").await;
    let gw = setup(&app).await;
    for (path, want) in CORPUS.iter().filter(|(_, w)| matches!(w, Refused(_))) {
        let mut conn = raw::Raw::connect(gw.addr).await;
        let head = format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nx-api-key: {KEY}\r\nconnection: close\r\n\r\n");
        conn.send(head.as_bytes()).await;
        let r = conn.response().await;
        match want {
            Refused(401) => assert_eq!((r.status, r.json()["path"].as_str()), (200, Some("/private")), "{path:?}"),
            _ => assert_eq!(r.status, 400, "{path:?}: {}", r.text()),
        }
    }
}

/// How a servlet container reads a path: `;` parameters cut from each segment, then
/// percent-decoded `decodes` times, then dot segments resolved (empty segments dropped).
fn servlet_reading(path: &str, decodes: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        let mut seg = seg.split(';').next().unwrap_or_default().to_owned();
        for _ in 0..decodes {
            seg = percent_decode(&seg);
        }
        // A decoded slash or backslash splits the segment again for such a reader.
        for part in seg.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                _ => out.push(part.to_owned()),
            }
        }
    }
    format!("/{}", out.join("/"))
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&tollgate_gateway::fuzzing::percent_decode(s.as_bytes())).into_owned()
}
