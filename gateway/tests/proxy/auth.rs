//! The edge phases through the whole gateway: API keys (header and query), JWTs minted by
//! PyJWT (an independent implementation) and token introspection against a real endpoint,
//! subscriptions, plans (429 with RateLimit headers, route costs), identity headers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::helpers::client::{empty, get};
use crate::helpers::{Client, Gateway, Options, Upstream, api, config};

#[path = "../jwt/helpers.rs"]
#[allow(dead_code)]
mod jwt_helpers;

const KEY: &str = "tg_proxy_test_key_0123456789abcdef";

/// An API `orders` with key auth (header `x-api-key` or `?api_key=`), a plan of `per_minute`
/// with a burst of 9, an expensive route costing 3, and a consumer `acme` holding KEY.
fn keyed(up: &Upstream, per_minute: u32, status_extra: Value) -> Value {
    let mut orders = api(
        "orders",
        &[up],
        json!([{"name": "all", "paths": ["/orders/*"]}, {"name": "report", "paths": ["/report"], "cost": 3}]),
        json!({
            "auth_methods": ["key_auth"],
            "key_query_param": "api_key",
            "plans": [{"name": "free", "rate_limit_per_minute": per_minute, "burst": 9}],
        }),
    );
    if let (Some(o), Some(extra)) = (orders.as_object_mut(), status_extra.as_object()) {
        o.extend(extra.clone());
    }
    let mut doc = config(vec![orders]);
    doc["consumers"] = json!([{
        "name": "acme",
        "custom_id": "crm-42",
        "keys": [{"key": KEY}],
        "subscriptions": [{"api": "orders", "plan": "free"}],
    }]);
    doc
}

fn with_key(url: &str, key: &str) -> Request<crate::helpers::upstream::Body> {
    get(url).header("x-api-key", key).header("x-consumer-id", "forged").body(empty()).unwrap()
}

#[tokio::test]
async fn keys_identify_the_consumer_to_the_upstream() {
    let up = Upstream::echo("orders").await;
    let gw = Gateway::start(keyed(&up, 100, json!({}))).await;
    let client = Client::http1();

    let ok = client.send(with_key(&gw.url("/orders/1"), KEY)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let seen = ok.json();
    let h = &seen["headers"];
    assert_eq!(h["x-consumer-username"], json!(["acme"]));
    assert_eq!(h["x-consumer-custom-id"], json!(["crm-42"]));
    assert_eq!(h["x-plan"], json!(["free"]));
    assert_eq!(h["x-consumer-id"].as_array().map(Vec::len), Some(1), "the forged copy is replaced: {h}");
    assert_ne!(h["x-consumer-id"], json!(["forged"]));
    assert!(h["x-credential-id"][0].as_str().is_some_and(|id| id.len() == 36), "{h}");
    assert!(h.get("x-api-key").is_none(), "the key is not forwarded: {h}");
    assert_eq!(ok.header("ratelimit-policy"), Some("\"minute\";q=109;w=60"), "100 a minute + a burst of 9");
    assert_eq!(ok.header("ratelimit"), Some("\"minute\";r=9;t=1"), "9 more at once, all back within 1 s");
    assert_eq!(ok.header("x-ratelimit-remaining"), None, "the legacy fields only when asked for");

    // The query parameter works too and is removed before proxying.
    let ok = client.get(&gw.url(&format!("/orders/2?x=1&api_key={KEY}"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["path"], "/orders/2?x=1");

    let none = client.get(&gw.url("/orders/1")).await;
    none.assert_problem(401, "credentials-missing");
    assert!(none.header("www-authenticate").is_some_and(|v| v.starts_with("ApiKey")));
    client.send(with_key(&gw.url("/orders/1"), "tg_wrong")).await.assert_problem(401, "invalid-credentials");
    assert_eq!(up.requests(), 2, "refused calls never reach the upstream");
}

#[tokio::test]
async fn checksummed_keys_work_and_their_typos_are_named() {
    use tollgate_gateway::key_format;
    let good = key_format::assemble("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd").unwrap_or_default();
    let up = Upstream::echo("orders").await;
    let mut doc = keyed(&up, 100, json!({}));
    doc["consumers"][0]["keys"] = json!([{"key": KEY}, {"key": good}]);
    let gw = Gateway::start(doc).await;
    let client = Client::http1();
    assert_eq!(client.send(with_key(&gw.url("/orders/1"), &good)).await.status, 200);
    // One character off (in the body, then in the checksum): refused, and told why.
    for at in [10, key_format::KEY_LEN - 1] {
        let mut typo = good.clone().into_bytes();
        typo[at] = if typo[at] == b'x' { b'y' } else { b'x' };
        let typo = String::from_utf8(typo).unwrap_or_default();
        let r = client.send(with_key(&gw.url("/orders/1"), &typo)).await;
        r.assert_problem(401, "invalid-credentials");
        assert!(r.json()["detail"].as_str().is_some_and(|d| d.contains("mistyped")), "{}", r.text());
    }
    // A well-formed key nobody holds is unknown, not mistyped.
    let stranger = key_format::assemble("0000000000000000000000000000000000000000").unwrap_or_default();
    let r = client.send(with_key(&gw.url("/orders/1"), &stranger)).await;
    assert_eq!(r.json()["detail"], "the API key is not valid", "{}", r.text());
    assert_eq!(up.requests(), 1, "refused calls never reach the upstream");
}

#[tokio::test]
async fn plans_limit_at_the_route_cost() {
    let up = Upstream::echo("orders").await;
    let gw = Gateway::start(keyed(&up, 5, json!({}))).await;
    let client = Client::http1();
    // 10 units at once (burst 9); each report takes 3: three fit, then one unit is left.
    for _ in 0..3 {
        assert_eq!(client.send(with_key(&gw.url("/report"), KEY)).await.status, 200);
    }
    let denied = client.send(with_key(&gw.url("/report"), KEY)).await;
    denied.assert_problem(429, "rate-limited");
    let retry: u64 = denied.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((23..=24).contains(&retry), "two more units free in 24 s (one per 12 s), retry after {retry}");
    assert_eq!(denied.header("ratelimit"), Some(format!("\"minute\";r=0;t={retry}").as_str()));
    let one = client.send(with_key(&gw.url("/orders/1"), KEY)).await;
    assert_eq!(
        (one.status.as_u16(), one.header("ratelimit")),
        (200, Some("\"minute\";r=0;t=120")),
        "cost 1 still fits"
    );
    assert_eq!(up.requests(), 4);
}

#[tokio::test]
async fn subscriptions_and_open_apis() {
    let up = Upstream::echo("open").await;
    let mut doc = keyed(&up, 100, json!({}));
    // A second API the consumer is not subscribed to, and an open one.
    let apis = doc["apis"].as_array_mut().unwrap();
    apis.push(api(
        "billing",
        &[&up],
        json!([{"name": "b", "paths": ["/billing"]}]),
        json!({"auth_methods": ["key_auth"]}),
    ));
    apis.push(api("public", &[&up], json!([{"name": "p", "paths": ["/public"]}]), json!({})));
    let gw = Gateway::start(doc).await;
    let client = Client::http1();
    client.send(with_key(&gw.url("/billing"), KEY)).await.assert_problem(403, "subscription-required");
    let open = client.send(with_key(&gw.url("/public"), "anything")).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.json()["headers"]["x-anonymous-consumer"], json!(["true"]));
    assert!(open.json()["headers"].get("x-consumer-id").is_none(), "forged identity removed on open APIs too");
}

/// An API `orders` accepting tokens by `method` with `settings`, and a consumer `name`
/// bound to (issuer, subject) and subscribed to its plan `gold`.
fn token_api(up: &Upstream, method: &str, settings: Value, name: &str, (issuer, subject): (&str, &str)) -> Value {
    let mut extra = json!({"auth_methods": [method], "plans": [{"name": "gold"}]});
    extra[method] = settings;
    let mut doc = config(vec![api("orders", &[up], json!([{"name": "all", "paths": ["/*"]}]), extra)]);
    doc["consumers"] = json!([{
        "name": name,
        "token_bindings": [{"issuer": issuer, "subject": subject}],
        "subscriptions": [{"api": "orders", "plan": "gold"}],
    }]);
    doc
}

/// PyJWT-minted tokens through the gateway: valid ones reach the upstream as the bound
/// consumer, every attack vector is a 401 problem.
#[tokio::test]
async fn jwts_from_an_independent_library() {
    let Some(m) = jwt_helpers::minted() else { return };
    let up = Upstream::echo("jwt").await;
    let jwt = json!({
        "algorithms": ["RS256", "ES256", "EdDSA", "HS256"],
        "keys": [
            {"kid": "rsa-1", "alg": "RS256", "pem": m["rsa_pem"]},
            {"kid": "ec-1", "alg": "ES256", "pem": m["ec_pem"]},
            {"kid": "ed-1", "alg": "EdDSA", "pem": m["ed_pem"]},
            {"kid": "hs-1", "alg": "HS256", "secret": m["hs_secret"]},
        ],
        "issuers": ["https://idp.test"],
        "audiences": ["tollgate"],
        "leeway_secs": 5,
        "required_claims": ["sub"],
        "required_scopes": ["read"],
    });
    let doc = token_api(&up, "jwt", jwt, "idp-user", ("https://idp.test", "user-1"));
    let gw = Gateway::start(doc).await;
    let client = Client::http1();
    let bearer =
        |token: &str| get(&gw.url("/x")).header("authorization", format!("Bearer {token}")).body(empty()).unwrap();
    let valid = m["valid"].as_object().unwrap();
    assert!(!valid.is_empty());
    for (name, token) in valid {
        let r = client.send(bearer(token.as_str().unwrap())).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let h = &r.json()["headers"];
        assert_eq!(h["x-consumer-username"], json!(["idp-user"]), "{name}");
        assert!(h.get("authorization").is_none(), "{name}: the token is hidden");
    }
    let invalid = m["invalid"].as_object().unwrap();
    assert!(invalid.len() >= 10);
    for (name, token) in invalid {
        let r = client.send(bearer(token.as_str().unwrap())).await;
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        r.assert_problem(401, "invalid-credentials");
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{name}");
    }
    assert_eq!(up.requests(), valid.len());
}

/// A tiny RFC 7662 endpoint: `good` is active for subject `app-1`, anything else inactive.
async fn introspection_endpoint(hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/introspect", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let form = String::from_utf8_lossy(&body).into_owned();
                        let answer = if form.contains("token=good") {
                            json!({"active": true, "client_id": "app-1", "scope": "read", "iss": "https://as.test"})
                        } else {
                            json!({"active": false})
                        };
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from(answer.to_string()))))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn introspected_tokens_are_cached_and_bound() {
    let hits = Arc::new(AtomicUsize::new(0));
    let url = introspection_endpoint(hits.clone()).await;
    let up = Upstream::echo("opaque").await;
    let introspection = json!({"url": url, "client_id": "gw", "client_secret": "s3cret", "cache_ttl_secs": 60});
    let doc = token_api(&up, "introspection", introspection, "app", ("https://as.test", "app-1"));
    let opts = Options { allow_private_auth_urls: true, ..Options::default() };
    let gw = Gateway::start_with(doc, opts).await;
    let client = Client::http1();
    let bearer =
        |token: &str| get(&gw.url("/x")).header("authorization", format!("Bearer {token}")).body(empty()).unwrap();
    for _ in 0..3 {
        let r = client.send(bearer("good")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["headers"]["x-consumer-username"], json!(["app"]));
    }
    client.send(bearer("revoked")).await.assert_problem(401, "invalid-credentials");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one call per distinct token, then the cache");
}

#[tokio::test]
async fn private_introspection_urls_are_refused_unless_allowed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let url = introspection_endpoint(hits.clone()).await;
    let up = Upstream::echo("opaque").await;
    let introspection = json!({"url": url, "client_id": "gw", "client_secret": "s3cret"});
    let doc = config(vec![api(
        "orders",
        &[&up],
        json!([{"name": "all", "paths": ["/*"]}]),
        json!({"auth_methods": ["introspection"], "introspection": introspection}),
    )]);
    let gw = Gateway::start(doc).await;
    let r =
        Client::http1().send(get(&gw.url("/x")).header("authorization", "Bearer good").body(empty()).unwrap()).await;
    assert_eq!(r.status, 500, "an unusable setting is the operator's error: {}", r.text());
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no connection to a private address");
}

/// Anonymous callers are limited per client IP under the API's anonymous plan; behind a
/// trusted proxy the client IP comes from `X-Forwarded-For`.
#[tokio::test]
async fn anonymous_limits_follow_the_client_ip_behind_trusted_proxies() {
    let up = Upstream::echo("anon").await;
    let doc = config(vec![api(
        "public",
        &[&up],
        json!([{"name": "all", "paths": ["/*"]}]),
        json!({"anonymous_plan": "anon", "plans": [{"name": "anon", "rate_limit_per_minute": 2, "burst": 1}]}),
    )]);
    let from = |gw: &Gateway, ip: &str| get(&gw.url("/x")).header("x-forwarded-for", ip).body(empty()).unwrap();
    let client = Client::http1();

    // The test client connects from 127.0.0.1: trusted, so each forwarded address counts alone.
    let trusted = tollgate_gateway::edge::EdgeOptions {
        trusted_proxies: tollgate_gateway::edge::client_ip::parse_trusted("127.0.0.1").unwrap(),
        ..Default::default()
    };
    let gw = Gateway::start_with(doc.clone(), Options { edge: trusted, ..Options::default() }).await;
    for ip in ["198.51.100.1", "198.51.100.2"] {
        for n in 0..2 {
            let r = client.send(from(&gw, ip)).await;
            assert_eq!(r.status, 200, "{ip} #{n}: {}", r.text());
            assert_eq!(r.json()["headers"]["x-plan"], json!(["anon"]));
        }
        client.send(from(&gw, ip)).await.assert_problem(429, "rate-limited");
    }

    // Not trusted: the header is ignored and every request is the peer's.
    let gw = Gateway::start(doc).await;
    assert_eq!(client.send(from(&gw, "198.51.100.1")).await.status, 200);
    assert_eq!(client.send(from(&gw, "198.51.100.2")).await.status, 200);
    client.send(from(&gw, "198.51.100.3")).await.assert_problem(429, "rate-limited");
}

/// Rate-limit fields are the gateway's, once each, whether or not the upstream sent its own.
#[tokio::test]
async fn rate_limit_fields_are_the_gateways_even_when_the_upstream_sends_some() {
    for upstream_sends in [false, true] {
        let up = Upstream::start("limits", move |_req| async move {
            let mut res = crate::helpers::upstream::text(200, "ok");
            if upstream_sends {
                res.headers_mut().insert("ratelimit-limit", http::HeaderValue::from_static("7"));
                res.headers_mut().insert("x-upstream", http::HeaderValue::from_static("kept"));
            }
            res
        })
        .await;
        let gw = Gateway::start(keyed(&up, 100, json!({}))).await;
        let mut raw = crate::helpers::Raw::connect(gw.addr).await;
        raw.send(format!("GET /orders/1 HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n\r\n").as_bytes()).await;
        let r = raw.response().await;
        let count = |name: &str| r.headers.iter().filter(|(n, _)| n == name).count();
        assert_eq!(r.status, 200, "{}", r.text());
        for name in ["ratelimit-policy", "ratelimit", "x-request-id"] {
            assert_eq!(count(name), 1, "{name} once (upstream sends its own: {upstream_sends}): {:?}", r.headers);
        }
        assert_eq!(count("ratelimit-limit"), 0, "the upstream's legacy field gives way to the plan's");
        assert_eq!(r.header("ratelimit"), Some("\"minute\";r=9;t=1"));
        if upstream_sends {
            assert_eq!(r.header("x-upstream"), Some("kept"));
        }
    }
}

/// An upstream that sets fields the gateway sets too: over HTTP/1.1 and HTTP/2, its request
/// id is kept (once) and its rate-limit fields give way to the plan's (once each).
#[tokio::test]
async fn upstream_fields_of_the_gateways_names_follow_one_rule_on_both_protocols() {
    let up = Upstream::start("claims", |_req| async {
        let mut res = crate::helpers::upstream::text(200, "ok");
        for (name, value) in [
            ("x-request-id", "theirs"),
            ("ratelimit-remaining", "999"),
            ("x-ratelimit-limit", "5"),
            ("ratelimit", "\"theirs\";r=1;t=1"),
            ("x-other", "kept"),
        ] {
            res.headers_mut().insert(name, http::HeaderValue::from_static(value));
        }
        res
    })
    .await;
    let gw = Gateway::start(keyed(&up, 100, json!({}))).await;
    for (client, protocol) in [(Client::http1(), "HTTP/1.1"), (Client::h2c(), "HTTP/2")] {
        let ok = client.send(with_key(&gw.url("/orders/1"), KEY)).await;
        assert_eq!(ok.status, 200, "{protocol}: {}", ok.text());
        let all =
            |name: &str| -> Vec<&str> { ok.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect() };
        assert_eq!(all("x-request-id"), ["theirs"], "{protocol}: {:?}", ok.headers);
        assert_eq!(all("ratelimit-policy"), ["\"minute\";q=109;w=60"], "{protocol}: {:?}", ok.headers);
        assert_eq!(all("ratelimit").len(), 1, "{protocol}: {:?}", ok.headers);
        assert_ne!(all("ratelimit"), ["\"theirs\";r=1;t=1"], "{protocol}");
        for legacy in ["x-ratelimit-limit", "ratelimit-remaining"] {
            assert!(all(legacy).is_empty(), "{protocol}: the upstream's {legacy} gives way: {:?}", ok.headers);
        }
        assert_eq!(all("x-other"), ["kept"], "{protocol}");
    }
    // Without a plan the gateway adds only its request id, and keeps the upstream's.
    let open =
        Gateway::start(config(vec![api("open", &[&up], json!([{"name": "all", "paths": ["/*"]}]), json!({}))])).await;
    let ok = Client::http1().get(&open.url("/x")).await;
    assert_eq!(ok.headers.get_all("x-request-id").iter().collect::<Vec<_>>(), ["theirs"]);
    assert_eq!(ok.headers.get_all("ratelimit-remaining").iter().collect::<Vec<_>>(), ["999"]);
}
