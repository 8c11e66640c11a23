//! TLS termination across the planes: certificates uploaded through the admin REST API are
//! served by a gateway's HTTPS listener (`--tls-listen`), chosen by the name the client asks
//! for, with HTTP/2 or HTTP/1.1 by ALPN; a certificate replaced through the admin is served
//! on new connections with no failed request, while connections already open go on.
//!
//! The clients trust only the test's own CA and check names as browsers do, so a wrong
//! certificate fails the request. Deadlines are generous; the swap's latency is printed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::json;
use sha2::Digest;
use tollgate_admin::testkit::certs::{TestCa, TestCert};
use tollgate_admin::testkit::test_database;
use tollgate_gateway::seal::Keyring;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long an uploaded or replaced certificate may take to be served.
const PROPAGATION: Duration = Duration::from_secs(5);

/// A gateway with an HTTPS listener, an admin sharing its secrets key, and an echo API.
struct Setup {
    admin: Admin,
    gateway: Gateway,
    /// The HTTPS listener's address.
    tls: SocketAddr,
    upstream: Upstream,
    _scratch: ScratchDir,
}

impl Setup {
    async fn start(url: &str) -> anyhow::Result<Self> {
        let key = Keyring::generate_key();
        let ring = Arc::new(Keyring::new(&key, &[]).map_err(|e| anyhow::anyhow!("{e}"))?);
        let admin = Admin::start_with(url, move |c| c.secrets = Some(ring)).await?;
        let upstream = Upstream::start_echo("tls").await?;
        admin.publish("tls", upstream.addr, &["/tls"]).await?;
        let scratch = ScratchDir::new()?;
        let gateway = Gateway::start_with(url, scratch.path(), |cmd| {
            cmd.args(["--tls-listen", "127.0.0.1:0"]).env("TOLLGATE_SECRETS_KEY", &key);
        })
        .await?;
        let log = gateway.stderr();
        let tls = log
            .lines()
            .find(|l| l.contains("gateway HTTPS listening"))
            .and_then(|line| line.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no HTTPS listener in the log:\n{log}"))?;
        Ok(Self { admin, gateway, tls, upstream, _scratch: scratch })
    }

    async fn upload(&self, cert: &TestCert, is_default: bool) -> anyhow::Result<String> {
        let body = json!({"cert": cert.chain_pem, "key": cert.key_pem, "is_default": is_default});
        let created = self.admin.send(Method::POST, "/certificates", Some(body)).await?;
        Ok(created["id"].as_str().context("no id")?.to_owned())
    }
}

/// A client trusting only `ca`, offering `alpn`, resolving every name to `addr`; with
/// `fresh`, each request opens a new connection (and so a new handshake: HTTP/1.1 only, as
/// an HTTP/2 connection is kept and shared whatever the idle pool's size).
fn client(
    ca: &TestCa,
    alpn: &[&[u8]],
    addr: SocketAddr,
    names: &[&str],
    fresh: bool,
) -> anyhow::Result<reqwest::Client> {
    client_as(ca, None, alpn, addr, names, fresh)
}

/// [`client`], presenting `identity`'s certificate when the server asks for one.
fn client_as(
    ca: &TestCa,
    identity: Option<&TestCert>,
    alpn: &[&[u8]],
    addr: SocketAddr,
    names: &[&str],
    fresh: bool,
) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca.der.clone()))?;
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => {
            let chain = rustls::pki_types::CertificateDer::pem_slice_iter(id.chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(config)
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    if fresh {
        builder = builder.pool_max_idle_per_host(0);
    }
    for name in names {
        builder = builder.resolve(name, addr);
    }
    Ok(builder.build()?)
}

/// What a request over TLS saw: status, HTTP version, the server's leaf (DER), the body.
struct Seen {
    status: u16,
    version: reqwest::Version,
    leaf: Vec<u8>,
    body: serde_json::Value,
}

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<Seen> {
    let res = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let leaf = res
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let (status, version) = (res.status().as_u16(), res.version());
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    Ok(Seen { status, version, leaf, body })
}

#[tokio::test]
async fn certificates_are_chosen_by_name_and_served_over_h1_and_h2() -> anyhow::Result<()> {
    let db = test_database().await;
    let s = Setup::start(&db.url).await?;
    let ca = TestCa::new("Tollgate e2e CA");
    let (exact, wildcard, default) =
        (ca.leaf(&["a.tls.test"]), ca.leaf(&["*.w.tls.test"]), ca.leaf(&["127.0.0.1", "default.tls.test"]));
    s.upload(&exact, false).await?;
    s.upload(&wildcard, false).await?;
    s.upload(&default, true).await?;
    let port = s.tls.port();
    let names = ["a.tls.test", "x.w.tls.test", "deep.x.w.tls.test"];
    let h1 = client(&ca, &[b"http/1.1"], s.tls, &names, false)?;
    let h2 = client(&ca, &[b"h2", b"http/1.1"], s.tls, &names, false)?;

    let first = eventually("the exact-name certificate to be served", PROPAGATION, || async {
        match fetch(&h1, &format!("https://a.tls.test:{port}/tls")).await {
            Ok(seen) if seen.status == 200 => Ok(seen),
            Ok(seen) => Err(format!("status {}", seen.status)),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await?;
    assert_eq!(first.leaf, exact.der, "the certificate naming a.tls.test");
    assert_eq!(first.version, reqwest::Version::HTTP_11);
    assert_eq!(first.body["path"], "/tls");
    assert_eq!(first.body["headers"]["x-forwarded-proto"], json!(["https"]), "{}", first.body);

    let wild = fetch(&h2, &format!("https://x.w.tls.test:{port}/tls")).await?;
    assert_eq!((wild.status, wild.version), (200, reqwest::Version::HTTP_2));
    assert_eq!(wild.leaf, wildcard.der, "*.w.tls.test covers x.w.tls.test");
    assert_eq!(wild.body["headers"]["x-forwarded-proto"], json!(["https"]));
    // A wildcard covers one label only: two levels down gets the default certificate, which
    // does not name it, and the client refuses it.
    assert!(fetch(&h2, &format!("https://deep.x.w.tls.test:{port}/tls")).await.is_err());

    // No server name (an IP address): the default certificate.
    let by_ip = fetch(&h1, &format!("https://127.0.0.1:{port}/tls")).await?;
    assert_eq!((by_ip.status, by_ip.leaf == default.der), (200, true));

    // Deleting a certificate takes it out of the listener.
    let list = s.admin.get("/certificates?name=*.w.tls.test").await?;
    let id = list["data"][0]["id"].as_str().context("the wildcard certificate")?.to_owned();
    s.admin.send(Method::DELETE, &format!("/certificates/{id}"), None).await?;
    let fresh = client(&ca, &[b"http/1.1"], s.tls, &names, true)?;
    eventually("the deleted certificate to go", PROPAGATION, || async {
        match fetch(&fresh, &format!("https://x.w.tls.test:{port}/tls")).await {
            Err(_) => Ok(()),
            Ok(seen) => Err(format!("still served: status {}", seen.status)),
        }
    })
    .await?;
    // The plain listener is unchanged.
    assert_eq!(s.gateway.get("/tls").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_replaced_certificate_is_served_on_new_connections_without_a_failed_request() -> anyhow::Result<()> {
    let db = test_database().await;
    let s = Setup::start(&db.url).await?;
    let ca = TestCa::new("Tollgate e2e CA");
    let (old, new) = (ca.leaf(&["swap.tls.test"]), ca.leaf(&["swap.tls.test"]));
    let id = s.upload(&old, false).await?;
    let url = format!("https://swap.tls.test:{}/tls", s.tls.port());
    let kept = client(&ca, &[b"http/1.1"], s.tls, &["swap.tls.test"], false)?;
    eventually("the first certificate", PROPAGATION, || async {
        match fetch(&kept, &url).await {
            Ok(seen) if seen.status == 200 && seen.leaf == old.der => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.status))),
        }
    })
    .await?;

    // Clients opening a new connection for every request, before, during and after the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let mut load = Vec::new();
    for _ in 0..4 {
        let fresh = client(&ca, &[b"http/1.1"], s.tls, &["swap.tls.test"], true)?;
        let (stop, sent, failed, url) = (stop.clone(), sent.clone(), failed.clone(), url.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match fetch(&fresh, &url).await {
                    Ok(seen) if seen.status == 200 => {}
                    Ok(seen) => failed.lock().map(|mut f| f.push(format!("status {}", seen.status))).unwrap_or(()),
                    Err(e) => failed.lock().map(|mut f| f.push(format!("{e:#}"))).unwrap_or(()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"cert": new.chain_pem, "key": new.key_pem});
    s.admin.send(Method::PUT, &format!("/certificates/{id}"), Some(body)).await?;
    let replaced = Instant::now();
    let probe = client(&ca, &[b"http/1.1"], s.tls, &["swap.tls.test"], true)?;
    eventually("the new certificate on new connections", PROPAGATION, || async {
        match fetch(&probe, &url).await {
            Ok(seen) if seen.leaf == new.der => Ok(()),
            Ok(_) => Err("still the old certificate".to_owned()),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await?;
    println!("a replaced certificate was served on a new connection {:?} after the admin answered", replaced.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await?;
    }
    let failures = failed.lock().map(|f| f.clone()).unwrap_or_default();
    let total = sent.load(Ordering::Relaxed);
    assert!(total >= 20, "only {total} requests were sent");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // The connection opened before the swap is still open, still on the old certificate.
    let again = fetch(&kept, &url).await?;
    assert_eq!((again.status, again.leaf == old.der), (200, true), "the kept-alive connection survived the swap");
    assert!(s.upstream.requests_seen() >= total, "every request reached the upstream");
    Ok(())
}

/// mTLS across the planes: an API trusting a client CA, consumers bound to certificates
/// through the admin REST API (by subject name and by fingerprint as openssl prints it);
/// bindings made and deleted reach the gateway, and a deleted binding refuses the certificate
/// on the connection the client already has open.
#[tokio::test]
async fn client_certificates_bound_through_the_admin_identify_consumers() -> anyhow::Result<()> {
    let db = test_database().await;
    let s = Setup::start(&db.url).await?;
    let server_ca = TestCa::new("Tollgate e2e CA");
    s.upload(&server_ca.leaf(&["mtls.test"]), true).await?;
    let clients = TestCa::new("Tollgate e2e client CA");
    let (svc, other) = (clients.leaf(&["svc.clients.test"]), clients.leaf(&["other.clients.test"]));
    let api = s
        .admin
        .create_api_with(json!({"name": "secure", "auth_methods": ["mtls"], "mtls": {"ca_bundle": clients.pem}}))
        .await?;
    s.admin.add_target(&api, s.upstream.addr).await?;
    s.admin.add_route(&api, "secure", &["/secure"]).await?;
    let plan = s.admin.create_plan(&api, json!({"name": "gold"})).await?;
    let (svc_consumer, other_consumer) = (
        s.admin.create_consumer(json!({"name": "svc"})).await?,
        s.admin.create_consumer(json!({"name": "other"})).await?,
    );
    s.admin.subscribe(&svc_consumer, &plan).await?;
    s.admin.subscribe(&other_consumer, &plan).await?;
    let binding = json!({"consumer_id": svc_consumer, "subject": "svc.clients.test"});
    let bound = s.admin.send(Method::POST, "/certificate-bindings", Some(binding)).await?;
    let bound = bound["id"].as_str().context("binding id")?.to_owned();

    let port = s.tls.port();
    let url = format!("https://mtls.test:{port}/secure");
    // Waited for on new connections: one made before the listener asked for certificates
    // carries none for as long as it stays open.
    let as_svc_new = client_as(&server_ca, Some(&svc), &[b"http/1.1"], s.tls, &["mtls.test"], true)?;
    let seen = eventually("the certificate's consumer to be let in", PROPAGATION, || async {
        match fetch(&as_svc_new, &url).await {
            Ok(seen) if seen.status == 200 => Ok(seen),
            Ok(seen) => Err(format!("status {}: {}", seen.status, seen.body)),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await?;
    assert_eq!(seen.body["headers"]["x-consumer-username"], json!(["svc"]), "{}", seen.body);
    assert_eq!(seen.body["headers"]["x-credential-id"], json!([bound]));

    // Not bound yet: refused, saying so; then bound by fingerprint, as openssl prints it.
    let as_other = client_as(&server_ca, Some(&other), &[b"http/1.1"], s.tls, &["mtls.test"], false)?;
    let refused = fetch(&as_other, &url).await?;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("not bound")), "{}", refused.body);
    let digest = sha2::Sha256::digest(&other.der);
    let openssl: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    let body = json!({"consumer_id": other_consumer, "fingerprint": openssl.join(":")});
    let stored = s.admin.send(Method::POST, "/certificate-bindings", Some(body)).await?;
    assert_eq!(stored["fingerprint"].as_str().map(str::len), Some(64), "stored as plain hex: {stored}");
    eventually("the fingerprint binding to reach the gateway", PROPAGATION, || async {
        match fetch(&as_other, &url).await {
            Ok(seen) if seen.status == 200 && seen.body["headers"]["x-consumer-username"] == json!(["other"]) => Ok(()),
            Ok(seen) => Err(format!("status {}", seen.status)),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await?;

    // Unbinding refuses the certificate on the client's open connection.
    let as_svc = client_as(&server_ca, Some(&svc), &[b"http/1.1"], s.tls, &["mtls.test"], false)?;
    assert_eq!(fetch(&as_svc, &url).await?.status, 200, "a kept-alive connection with the bound certificate");
    s.admin.send(Method::DELETE, &format!("/certificate-bindings/{bound}"), None).await?;
    eventually("the deleted binding to refuse the certificate", PROPAGATION, || async {
        match fetch(&as_svc, &url).await {
            Ok(seen) if seen.status == 401 => Ok(()),
            Ok(seen) => Err(format!("status {}", seen.status)),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await?;
    // Without a certificate, the API says what it needs; over plain HTTP too.
    let anonymous = client(&server_ca, &[b"http/1.1"], s.tls, &["mtls.test"], false)?;
    let missing = fetch(&anonymous, &url).await?;
    assert_eq!(missing.status, 401);
    assert!(missing.body["detail"].as_str().is_some_and(|d| d.contains("client certificate")), "{}", missing.body);
    assert_eq!(s.gateway.get("/secure").await?.0, 401);
    Ok(())
}
