//! What gateways read of what the admin wrote: the edge security settings through the
//! gateway's own loader (full load and change-log catch-up, cascades included).

use serde_json::json;
use tollgate_gateway::config::pg::{CatchUp, load_full};
use uuid::Uuid;

use crate::helpers::Admin;

const HS_SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I";

fn id(s: String) -> Uuid {
    s.parse().expect("an id")
}

#[tokio::test]
async fn gateways_load_edge_settings_and_follow_their_changes() {
    let admin = Admin::spawn().await;
    let jwt = json!({"algorithms": ["HS256"], "keys": [{"kid": "k", "alg": "HS256", "secret": HS_SECRET}]});
    let api = admin
        .post(
            "/apis",
            json!({"name": "orders", "auth_methods": ["jwt", "anonymous"], "jwt": jwt, "key_query_param": "k"}),
        )
        .await
        .id();
    let route = admin
        .post(
            &format!("/apis/{api}/routes"),
            json!({"name": "search", "paths": ["/s"], "cost": 3, "auth_methods": ["jwt"]}),
        )
        .await
        .id();
    let anon = admin.post(&format!("/apis/{api}/plans"), json!({"name": "anon"})).await.id();
    let gold = admin
        .post(&format!("/apis/{api}/plans"), json!({"name": "gold", "route_costs": {route.clone(): 7}}))
        .await
        .id();
    assert_eq!(admin.patch(&format!("/apis/{api}"), json!({"anonymous_plan_id": anon}), None).await.status, 200);
    let acme = admin.post("/consumers", json!({"name": "acme"})).await.id();
    let binding = admin.post("/token-bindings", json!({"consumer_id": acme, "issuer": "i", "subject": "s"})).await.id();

    let pool = &admin.app.pool;
    let mut data = load_full(pool).await.expect("full load");
    let def = &data.apis[&id(api.clone())];
    assert_eq!(
        def.jwt.as_ref().map(|j| j["keys"][0]["secret"].clone()),
        Some(json!(HS_SECRET)),
        "gateways get the secret"
    );
    assert_eq!(
        (def.key_header.as_str(), def.key_query_param.as_deref(), def.hide_credentials),
        ("x-api-key", Some("k"), true)
    );
    assert_eq!(def.anonymous_plan_id, Some(id(anon.clone())));
    let r = &data.routes[&id(route.clone())];
    assert_eq!((r.cost, r.auth_methods.clone()), (3, Some(vec!["jwt".to_owned()])));
    assert_eq!(data.plans[&id(gold.clone())].route_costs.get(&id(route.clone())), Some(&7));
    assert_eq!(data.token_bindings[&id(binding)].consumer_id, id(acme.clone()));

    // Deletions whose cascades write no events of their own: the route's cost override, the
    // anonymous plan, the consumer's bindings.
    assert_eq!(admin.delete(&format!("/apis/{api}/routes/{route}"), None).await.status, 204);
    assert_eq!(admin.delete(&format!("/apis/{api}/plans/{anon}"), None).await.status, 204);
    assert_eq!(admin.delete(&format!("/consumers/{acme}"), None).await.status, 204);
    let other = admin.post("/consumers", json!({"name": "other"})).await.id();
    admin.post("/token-bindings", json!({"consumer_id": other, "issuer": "i", "subject": "s"})).await;
    let outcome = tollgate_gateway::config::pg::catch_up(pool, &mut data).await.expect("catch up");
    let CatchUp::Applied { changed, .. } = outcome else { panic!("expected applied events, got {outcome:?}") };
    assert!(changed.identities && changed.plans, "{changed:?}");
    assert_eq!(data, load_full(pool).await.expect("full load"), "catch-up ends where a full load does");
    assert!(data.plans[&id(gold)].route_costs.is_empty());
    assert_eq!(data.token_bindings.len(), 1);
}

#[tokio::test]
async fn upstream_tls_is_checked_as_gateways_check_it_and_reaches_them() {
    let admin = Admin::spawn().await;
    let ca = tollgate_admin::testkit::certs::TestCa::new("upstream CA");
    let events_before = admin.count("config_events").await;
    let cases = [
        (json!({"upstream_protocol": "https", "upstream_tls": {"ca_bundle": "hello"}}), "/upstream_tls/ca_bundle"),
        (json!({"upstream_protocol": "https", "upstream_tls": {"server_name": "a b"}}), "/upstream_tls/server_name"),
        (json!({"upstream_tls": {"server_name": "orders.internal"}}), "/upstream_tls"),
    ];
    for (mut body, pointer) in cases {
        body["name"] = json!("orders");
        let r = admin.post("/apis", body).await;
        crate::helpers::assert_problem(&r, 422, "validation");
        assert_eq!(r.body["errors"][0]["pointer"], pointer, "{}", r.body);
    }
    let unknown = admin.post("/apis", json!({"name": "orders", "upstream_tls": {"sni": "x"}})).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert_eq!(admin.count("apis").await, 0);
    assert_eq!(admin.count("config_events").await, events_before, "a refused API changes nothing");

    let tls =
        json!({"ca_bundle": ca.pem, "server_name": "orders.internal", "verify": true, "client_certificate_id": null});
    let created =
        admin.post("/apis", json!({"name": "orders", "upstream_protocol": "https", "upstream_tls": tls})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["upstream_tls"], tls);
    let api = id(created.id());
    let data = load_full(&admin.app.pool).await.expect("full load");
    assert_eq!(data.apis[&api].upstream_tls, Some(tls));
}
