//! TLS to upstreams through the whole gateway: an upstream behind a certificate of a private
//! CA for `orders.internal`, reached by IP address. The API's `upstream_tls` trusts that CA
//! and names the host; without it, with another CA, without the name, or with verification
//! switched off on a node that does not allow it, the gateway refuses to talk to the
//! upstream (502) and the upstream sees no request.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::helpers::pki::Ca;
use crate::helpers::{Client, Gateway, Options, paths};

/// An HTTPS upstream with a certificate for `orders.internal` only, answering with the
/// SNI it was sent, the path and the `Host`; counts the requests it got.
struct TlsUpstream {
    port: u16,
    requests: Arc<AtomicUsize>,
}

async fn tls_upstream(ca: &Ca) -> TlsUpstream {
    tls_upstream_asking(ca, None).await
}

/// [`tls_upstream`], requiring a client certificate issued by `clients` when given, and
/// answering with how many certificates the client presented too.
async fn tls_upstream_asking(ca: &Ca, clients: Option<&Ca>) -> TlsUpstream {
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["orders.internal".to_owned()]).unwrap().signed_by(&key, &ca.issuer).unwrap();
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match clients {
        Some(clients) => {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(clients.pem.as_bytes()).unwrap()).unwrap();
            let verifier =
                tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                let client_certs = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = json!({
                        "sni": sni,
                        "path": req.uri().to_string(),
                        "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
                        "proto": req.headers().get("x-forwarded-proto").and_then(|h| h.to_str().ok()),
                        "client_certs": client_certs,
                    });
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string())))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    TlsUpstream { port, requests }
}

/// A config with the API `orders` over HTTPS to `up` by IP address, with `upstream_tls`.
fn config(up: &TlsUpstream, upstream_tls: Value) -> Value {
    let mut api = json!({
        "name": "orders",
        "auth_methods": ["anonymous"],
        "upstream_protocol": "https",
        "targets": [{ "host": "127.0.0.1", "port": up.port }],
        "routes": [paths("all", &["/orders/*"])],
        // (The refusals below would otherwise eject the only target for a while.)
        "passive_health": { "consecutive_failures": 0, "base_ejection_ms": 1000, "max_ejection_ms": 1000 },
    });
    if !upstream_tls.is_null() {
        api["upstream_tls"] = upstream_tls;
    }
    json!({ "apis": [api] })
}

#[tokio::test]
async fn a_private_ca_and_a_server_name_reach_the_upstream_and_nothing_less_does() {
    let private = Ca::new("upstream CA");
    let other = Ca::new("some other CA");
    let up = tls_upstream(&private).await;
    let good = json!({ "ca_bundle": private.pem, "server_name": "orders.internal" });
    let mut gw = Gateway::start(config(&up, good.clone())).await;
    let client = Client::http1();

    let ok = client.get(&gw.url("/orders/7?x=1")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let seen = ok.json();
    assert_eq!(seen["sni"], "orders.internal", "the configured name is sent as SNI");
    assert_eq!(seen["path"], "/orders/7?x=1");
    assert_eq!(seen["host"], format!("127.0.0.1:{}", up.port), "Host stays the target's");
    assert_eq!(seen["proto"], "http", "the client's scheme, not the upstream's");
    let reached = up.requests.load(Ordering::SeqCst);

    // Everything short of the right trust and name is refused before a request is sent.
    let refused = [
        ("the public roots", Value::Null),
        ("another CA", json!({ "ca_bundle": other.pem, "server_name": "orders.internal" })),
        ("the right CA but the target's IP as the name", json!({ "ca_bundle": private.pem })),
        (
            "the right CA and a name not on the certificate",
            json!({ "ca_bundle": private.pem, "server_name": "billing.internal" }),
        ),
        ("verify off on a node that does not allow it", json!({ "verify": false, "server_name": "orders.internal" })),
    ];
    for (what, tls) in refused {
        gw.reload(config(&up, tls)).await;
        let r = client.get(&gw.url("/orders/7")).await;
        assert_eq!(r.status, 502, "{what}: {}", r.text());
        assert_eq!(up.requests.load(Ordering::SeqCst), reached, "{what}: the upstream got nothing");
    }

    // And back: the API's client follows its settings live.
    gw.reload(config(&up, good)).await;
    assert_eq!(client.get(&gw.url("/orders/8")).await.status, 200);
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
}

#[tokio::test]
async fn verification_is_off_only_where_the_node_allows_it() {
    let private = Ca::new("upstream CA");
    let up = tls_upstream(&private).await;
    let insecure = json!({ "verify": false });
    let opts = Options { allow_insecure_upstream_tls: true, ..Options::default() };
    let mut gw = Gateway::start_with(config(&up, insecure), opts).await;
    let r = Client::http1().get(&gw.url("/orders/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sni"], Value::Null, "no SNI for an IP address target");
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
}

#[test]
fn unusable_settings_in_a_file_are_refused_with_the_api_and_field() {
    let doc = |tls: Value| {
        let api = json!({
            "name": "orders", "auth_methods": ["anonymous"], "upstream_protocol": "https",
            "targets": [{ "host": "127.0.0.1", "port": 1 }], "upstream_tls": tls,
        });
        serde_json::to_string(&json!({ "apis": [api] })).unwrap()
    };
    let err = |tls: Value| tollgate_gateway::config::file::parse(&doc(tls)).err().map(|e| e.to_string());
    let e = err(json!({ "ca_bundle": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n" }));
    assert!(e.as_deref().is_some_and(|e| e.contains("\"orders\"") && e.contains("upstream_tls/ca_bundle")), "{e:?}");
    let e = err(json!({ "server_name": "bad name" }));
    assert!(e.as_deref().is_some_and(|e| e.contains("upstream_tls/server_name")), "{e:?}");
    let e = err(json!({ "sni": "x" }));
    assert!(e.as_deref().is_some_and(|e| e.contains("unknown field")), "{e:?}");
    assert!(err(json!({ "server_name": "orders.internal" })).is_none());
}

#[tokio::test]
async fn a_client_certificate_reaches_an_upstream_that_asks_for_one() {
    let server_ca = Ca::new("upstream CA");
    let client_ca = Ca::new("client CA");
    let up = tls_upstream_asking(&server_ca, Some(&client_ca)).await;
    // A client certificate naming no host: its holder is its subject.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "gateway");
    let cert = params.signed_by(&key, &client_ca.issuer).unwrap();
    let with_client = |tls: Value, client: bool| {
        let mut doc = config(&up, tls);
        doc["certificates"] =
            json!([{ "name": "gw", "cert": cert.pem(), "key": key.serialize_pem(), "client": client }]);
        doc
    };
    let base = json!({ "ca_bundle": server_ca.pem, "server_name": "orders.internal" });
    let mut named = base.clone();
    named["client_certificate"] = json!("gw");

    let mut gw = Gateway::start(with_client(named.clone(), true)).await;
    let client = Client::http1();
    let ok = client.get(&gw.url("/orders/1")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["client_certs"], 1, "the upstream saw the gateway's certificate");
    let reached = up.requests.load(Ordering::SeqCst);

    gw.reload(with_client(base, true)).await;
    let refused = client.get(&gw.url("/orders/2")).await;
    assert_eq!(refused.status, 502, "no client certificate, no connection: {}", refused.text());
    assert_eq!(up.requests.load(Ordering::SeqCst), reached);
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");

    // In a file: the name must be a client certificate of the same file.
    let err = |doc: Value| {
        tollgate_gateway::config::file::parse(&serde_json::to_string(&doc).unwrap()).err().map(|e| e.to_string())
    };
    assert!(err(with_client(named.clone(), true)).is_none());
    let mut other = named.clone();
    other["client_certificate"] = json!("other");
    let e = err(with_client(other, true));
    assert!(e.as_deref().is_some_and(|e| e.contains("no certificate \"other\"")), "{e:?}");
    let e = err(with_client(named, false));
    assert!(e.as_deref().is_some_and(|e| e.contains("subjectAltName")), "a server certificate needs names: {e:?}");
}
