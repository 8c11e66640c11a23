//! Client-certificate authentication (mTLS) through the HTTPS listener, with real rustls
//! clients presenting certificates from a private CA (and an intermediate), another CA,
//! expired and server-only certificates, and a certificate whose key the client lacks.
//! Bindings by fingerprint and by subject name identify consumers; every refusal says why;
//! unbinding and a changed CA bundle take effect on connections already open; handshakes
//! ask for certificates only while an API uses them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};

use crate::helpers::pki::{Ca, ClientId};
use crate::helpers::raw::{Closed, tls_stream_with};
use crate::helpers::{Gateway, Options, Raw, Upstream, WAIT, api};

/// Presents a certificate when asked (counting the times it was asked).
#[derive(Debug)]
struct Presents {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicUsize>,
}

impl ResolvesClientCert for Presents {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The server side: a CA and a certificate for `localhost`.
struct Server {
    ca: Vec<u8>,
    chain: String,
    key: String,
}

fn server() -> Server {
    let ca = Ca::new("server CA");
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca.issuer).unwrap();
    let ca_der =
        rustls::pki_types::pem::PemObject::from_pem_slice(ca.pem.as_bytes()).map(|c: CertificateDer| c.to_vec());
    Server { ca: ca_der.unwrap(), chain: format!("{}{}", leaf.pem(), ca.pem), key: key.serialize_pem() }
}

/// Client settings trusting `server`, presenting `id` (or nothing) and counting requests
/// for a certificate in `asked`.
fn client(
    server: &Server,
    id: Option<&ClientId>,
    alpn: &[&[u8]],
    asked: Arc<AtomicUsize>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(server.ca.clone())).unwrap();
    let resolver = Presents { key: id.map(ClientId::certified), asked };
    let mut config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_client_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn connect(gw: &Gateway, server: &Server, id: Option<&ClientId>) -> Raw {
    let config = client(server, id, &[b"http/1.1"], Arc::default());
    Raw::connect_tls_with(gw.tls_addr.unwrap(), config, "localhost").await.expect("TLS handshake")
}

async fn get(raw: &mut Raw, path: &str) -> crate::helpers::raw::RawResponse {
    raw.send(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes()).await;
    raw.response().await
}

fn assert_refused(res: &crate::helpers::raw::RawResponse, status: u16, slug: &str, detail: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    let doc = res.json();
    assert_eq!(doc["type"], format!("urn:tollgate:problem:{slug}"), "{doc}");
    assert!(doc["detail"].as_str().is_some_and(|d| d.contains(detail)), "{doc} should say {detail:?}");
}

/// The people of the tests, by the CA `trusted` (and its intermediate) or `other`.
struct People {
    alice: ClientId,
    svc: ClientId,
    deep: ClientId,
    stranger: ClientId,
    mallory: ClientId,
    expired: ClientId,
    server_only: ClientId,
    bob: ClientId,
}

fn people(trusted: &Ca, other: &Ca) -> People {
    let (intermediate, intermediate_der) = trusted.intermediate("issuing CA");
    let mut deep = intermediate.client("deep", |_| {});
    deep.chain.push(intermediate_der);
    let svc_uri = |p: &mut CertificateParams| {
        p.subject_alt_names.push(SanType::URI("spiffe://example/svc".try_into().unwrap()));
    };
    People {
        alice: trusted.client("alice", |_| {}),
        svc: trusted.client("svc", svc_uri),
        deep,
        stranger: trusted.client("stranger", |_| {}),
        // The bound subject, but from a CA the API does not trust.
        mallory: other.client("mallory", svc_uri),
        expired: trusted.client("old", |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }),
        server_only: trusted.client("server", |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
        bob: trusted.client("bob", |_| {}),
    }
}

/// APIs: `orders` (mTLS only, trusting `bundle`), `mixed` (a key or a certificate), `open`
/// (anonymous); consumers bound to the people's certificates.
fn config(server: &Server, up: &Upstream, bundle: &str, p: &People, bind_alice: bool) -> Value {
    let mtls = json!({"ca_bundle": bundle});
    let apis = vec![
        api(
            "orders",
            &[up],
            json!([{"name": "o", "paths": ["/orders/*"]}]),
            json!({"auth_methods": ["mtls"], "mtls": mtls, "plans": [{"name": "gold"}]}),
        ),
        api(
            "mixed",
            &[up],
            json!([{"name": "m", "paths": ["/mixed/*"]}]),
            json!({"auth_methods": ["key_auth", "mtls"], "mtls": mtls, "plans": [{"name": "gold"}]}),
        ),
        api("open", &[up], json!([{"name": "p", "paths": ["/open/*"]}]), json!({})),
    ];
    let both = json!([{"api": "orders", "plan": "gold"}, {"api": "mixed", "plan": "gold"}]);
    let alice_bindings = if bind_alice { json!([{"fingerprint": p.alice.fingerprint()}]) } else { json!([]) };
    json!({
        "apis": apis,
        "certificates": [{"name": "local", "cert": server.chain, "key": server.key, "default": true}],
        "consumers": [
            {"name": "alice", "certificate_bindings": alice_bindings, "subscriptions": both,
             "keys": [{"key": "tg_mtls_test_key_0123456789abcdef"}]},
            {"name": "svc", "certificate_bindings": [{"subject": "spiffe://example/svc"}], "subscriptions": both},
            {"name": "deep", "certificate_bindings": [{"subject": "deep"}], "subscriptions": both},
            {"name": "old", "certificate_bindings": [{"fingerprint": p.expired.fingerprint()}], "subscriptions": both},
            {"name": "server", "certificate_bindings": [{"subject": "server"}], "subscriptions": both},
            {"name": "bob", "certificate_bindings": [{"fingerprint": p.bob.fingerprint()}]},
        ],
    })
}

async fn start(server: &Server, up: &Upstream, bundle: &str, p: &People) -> Gateway {
    let opts = Options { tls: true, ..Options::default() };
    Gateway::start_with(config(server, up, bundle, p, true), opts).await
}

fn consumer(res: &crate::helpers::raw::RawResponse) -> Value {
    res.json()["headers"]["x-consumer-username"].clone()
}

#[tokio::test]
async fn certificates_from_the_apis_cas_identify_their_consumers() {
    let (server, trusted, other) = (server(), Ca::new("clients"), Ca::new("someone else"));
    let p = people(&trusted, &other);
    let up = Upstream::echo("up").await;
    let gw = start(&server, &up, &trusted.pem, &p).await;

    // By fingerprint, on one keep-alive connection.
    let mut alice = connect(&gw, &server, Some(&p.alice)).await;
    for i in 0..3 {
        let res = get(&mut alice, &format!("/orders/{i}")).await;
        assert_eq!((res.status, consumer(&res)), (200, json!(["alice"])), "{}", res.text());
        let credential = res.json()["headers"]["x-credential-id"][0].as_str().unwrap_or_default().to_owned();
        assert_eq!(credential.len(), 36, "the binding is the credential");
    }
    // By a SAN URI, and by the common name of a leaf issued by an intermediate the client sent.
    for (id, name) in [(&p.svc, "svc"), (&p.deep, "deep")] {
        let mut raw = connect(&gw, &server, Some(id)).await;
        let res = get(&mut raw, "/orders/x").await;
        assert_eq!((res.status, consumer(&res)), (200, json!([name])), "{}", res.text());
    }
    // HTTP/2 connections carry the certificate to every stream.
    let config = client(&server, Some(&p.alice), &[b"h2"], Arc::default());
    let stream = tls_stream_with(gw.tls_addr.unwrap(), config, "localhost").await.unwrap();
    let (mut send, _conn) = crate::helpers::client::h2_over(stream).await;
    for _ in 0..2 {
        let req = http::Request::get("https://localhost/orders/h2")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["headers"]["x-consumer-username"], json!(["alice"]));
    }
    let reached = up.requests();

    // Refusals, each saying why, none reaching the upstream.
    let cases: [(Option<&ClientId>, u16, &str, &str); 6] = [
        (None, 401, "credentials-missing", "requires a client certificate"),
        (Some(&p.stranger), 401, "invalid-credentials", "not bound to a consumer"),
        (Some(&p.mallory), 401, "invalid-credentials", "not issued by a CA this API trusts"),
        (Some(&p.expired), 401, "invalid-credentials", "has expired"),
        (Some(&p.server_only), 401, "invalid-credentials", "not meant for client authentication"),
        (Some(&p.bob), 403, "subscription-required", "no subscription"),
    ];
    for (id, status, slug, detail) in cases {
        let mut raw = connect(&gw, &server, id).await;
        let res = get(&mut raw, "/orders/x").await;
        assert_refused(&res, status, slug, detail);
        if status == 401 {
            assert_eq!(res.header("www-authenticate"), None, "no HTTP scheme names a client certificate");
        }
        // The connection stays usable: a refusal is not a framing error.
        assert_eq!(get(&mut raw, "/open/x").await.status, 200);
    }
    // The plain listener has no certificates to offer.
    let mut plain = Raw::connect(gw.addr).await;
    assert_refused(&get(&mut plain, "/orders/x").await, 401, "credentials-missing", "client certificate");
    assert_eq!(up.requests(), reached + 6, "only the /open requests reached the upstream");

    // An API that also takes keys: either credential, and the key without a certificate.
    let mut none = connect(&gw, &server, None).await;
    none.send(b"GET /mixed/k HTTP/1.1\r\nhost: localhost\r\nx-api-key: tg_mtls_test_key_0123456789abcdef\r\n\r\n")
        .await;
    assert_eq!(consumer(&none.response().await), json!(["alice"]));
    let res = get(&mut none, "/mixed/k").await;
    assert_refused(&res, 401, "credentials-missing", "requires credentials");
    assert!(res.header("www-authenticate").is_some_and(|h| h.contains("ApiKey")), "the key is the scheme to name");
    let res = get(&mut connect(&gw, &server, Some(&p.svc)).await, "/mixed/c").await;
    assert_eq!(consumer(&res), json!(["svc"]));
    // An API without mTLS ignores a certificate, even an untrusted one.
    let res = get(&mut connect(&gw, &server, Some(&p.mallory)).await, "/open/x").await;
    assert_eq!((res.status, &res.json()["headers"]["x-anonymous-consumer"]), (200, &json!(["true"])));
}

#[tokio::test]
async fn unbinding_and_new_cas_apply_to_open_connections() {
    let (server, trusted, other) = (server(), Ca::new("clients"), Ca::new("next clients"));
    let p = people(&trusted, &other);
    let up = Upstream::echo("up").await;
    let mut gw = start(&server, &up, &trusted.pem, &p).await;
    let mut alice = connect(&gw, &server, Some(&p.alice)).await;
    let mut svc = connect(&gw, &server, Some(&p.svc)).await;
    assert_eq!(get(&mut alice, "/orders/1").await.status, 200);
    assert_eq!(get(&mut svc, "/orders/1").await.status, 200);
    // Alice's binding is deleted: her next request on the same connection is refused.
    gw.reload(config(&server, &up, &trusted.pem, &p, false)).await;
    assert_refused(&get(&mut alice, "/orders/2").await, 401, "invalid-credentials", "not bound");
    assert_eq!(get(&mut svc, "/orders/2").await.status, 200, "other bindings stand");
    // The API now trusts only the other CA: the chain is judged again at once.
    gw.reload(config(&server, &up, &other.pem, &p, true)).await;
    assert_refused(&get(&mut svc, "/orders/3").await, 401, "invalid-credentials", "not issued by a CA this API");
    // Mallory's certificate (the bound subject, from the other CA) is now accepted.
    let res = get(&mut connect(&gw, &server, Some(&p.mallory)).await, "/orders/4").await;
    assert_eq!(consumer(&res), json!(["svc"]));
}

#[tokio::test]
async fn handshakes_ask_for_certificates_only_while_an_api_uses_them() {
    let (server, trusted) = (server(), Ca::new("clients"));
    let p = people(&trusted, &Ca::new("other"));
    let up = Upstream::echo("up").await;
    let plain_only = json!({
        "apis": [api("open", &[&up], json!([{"name": "p", "paths": ["/open/*"]}]), json!({}))],
        "certificates": [{"name": "local", "cert": server.chain, "key": server.key, "default": true}],
    });
    let mut gw = Gateway::start_with(plain_only, Options { tls: true, ..Options::default() }).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let config = client(&server, Some(&p.alice), &[b"http/1.1"], asked.clone());
    let mut raw = Raw::connect_tls_with(gw.tls_addr.unwrap(), config.clone(), "localhost").await.unwrap();
    assert_eq!(get(&mut raw, "/open/x").await.status, 200);
    assert_eq!(asked.load(Ordering::SeqCst), 0, "not asked while no API uses mTLS");
    gw.reload(self::config(&server, &up, &trusted.pem, &p, true)).await;
    // (A new handshake: the client's session cache is in `config`, so a fresh config.)
    let fresh = client(&server, Some(&p.alice), &[b"http/1.1"], asked.clone());
    let mut raw = Raw::connect_tls_with(gw.tls_addr.unwrap(), fresh, "localhost").await.unwrap();
    assert_eq!(consumer(&get(&mut raw, "/orders/x").await), json!(["alice"]));
    assert_eq!(asked.load(Ordering::SeqCst), 1, "asked once mTLS is in use");
}

#[tokio::test]
async fn a_client_without_the_certificates_key_fails_the_handshake() {
    let (server, trusted) = (server(), Ca::new("clients"));
    let p = people(&trusted, &Ca::new("other"));
    let up = Upstream::echo("up").await;
    let gw = start(&server, &up, &trusted.pem, &p).await;
    // Alice's certificate, signed for with Bob's key; and garbage where a certificate goes.
    let forged = ClientId { chain: p.alice.chain.clone(), key: p.bob.key.clone() };
    let junk = ClientId { chain: vec![CertificateDer::from(b"not a certificate".to_vec())], key: p.bob.key.clone() };
    for id in [&forged, &junk] {
        let config = client(&server, Some(id), &[b"http/1.1"], Arc::default());
        // (TLS 1.3: the client finishes first; the server's alert arrives on the first read.)
        let Ok(mut raw) = Raw::connect_tls_with(gw.tls_addr.unwrap(), config, "localhost").await else { continue };
        if raw.try_send(b"GET /orders/x HTTP/1.1\r\nhost: localhost\r\n\r\n").await {
            assert!(matches!(raw.closed_within(WAIT).await, Closed::Yes(b) if b.is_empty()), "no answer");
        }
    }
    assert_eq!(up.requests(), 0);
    // The real Alice still gets in.
    assert_eq!(get(&mut connect(&gw, &server, Some(&p.alice)).await, "/orders/x").await.status, 200);
}
