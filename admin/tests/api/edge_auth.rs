//! Edge authentication settings of APIs (`docs/auth.md`): JWT and introspection settings
//! with their 422s, the save-time SSRF check, secrets that never leave the admin, the
//! anonymous plan, per-route cost and auth methods, and per-plan route costs.

use serde_json::{Value, json};

use crate::helpers::{Admin, assert_problem};

/// 32 bytes, base64url without padding: a valid HS256 secret.
const HS_SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I";
const ED_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAYUtn2NlRRvs14G7i2kdw+m8ryrBadw8IaV9BkyzMEwE=\n-----END PUBLIC KEY-----\n";
const CLIENT_SECRET: &str = "introspection-client-secret";

fn jwt_with_keys() -> Value {
    json!({
        "algorithms": ["HS256", "EdDSA"],
        "keys": [{"kid": "hs", "alg": "HS256", "secret": HS_SECRET}, {"kid": "ed", "alg": "EdDSA", "pem": ED_PEM}],
        "issuers": ["https://idp.example.com/"],
    })
}

fn introspection() -> Value {
    json!({"url": "https://8.8.8.8/introspect", "client_id": "gateway", "client_secret": CLIENT_SECRET})
}

/// The first field error's pointer and detail.
fn first_error(r: &crate::helpers::Resp) -> (String, String) {
    let e = &r.body["errors"][0];
    (e["pointer"].as_str().unwrap_or_default().to_owned(), e["detail"].as_str().unwrap_or_default().to_owned())
}

/// The stored `jwt` and `introspection` columns of API `id`, read past the API.
async fn stored(admin: &Admin, id: &str) -> (Value, Value) {
    let id: uuid::Uuid = id.parse().expect("api id");
    sqlx::query_as("SELECT coalesce(jwt, 'null'), coalesce(introspection, 'null') FROM apis WHERE id = $1")
        .bind(id)
        .fetch_one(&admin.app.pool)
        .await
        .expect("stored settings")
}

#[tokio::test]
async fn settings_are_saved_with_defaults_and_secrets_never_shown() {
    let admin = Admin::spawn().await;
    let body = json!({"name": "orders", "auth_methods": ["key_auth", "jwt", "introspection"],
        "key_header": "X-Orders-Key", "key_query_param": "apikey", "hide_credentials": false,
        "jwt": jwt_with_keys(), "introspection": introspection()});
    let created = admin.post("/apis", body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let api = created.id();
    let jwt = &created.body["jwt"];
    assert_eq!(jwt["keys"][0]["secret"], "<redacted>");
    assert_eq!(jwt["keys"][1]["pem"], ED_PEM, "public keys are shown");
    assert_eq!((jwt["jwks_refresh_secs"].as_u64(), jwt["leeway_secs"].as_u64()), (Some(300), Some(30)));
    assert_eq!(jwt["subject_claim"], "sub");
    assert_eq!(created.body["introspection"]["client_secret"], "<redacted>");
    assert_eq!(created.body["introspection"]["timeout_ms"], 2000);
    assert_eq!(created.body["introspection"]["subject_claim"], "client_id");
    assert_eq!(
        (&created.body["key_header"], &created.body["hide_credentials"]),
        (&json!("X-Orders-Key"), &json!(false))
    );
    let (jwt, intro) = stored(&admin, &api).await;
    assert_eq!(
        (jwt["keys"][0]["secret"].as_str(), intro["client_secret"].as_str()),
        (Some(HS_SECRET), Some(CLIENT_SECRET))
    );

    // What a client read, sent back with a change: "<redacted>" keeps the stored secrets.
    let read = admin.get(&format!("/apis/{api}")).await;
    assert_eq!(read.body["jwt"]["keys"][0]["secret"], "<redacted>");
    let mut jwt_back = read.body["jwt"].clone();
    jwt_back["leeway_secs"] = json!(60);
    let mut intro_back = read.body["introspection"].clone();
    intro_back["timeout_ms"] = json!(500);
    let patched =
        admin.patch(&format!("/apis/{api}"), json!({"jwt": jwt_back, "introspection": intro_back}), None).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["jwt"]["leeway_secs"], 60);
    let (jwt, intro) = stored(&admin, &api).await;
    assert_eq!(
        (jwt["keys"][0]["secret"].as_str(), intro["client_secret"].as_str()),
        (Some(HS_SECRET), Some(CLIENT_SECRET))
    );
    assert_eq!(intro["timeout_ms"], 500);
    // Sending back unchanged settings changes nothing.
    let same = admin.patch(&format!("/apis/{api}"), json!({"jwt": patched.body["jwt"].clone()}), None).await;
    assert_eq!(same.etag, patched.etag);

    // A new secret replaces the stored one, and is not shown either.
    let rotated =
        admin.patch(&format!("/apis/{api}"), json!({"introspection": {"client_secret": "rotated"}}), None).await;
    assert_eq!(rotated.body["introspection"]["client_secret"], "<redacted>", "{}", rotated.body);
    assert_eq!(stored(&admin, &api).await.1["client_secret"], "rotated");

    // Audit rows hold the settings, never the secrets.
    let leaked: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_log WHERE concat(before::text, after::text) ~ ($1 || '|' || $2 || '|rotated')",
    )
    .bind(HS_SECRET)
    .bind(CLIENT_SECRET)
    .fetch_one(&admin.app.pool)
    .await
    .expect("audit query");
    assert_eq!(leaked.0, 0, "a secret reached the audit log");
    let audit = admin.get(&format!("/audit-log?entity_id={api}")).await;
    let rows = audit.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "create and two updates");
    assert_eq!(rows[1]["before"]["jwt"]["keys"][0]["secret"], "<redacted>");
    assert_eq!(rows[1]["after"]["introspection"]["client_secret"], "<redacted>");
    let listed = admin.get("/apis").await;
    assert_eq!(listed.body["data"][0]["jwt"]["keys"][0]["secret"], "<redacted>");
}

#[tokio::test]
async fn mistakes_are_422_pointing_at_the_field() {
    let admin = Admin::spawn().await;
    let audit_before = admin.count("audit_log").await;
    let jwt = |extra: Value| {
        let mut j = json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": HS_SECRET}]});
        tollgate_admin::ops::merge_patch(&mut j, &extra);
        json!({"name": "a", "auth_methods": ["jwt"], "jwt": j})
    };
    let short = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNl";
    let cases = [
        (json!({"name": "a", "auth_methods": ["jwt"]}), "/jwt", "required"),
        (json!({"name": "a", "auth_methods": ["introspection"]}), "/introspection", "required"),
        (jwt(json!({"algorithms": ["none"]})), "/jwt/algorithms/0", "unknown variant"),
        (jwt(json!({"algorithms": []})), "/jwt/algorithms", "at least one"),
        (jwt(json!({"jwks_url": "https://8.8.8.8/jwks"})), "/jwt/jwks_url", "exactly one"),
        (jwt(json!({"keys": []})), "/jwt/keys", "exactly one"),
        (jwt(json!({"keys": [{"alg": "HS256", "secret": short}]})), "/jwt/keys/0/secret", "shorter"),
        (
            jwt(json!({"keys": [{"alg": "HS256", "secret": format!("{HS_SECRET}=")}]})),
            "/jwt/keys/0/secret",
            "base64url",
        ),
        (jwt(json!({"keys": [{"alg": "HS256", "secret": "<redacted>"}]})), "/jwt/keys/0/secret", "no stored key"),
        (jwt(json!({"keys": [{"alg": "HS256", "pem": ED_PEM}]})), "/jwt/keys/0/secret", "need a secret"),
        (jwt(json!({"keys": [{"alg": "HS512", "secret": HS_SECRET}]})), "/jwt/keys/0/alg", "accepted algorithms"),
        (
            jwt(
                json!({"algorithms": ["RS256"], "keys": [{"alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}]}),
            ),
            "/jwt/keys/0/pem",
            "PEM",
        ),
        (jwt(json!({"leeway_secs": 301})), "/jwt/leeway_secs", "0 to 300"),
        (jwt(json!({"jwks_refresh_secs": 5})), "/jwt/jwks_refresh_secs", "at least 10"),
        (jwt(json!({"colour": "blue"})), "/jwt/colour", "unknown field"),
        (jwt(json!({"keys": null, "jwks_url": "http://127.0.0.1:1/jwks"})), "/jwt/jwks_url", "scheme not allowed"),
        (jwt(json!({"keys": null, "jwks_url": "https://127.0.0.1:1/jwks"})), "/jwt/jwks_url", "loopback"),
        (jwt(json!({"keys": null, "jwks_url": "https://[fd00::1]/jwks"})), "/jwt/jwks_url", "unique-local"),
        (
            json!({"name": "a", "introspection": {"url": "https://169.254.169.254/", "client_id": "g", "client_secret": "s"}}),
            "/introspection/url",
            "link-local",
        ),
        (
            json!({"name": "a", "introspection": {"url": "https://8.8.8.8/", "client_id": "g", "client_secret": "<redacted>"}}),
            "/introspection/client_secret",
            "no stored",
        ),
        (
            json!({"name": "a", "introspection": {"url": "https://8.8.8.8/", "client_id": "g"}}),
            "/introspection",
            "client_secret",
        ),
        (json!({"name": "a", "key_header": "Content-Length"}), "/key_header", "header name"),
        (json!({"name": "a", "key_header": "x key"}), "/key_header", "header name"),
        (json!({"name": "a", "key_query_param": "a b"}), "/key_query_param", "1-128"),
        (json!({"name": "a", "anonymous_plan_id": uuid::Uuid::now_v7()}), "/anonymous_plan_id", "plan of this API"),
    ];
    for (body, pointer, detail) in cases {
        let r = admin.post("/apis", body.clone()).await;
        assert_problem(&r, 422, "validation");
        let (p, d) = first_error(&r);
        assert_eq!(p, pointer, "{body} → {}", r.body);
        assert!(d.contains(detail), "{body}: {d:?} should mention {detail:?}");
    }
    assert_eq!(admin.count("apis").await, 0);
    assert_eq!(admin.count("audit_log").await, audit_before, "refused requests write nothing");
}

#[tokio::test]
async fn private_auth_urls_are_accepted_when_the_operator_allows_them() {
    let admin = Admin::spawn_with(|config| config.allow_private_auth_urls = true).await;
    let body = json!({"name": "internal", "auth_methods": ["jwt", "introspection"],
        "jwt": {"algorithms": ["RS256"], "jwks_url": "http://127.0.0.1:1/jwks"},
        "introspection": {"url": "http://127.0.0.1:1/introspect", "client_id": "g", "client_secret": "s"}});
    let created = admin.post("/apis", body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["jwt"]["jwks_url"], "http://127.0.0.1:1/jwks");
    assert_eq!(created.body["jwt"]["keys"], json!([]));
}

#[tokio::test]
async fn the_anonymous_plan_is_one_of_the_apis_plans() {
    let admin = Admin::spawn().await;
    let (api, other) = (admin.create_api("orders").await, admin.create_api("billing").await);
    let own = admin.post(&format!("/apis/{api}/plans"), json!({"name": "anonymous"})).await.id();
    let foreign = admin.post(&format!("/apis/{other}/plans"), json!({"name": "anonymous"})).await.id();
    let refused = admin.patch(&format!("/apis/{api}"), json!({"anonymous_plan_id": foreign}), None).await;
    assert_problem(&refused, 422, "validation");
    assert_eq!(first_error(&refused), ("/anonymous_plan_id".to_owned(), "must be a plan of this API".to_owned()));
    let set = admin
        .patch(
            &format!("/apis/{api}"),
            json!({"anonymous_plan_id": own, "auth_methods": ["key_auth", "anonymous"]}),
            None,
        )
        .await;
    assert_eq!(set.body["anonymous_plan_id"], own, "{}", set.body);
    // Deleting the plan leaves the API without an anonymous plan.
    assert_eq!(admin.delete(&format!("/apis/{api}/plans/{own}"), None).await.status, 204);
    assert!(admin.get(&format!("/apis/{api}")).await.body["anonymous_plan_id"].is_null());
}

#[tokio::test]
async fn routes_have_a_cost_and_may_override_auth_methods() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let routes = format!("/apis/{api}/routes");
    let plain = admin.post(&routes, json!({"name": "plain", "paths": ["/a"]})).await;
    assert_eq!((plain.body["cost"].as_i64(), plain.body["auth_methods"].is_null()), (Some(1), true), "{}", plain.body);
    for (body, pointer) in [
        (json!({"name": "r", "paths": ["/r"], "cost": 1_000_001}), "/cost"),
        (json!({"name": "r", "paths": ["/r"], "cost": -1}), "/cost"),
        (json!({"name": "r", "paths": ["/r"], "auth_methods": []}), "/auth_methods"),
        (json!({"name": "r", "paths": ["/r"], "auth_methods": ["jwt", "jwt"]}), "/auth_methods"),
        (json!({"name": "r", "paths": ["/r"], "auth_methods": ["magic"]}), "/auth_methods/0"),
        (json!({"name": "r", "paths": ["/r"], "auth_methods": ["jwt"]}), "/auth_methods"),
    ] {
        let r = admin.post(&routes, body.clone()).await;
        assert_problem(&r, 422, "validation");
        assert_eq!(first_error(&r).0, pointer, "{body} → {}", r.body);
    }
    let jwt = json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": HS_SECRET}]});
    assert_eq!(admin.patch(&format!("/apis/{api}"), json!({"jwt": jwt}), None).await.status, 200);
    let r = admin
        .post(&routes, json!({"name": "r", "paths": ["/r"], "cost": 5, "auth_methods": ["jwt", "anonymous"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.body["cost"].as_i64(), &r.body["auth_methods"]), (Some(5), &json!(["jwt", "anonymous"])));
    // The API cannot drop settings a route still needs.
    let dropped = admin.patch(&format!("/apis/{api}"), json!({"jwt": null}), None).await;
    assert_problem(&dropped, 422, "validation");
    assert_eq!(first_error(&dropped).0, "/jwt");
    assert!(first_error(&dropped).1.contains("route \"r\""), "{}", dropped.body);
    let reset = admin.patch(&format!("{routes}/{}", r.id()), json!({"auth_methods": null, "cost": null}), None).await;
    assert_eq!((reset.body["cost"].as_i64(), reset.body["auth_methods"].is_null()), (Some(1), true), "{}", reset.body);
    assert_eq!(admin.patch(&format!("/apis/{api}"), json!({"jwt": null}), None).await.status, 200);
}

#[tokio::test]
async fn plan_route_costs_name_routes_of_the_plans_api() {
    let admin = Admin::spawn().await;
    let (api, other) = (admin.create_api("orders").await, admin.create_api("billing").await);
    let route = admin.post(&format!("/apis/{api}/routes"), json!({"name": "search", "paths": ["/s"]})).await.id();
    let foreign = admin.post(&format!("/apis/{other}/routes"), json!({"name": "x", "paths": ["/x"]})).await.id();
    let plans = format!("/apis/{api}/plans");
    let unknown = uuid::Uuid::now_v7().to_string();
    for (costs, pointer) in [
        (json!({ foreign.clone(): 2 }), format!("/route_costs/{foreign}")),
        (json!({ unknown.clone(): 2 }), format!("/route_costs/{unknown}")),
        (json!({ route.clone(): -1 }), format!("/route_costs/{route}")),
        (json!({ route.clone(): 1_000_001 }), format!("/route_costs/{route}")),
        (json!({"not-a-uuid": 1}), "/route_costs/not-a-uuid".to_owned()),
    ] {
        let r = admin.post(&plans, json!({"name": "gold", "route_costs": costs})).await;
        assert_problem(&r, 422, "validation");
        assert_eq!(first_error(&r).0, pointer, "{}", r.body);
    }
    let plan = admin.post(&plans, json!({"name": "gold", "route_costs": { route.clone(): 10 }})).await;
    assert_eq!(plan.status, 201, "{}", plan.body);
    assert_eq!(plan.body["route_costs"][&route], 10);
    // A deleted route's override goes with it, and the plan's version moves on.
    assert_eq!(admin.delete(&format!("/apis/{api}/routes/{route}"), None).await.status, 204);
    let after = admin.get(&format!("{plans}/{}", plan.id())).await;
    assert_eq!((&after.body["route_costs"], after.etag.as_deref()), (&json!({}), Some("\"2\"")));
}

#[tokio::test]
async fn with_a_secrets_key_api_secrets_are_sealed_at_rest_and_gateways_open_them() {
    use tollgate_gateway::seal::{Keyring, is_sealed, open_api_secrets};
    let ring = std::sync::Arc::new(Keyring::new(&Keyring::generate_key(), &[]).expect("keyring"));
    let for_admin = ring.clone();
    let admin = Admin::spawn_with(move |c| c.secrets = Some(for_admin)).await;
    let body = json!({"name": "orders", "auth_methods": ["jwt", "introspection"],
        "jwt": jwt_with_keys(), "introspection": introspection()});
    let created = admin.post("/apis", body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let api = created.id();
    let sealed = |(jwt, intro): (Value, Value)| {
        let (j, i) = (
            jwt["keys"][0]["secret"].as_str().unwrap_or_default(),
            intro["client_secret"].as_str().unwrap_or_default(),
        );
        is_sealed(j) && is_sealed(i) && !j.contains(HS_SECRET) && !i.contains(CLIENT_SECRET)
    };
    assert!(sealed(stored(&admin, &api).await), "neither secret is in the database in clear");

    // Edits that do not touch the secrets keep them (and the API still reads redacted).
    let patched = admin.patch(&format!("/apis/{api}"), json!({"description": "the orders API"}), None).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["jwt"]["keys"][0]["secret"], "<redacted>");
    let read = admin.get(&format!("/apis/{api}")).await;
    let mut jwt_back = read.body["jwt"].clone();
    jwt_back["leeway_secs"] = json!(5);
    assert_eq!(admin.patch(&format!("/apis/{api}"), json!({"jwt": jwt_back}), None).await.status, 200);
    assert!(sealed(stored(&admin, &api).await));

    // Gateways get the sealed values and open them with the shared key, and only with it.
    let data = tollgate_gateway::config::pg::load_full(&admin.app.pool).await.expect("full load");
    let def = &data.apis[&api.parse().expect("id")];
    let (mut jwt, mut intro) = (def.jwt.clone(), def.introspection.clone());
    assert!(open_api_secrets(def.id, jwt.as_mut(), intro.as_mut(), None).is_err(), "no key, no secret");
    open_api_secrets(def.id, jwt.as_mut(), intro.as_mut(), Some(&ring)).expect("opens with the key");
    assert_eq!(jwt.map(|j| j["keys"][0]["secret"].clone()), Some(json!(HS_SECRET)));
    assert_eq!(intro.map(|i| i["client_secret"].clone()), Some(json!(CLIENT_SECRET)));

    // Secrets written before the admin had a key are sealed by `tollgate secrets rotate`.
    let clear = Admin::spawn().await;
    let old =
        clear.post("/apis", json!({"name": "legacy", "auth_methods": ["jwt"], "jwt": jwt_with_keys()})).await.id();
    assert!(!sealed(stored(&clear, &old).await));
    let events = clear.count("config_events").await;
    let n = tollgate_admin::certificates::reseal_all(&clear.app.pool, &ring).await.expect("reseal");
    assert_eq!(n, 1);
    let (jwt, _) = stored(&clear, &old).await;
    assert!(is_sealed(jwt["keys"][0]["secret"].as_str().unwrap_or_default()));
    assert_eq!(clear.count("config_events").await, events + 1, "gateways are told");
    assert_eq!(tollgate_admin::certificates::reseal_all(&clear.app.pool, &ring).await.expect("again"), 0);
}
