//! TLS certificates: uploads are checked (chain order, names, expiry, the key is the leaf's),
//! the leaf is described, the private key is sealed at rest and never returned, replacing
//! keeps the id, every write reaches the change log; without a secrets key nothing is
//! stored; viewers read but do not write.

use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use tollgate_admin::testkit::certs::TestCa;
use tollgate_gateway::seal::Keyring;

use crate::helpers::{Admin, assert_problem};

async fn admin_with_secrets() -> (Admin, Arc<Keyring>) {
    let ring = Arc::new(Keyring::new(&Keyring::generate_key(), &[]).unwrap_or_else(|e| panic!("{e}")));
    let for_admin = ring.clone();
    (Admin::spawn_with(move |c| c.secrets = Some(for_admin)).await, ring)
}

fn upload(chain: &str, key: &str) -> serde_json::Value {
    json!({"cert": chain, "key": key})
}

#[tokio::test]
async fn a_certificate_is_described_sealed_and_replaced_in_place() {
    let (admin, ring) = admin_with_secrets().await;
    let ca = TestCa::new("Tollgate Test CA");
    let leaf = ca.leaf(&["API.example.com", "*.example.com", "127.0.0.1"]);
    let created = admin.post("/certificates", upload(&leaf.chain_pem, &leaf.key_pem)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.id();
    let body = &created.body;
    assert_eq!(body["names"], json!(["api.example.com", "*.example.com", "127.0.0.1"]));
    assert_eq!(body["chain_length"], 2);
    assert_eq!(body["is_default"], false);
    assert!(body["issuer"].as_str().is_some_and(|i| i.contains("Tollgate Test CA")), "{body}");
    assert!(body["subject"].as_str().is_some_and(|s| s.contains("API.example.com")), "{body}");
    use sha2::Digest;
    assert_eq!(body["fingerprint_sha256"], hex::encode(sha2::Sha256::digest(&leaf.der)));
    assert!(body.get("key").is_none() && !body.to_string().contains("PRIVATE KEY"), "{body}");

    // At rest the key is sealed for this row, and opens to what was uploaded.
    let (sealed,): (String,) = sqlx::query_as("SELECT key_sealed FROM certificates WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&admin.app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sealed.starts_with("tg1:") && !sealed.contains("PRIVATE"), "{sealed}");
    let row_id: uuid::Uuid = id.parse().unwrap_or_else(|e| panic!("{e}"));
    let opened = ring.open(&sealed, &tollgate_gateway::seal::certificate_key_aad(row_id));
    assert_eq!(opened.as_deref(), Ok(leaf.key_pem.as_bytes()));
    // Neither reads nor the audit log carry it.
    let read = admin.get(&format!("/certificates/{id}")).await;
    assert_eq!(read.body["names"], body["names"]);
    assert!(!read.body.to_string().contains("PRIVATE KEY"));
    let audit = admin.get(&format!("/audit-log?entity_kind=certificate&entity_id={id}")).await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(!audit.body.to_string().contains("PRIVATE KEY") && !audit.body.to_string().contains(&sealed));

    // A renewal replaces it in place: same id, new version, new leaf; a stale If-Match is 412.
    let renewed = ca.leaf(&["api.example.com"]);
    let replaced = admin
        .send(
            reqwest::Method::PUT,
            &format!("/certificates/{id}"),
            Some(upload(&renewed.chain_pem, &renewed.key_pem)),
            Some("\"1\""),
        )
        .await;
    assert_eq!((replaced.status, replaced.etag.as_deref()), (200, Some("\"2\"")), "{}", replaced.body);
    assert_eq!(replaced.body["id"], id.as_str());
    assert_eq!(replaced.body["names"], json!(["api.example.com"]));
    assert_ne!(replaced.body["fingerprint_sha256"], body["fingerprint_sha256"]);
    let stale = admin
        .send(
            reqwest::Method::PUT,
            &format!("/certificates/{id}"),
            Some(upload(&leaf.chain_pem, &leaf.key_pem)),
            Some("\"1\""),
        )
        .await;
    assert_problem(&stale, 412, "stale-version");

    // Filters: by name, and the ones to renew.
    let named = admin.get("/certificates?name=API.example.com").await;
    assert_eq!(named.body["data"].as_array().map(Vec::len), Some(1), "{}", named.body);
    let soon = admin.get("/certificates?expires_before=2020-01-01T00:00:00Z").await;
    assert_eq!(soon.body["data"].as_array().map(Vec::len), Some(0), "{}", soon.body);

    assert_eq!(admin.delete(&format!("/certificates/{id}"), Some("\"2\"")).await.status, 204);
    let events = admin.get(&format!("/config-events?entity_kind=certificate&entity_id={id}")).await;
    let ops: Vec<&str> =
        events.body["data"].as_array().into_iter().flatten().filter_map(|e| e["op"].as_str()).collect();
    assert_eq!(ops, ["create", "update", "delete"]);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_the_reason_and_store_nothing() {
    let (admin, _) = admin_with_secrets().await;
    let events_before = admin.count("config_events").await;
    let ca = TestCa::new("CA one");
    let other_ca = TestCa::new("CA two");
    let good = ca.leaf(&["good.example"]);
    let other = ca.leaf(&["other.example"]);
    let now = OffsetDateTime::now_utc();
    let expired = ca.leaf_valid(&["old.example"], now - Duration::days(30), now - Duration::days(1));
    let foreign = other_ca.leaf(&["foreign.example"]);
    let misordered = format!("{}{}", ca.pem, good.leaf_pem);
    let wrong_issuer = format!("{}{}", foreign.leaf_pem, ca.pem);
    let no_names = ca.leaf(&[]);
    let encrypted_key = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (upload(&expired.chain_pem, &expired.key_pem), "/cert", "expired"),
        (upload(&good.chain_pem, &other.key_pem), "/key", "does not belong"),
        (upload(&misordered, &good.key_pem), "/cert", "not issued by"),
        (upload(&wrong_issuer, &foreign.key_pem), "/cert", "not issued by"),
        (upload(&no_names.chain_pem, &no_names.key_pem), "/cert", "subjectAltName"),
        (upload("hello", &good.key_pem), "/cert", "no certificate"),
        (upload("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", &good.key_pem), "/cert", "parse"),
        (upload(&good.chain_pem, "not a key"), "/key", "not a PEM private key"),
        (upload(&good.chain_pem, encrypted_key), "/key", "passphrase"),
        (upload("", &good.key_pem), "/cert", "empty"),
        (upload(&good.chain_pem, &"k".repeat(17 * 1024)), "/key", "16 KiB"),
    ];
    for (body, pointer, reason) in cases {
        let r = admin.post("/certificates", body).await;
        assert_problem(&r, 422, "validation");
        assert_eq!(r.body["errors"][0]["pointer"], pointer, "{}", r.body);
        let detail = r.body["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{reason:?} not in {detail:?}");
    }
    let unknown =
        admin.post("/certificates", json!({"cert": good.chain_pem, "key": good.key_pem, "names": ["x"]})).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert_eq!(admin.count("certificates").await, 0);
    assert_eq!(admin.count("config_events").await, events_before);
}

#[tokio::test]
async fn without_a_secrets_key_nothing_is_stored() {
    let admin = Admin::spawn().await;
    let leaf = TestCa::new("CA").leaf(&["a.example"]);
    let r = admin.post("/certificates", upload(&leaf.chain_pem, &leaf.key_pem)).await;
    assert_problem(&r, 409, "conflict");
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("--secrets-key")), "{}", r.body);
    assert_eq!(admin.count("certificates").await, 0);
}

#[tokio::test]
async fn viewers_read_certificates_but_do_not_upload_them() {
    let (admin, _) = admin_with_secrets().await;
    let leaf = TestCa::new("CA").leaf(&["a.example"]);
    assert_eq!(admin.post("/certificates", upload(&leaf.chain_pem, &leaf.key_pem)).await.status, 201);
    let viewer = admin.user_token("viewer@example.com", "viewer").await;
    let listed = admin.send_as(Some(&viewer), reqwest::Method::GET, "/certificates", None, None).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.body.to_string().contains("PRIVATE KEY"));
    let refused = admin
        .send_as(
            Some(&viewer),
            reqwest::Method::POST,
            "/certificates",
            Some(upload(&leaf.chain_pem, &leaf.key_pem)),
            None,
        )
        .await;
    assert_problem(&refused, 403, "forbidden");
    assert_eq!(admin.count("certificates").await, 1);
}

#[tokio::test]
async fn client_certificates_serve_upstream_tls_and_stay_while_an_api_names_them() {
    let (admin, _) = admin_with_secrets().await;
    let ca = TestCa::new("client CA");
    // A client certificate may name no host.
    let client = ca.leaf(&[]);
    let refused = admin.post("/certificates", upload(&client.chain_pem, &client.key_pem)).await;
    assert_problem(&refused, 422, "validation");
    assert_eq!(refused.body["errors"][0]["pointer"], "/cert", "a server certificate needs names");
    let as_default = admin
        .post(
            "/certificates",
            json!({"cert": client.chain_pem, "key": client.key_pem, "usage": "client", "is_default": true}),
        )
        .await;
    assert_problem(&as_default, 422, "validation");
    assert_eq!(as_default.body["errors"][0]["pointer"], "/is_default");
    let made =
        admin.post("/certificates", json!({"cert": client.chain_pem, "key": client.key_pem, "usage": "client"})).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["usage"], "client");
    assert_eq!(made.body["names"], json!([]));
    let cert = made.id();
    let server = ca.leaf(&["api.example.com"]);
    let server = admin.post("/certificates", upload(&server.chain_pem, &server.key_pem)).await.id();

    let api = |name: &str, id: &str| json!({"name": name, "upstream_protocol": "https", "upstream_tls": {"client_certificate_id": id}});
    let wrong = admin.post("/apis", api("wrong", &server)).await;
    assert_problem(&wrong, 422, "validation");
    assert_eq!(wrong.body["errors"][0]["pointer"], "/upstream_tls", "{}", wrong.body);
    let missing = admin.post("/apis", api("missing", &uuid::Uuid::now_v7().to_string())).await;
    assert_problem(&missing, 422, "validation");
    let orders = admin.post("/apis", api("orders", &cert)).await;
    assert_eq!(orders.status, 201, "{}", orders.body);

    let deleted = admin.delete(&format!("/certificates/{cert}"), None).await;
    assert_problem(&deleted, 409, "conflict");
    let data = tollgate_gateway::config::pg::load_full(&admin.app.pool).await.expect("full load");
    let def = &data.certificates[&cert.parse().expect("id")];
    assert!(def.client && def.names.is_empty(), "gateways see a client certificate");
    assert!(!data.certificates[&server.parse().expect("id")].client);

    let orders = orders.id();
    assert_eq!(admin.delete(&format!("/apis/{orders}"), None).await.status, 204);
    assert_eq!(admin.delete(&format!("/certificates/{cert}"), None).await.status, 204, "free once no API names it");
}
