//! mTLS through the admin: an API's `mtls` settings checked as gateways check them, routes
//! that list `mtls` needing them; certificate bindings with CRUD like every resource, one
//! consumer per fingerprint and per subject (fingerprints compared as stored, whatever form
//! they were sent in), config events for gateways, deleted with their consumer, and read by
//! the gateway's own loader.

use serde_json::json;
use tollgate_admin::testkit::certs::TestCa;
use tollgate_gateway::config::pg::{CatchUp, catch_up, load_full};
use uuid::Uuid;

use crate::helpers::{Admin, assert_problem};

fn id(s: String) -> Uuid {
    s.parse().expect("an id")
}

/// A fingerprint as `openssl x509 -fingerprint -sha256` prints it, and as stored.
fn fingerprint(byte: u8) -> (String, String) {
    (vec![format!("{byte:02X}"); 32].join(":"), format!("{byte:02x}").repeat(32))
}

#[tokio::test]
async fn mtls_settings_are_checked_as_gateways_check_them() {
    let admin = Admin::spawn().await;
    let ca = TestCa::new("client CA");
    let events_before = admin.count("config_events").await;
    let cases = [
        (json!({"auth_methods": ["mtls"]}), "/mtls", "required"),
        (json!({"mtls": {"ca_bundle": "hello"}}), "/mtls/ca_bundle", "no PEM certificate"),
        (json!({"mtls": {"ca_bundle": "x".repeat(300_000)}}), "/mtls/ca_bundle", "KiB"),
        (
            json!({"mtls": {"ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}),
            "/mtls/ca_bundle",
            "trust anchor",
        ),
    ];
    for (mut body, pointer, detail) in cases {
        body["name"] = json!("orders");
        let r = admin.post("/apis", body.clone()).await;
        assert_problem(&r, 422, "validation");
        assert_eq!(r.body["errors"][0]["pointer"], pointer, "{body} → {}", r.body);
        let said = r.body["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(said.contains(detail), "{said:?} should mention {detail:?}");
    }
    let unknown = admin.post("/apis", json!({"name": "orders", "mtls": {"ca_bundle": ca.pem, "crl": "x"}})).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert_eq!(admin.count("apis").await, 0);
    assert_eq!(admin.count("config_events").await, events_before, "a refused API changes nothing");

    // A route may list mtls only when its API has the settings, which then cannot be dropped.
    let plain = admin.post("/apis", json!({"name": "plain", "auth_methods": ["key_auth"]})).await.id();
    let r = admin
        .post(&format!("/apis/{plain}/routes"), json!({"name": "r", "paths": ["/r"], "auth_methods": ["mtls"]}))
        .await;
    assert_problem(&r, 422, "validation");
    assert!(r.body["errors"][0]["detail"].as_str().unwrap_or_default().contains("no mtls settings"), "{}", r.body);
    let mtls = json!({"ca_bundle": ca.pem});
    let created = admin
        .post("/apis", json!({"name": "orders", "auth_methods": ["key_auth", "mtls"], "mtls": mtls.clone()}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!((created.body["mtls"].clone(), created.body["auth_methods"][1].clone()), (mtls.clone(), json!("mtls")));
    let api = created.id();
    let route = admin
        .post(&format!("/apis/{api}/routes"), json!({"name": "r", "paths": ["/r"], "auth_methods": ["mtls"]}))
        .await;
    assert_eq!(route.status, 201, "{}", route.body);
    let dropped = admin.patch(&format!("/apis/{api}"), json!({"auth_methods": ["key_auth"], "mtls": null}), None).await;
    assert_problem(&dropped, 422, "validation");
    assert!(
        dropped.body["errors"][0]["detail"].as_str().unwrap_or_default().contains("route \"r\""),
        "{}",
        dropped.body
    );

    let data = load_full(&admin.app.pool).await.expect("full load");
    assert_eq!(data.apis[&id(api)].mtls, Some(mtls));
}

#[tokio::test]
async fn certificate_bindings_lifecycle() {
    let admin = Admin::spawn().await;
    let acme = admin.post("/consumers", json!({"name": "acme"})).await.id();
    let other = admin.post("/consumers", json!({"name": "other"})).await.id();
    let (printed, stored) = fingerprint(0xAB);

    let created = admin.post("/certificate-bindings", json!({"consumer_id": acme, "fingerprint": printed})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    assert_eq!((created.body["fingerprint"].as_str(), &created.body["subject"]), (Some(stored.as_str()), &json!(null)));
    let id_fp = created.id();
    let by_subject =
        admin.post("/certificate-bindings", json!({"consumer_id": acme, "subject": "spiffe://example/orders"})).await;
    assert_eq!(by_subject.status, 201, "{}", by_subject.body);

    // One consumer per fingerprint (in whatever form it is sent) and per subject.
    for body in [
        json!({"consumer_id": other, "fingerprint": stored}),
        json!({"consumer_id": other, "fingerprint": stored.to_uppercase()}),
        json!({"consumer_id": other, "subject": "spiffe://example/orders"}),
    ] {
        let taken = admin.post("/certificate-bindings", body.clone()).await;
        assert_problem(&taken, 409, "conflict");
    }
    for (body, pointer) in [
        (json!({"consumer_id": acme}), "/fingerprint"),
        (json!({"consumer_id": acme, "fingerprint": fingerprint(1).1, "subject": "s"}), "/fingerprint"),
        (json!({"consumer_id": acme, "fingerprint": "abc"}), "/fingerprint"),
        (json!({"consumer_id": acme, "fingerprint": "zz".repeat(32)}), "/fingerprint"),
        (json!({"consumer_id": acme, "subject": ""}), "/subject"),
        (json!({"consumer_id": acme, "subject": "a\nb"}), "/subject"),
        (json!({"consumer_id": acme, "subject": "s".repeat(1001)}), "/subject"),
        (json!({"consumer_id": Uuid::now_v7(), "subject": "x"}), "/consumer_id"),
        (json!({"consumer_id": acme, "subject": "x", "issuer": "y"}), "/issuer"),
    ] {
        let r = admin.post("/certificate-bindings", body.clone()).await;
        assert_problem(&r, 422, "validation");
        assert_eq!(r.body["errors"][0]["pointer"], pointer, "{body} → {}", r.body);
    }
    assert_eq!(admin.count("certificate_bindings").await, 2);

    let mine = admin.get(&format!("/certificate-bindings?consumer_id={acme}")).await;
    assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(2));
    let found = admin.get(&format!("/certificate-bindings?fingerprint={printed}")).await;
    assert_eq!(found.body["data"][0]["id"], json!(id_fp), "found by the printed form");
    let none = admin.get("/certificate-bindings?fingerprint=nonsense").await;
    assert_eq!(none.body["data"].as_array().map(Vec::len), Some(0), "a malformed filter matches nothing");

    // A binding turns from fingerprint to subject, then moves to another consumer.
    let patched = admin
        .patch(&format!("/certificate-bindings/{id_fp}"), json!({"fingerprint": null, "subject": "svc"}), Some("\"1\""))
        .await;
    assert_eq!((patched.status, patched.etag.as_deref()), (200, Some("\"2\"")), "{}", patched.body);
    let moved =
        admin.patch(&format!("/certificate-bindings/{id_fp}"), json!({"consumer_id": other}), Some("\"2\"")).await;
    assert_eq!(moved.body["consumer_id"], json!(other));
    assert_eq!(admin.delete(&format!("/certificate-bindings/{id_fp}"), Some("\"3\"")).await.status, 204);
    let events = admin.get(&format!("/config-events?entity_kind=certificate_binding&entity_id={id_fp}")).await;
    let ops: Vec<&str> =
        events.body["data"].as_array().into_iter().flatten().filter_map(|e| e["op"].as_str()).collect();
    assert_eq!(ops, ["create", "update", "update", "delete"]);

    // Gateways follow: a new binding by catch-up, and a consumer's deletion (whose cascade
    // writes no binding events) takes its bindings along.
    let pool = &admin.app.pool;
    let mut data = load_full(pool).await.expect("full load");
    assert_eq!(data.certificate_bindings.len(), 1);
    let (_, other_fp) = fingerprint(0x01);
    let late = admin.post("/certificate-bindings", json!({"consumer_id": other, "fingerprint": other_fp})).await.id();
    assert_eq!(admin.delete(&format!("/consumers/{acme}"), None).await.status, 204);
    let CatchUp::Applied { changed, .. } = catch_up(pool, &mut data).await.expect("catch up") else {
        panic!("expected applied events")
    };
    assert!(changed.identities && changed.identity_ids.contains(&id(late.clone())), "{changed:?}");
    assert_eq!(data, load_full(pool).await.expect("full load"), "catch-up ends where a full load does");
    let left: Vec<Uuid> = data.certificate_bindings.keys().copied().collect();
    assert_eq!(left, [id(late)]);
    assert_eq!(data.certificate_bindings.values().next().and_then(|b| b.fingerprint.clone()), Some(other_fp));
}
