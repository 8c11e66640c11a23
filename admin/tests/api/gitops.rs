//! GitOps: `config export` of a populated database reads back through the gateway's own
//! file parser as what the gateways load from that database; `config apply` of the export
//! on a fresh database makes the gateways load the same configuration (secrets included);
//! applying it again changes nothing; diff, prune, and refusals that change nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tollgate_admin::change::Actor;
use tollgate_admin::gitops::apply::{ApplyError, Op, Outcome, apply};
use tollgate_admin::gitops::export::{export, to_yaml};
use tollgate_admin::state::AppState;
use tollgate_admin::testkit::certs::TestCa;
use tollgate_gateway::config::model::{CertKey, ConfigData};
use tollgate_gateway::seal::{self, Keyring};

use crate::helpers::Admin;

const HS_SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I";
const CLIENT_SECRET: &str = "gitops-introspection-secret";

async fn admin_with(ring: &Arc<Keyring>) -> Admin {
    let ring = ring.clone();
    Admin::spawn_with(move |c| {
        c.secrets = Some(ring);
        c.allow_private_auth_urls = true;
    })
    .await
}

fn state(admin: &Admin, ring: &Arc<Keyring>) -> AppState {
    AppState::for_config_files(admin.app.pool.clone(), Some(ring.clone()), true)
}

async fn run(admin: &Admin, ring: &Arc<Keyring>, text: &str, prune: bool, commit: bool) -> Result<Outcome, ApplyError> {
    let who = Actor::system().named("tollgate config apply");
    apply(&state(admin, ring), &who, text, prune, commit).await
}

/// Every kind of entity gateways enforce, and a developer's app that GitOps leaves alone.
async fn populate(admin: &Admin) -> String {
    let ca = TestCa::new("gitops CA");
    let server = ca.leaf(&["api.gitops.test"]);
    let client = ca.leaf(&["gateway.gitops.test"]);
    let post = |path: &'static str, body: Value| async move {
        let r = admin.post(path, body).await;
        assert!(r.status == 201, "{path}: {}", r.body);
        r.id()
    };
    post("/certificates", json!({"cert": server.chain_pem, "key": server.key_pem, "is_default": true})).await;
    let client_cert =
        post("/certificates", json!({"cert": client.chain_pem, "key": client.key_pem, "usage": "client"})).await;
    let api = post(
        "/apis",
        json!({
            "name": "orders", "description": "kept by the admin", "upstream_protocol": "https",
            "auth_methods": ["key_auth", "jwt", "mtls", "introspection"], "key_query_param": "k",
            "jwt": {"algorithms": ["HS256"], "keys": [{"kid": "k1", "alg": "HS256", "secret": HS_SECRET}]},
            "introspection": {"url": "https://127.0.0.1:9/introspect", "client_id": "gw", "client_secret": CLIENT_SECRET},
            "mtls": {"ca_bundle": ca.pem},
            "upstream_tls": {"ca_bundle": ca.pem, "server_name": "orders.internal", "client_certificate_id": client_cert},
            "health_check": {"path": "/healthz", "interval_ms": 5000, "timeout_ms": 1000,
                "healthy_threshold": 2, "unhealthy_threshold": 3}, "retry_on_statuses": [502], "canary_weight": 5,
        }),
    )
    .await;
    let routes = format!("/apis/{api}/routes");
    let targets = format!("/apis/{api}/targets");
    let plans = format!("/apis/{api}/plans");
    for (host, port) in [("10.0.0.1", 8443), ("10.0.0.2", 8443)] {
        assert_eq!(admin.post(&targets, json!({"host": host, "port": port, "weight": 50})).await.status, 201);
    }
    let read = admin.post(&routes, json!({"name": "read", "paths": ["/orders/*"], "methods": ["GET"]})).await.id();
    let report = admin
        .post(&routes, json!({"name": "report", "paths": ["/report"], "cost": 3, "auth_methods": ["mtls"]}))
        .await
        .id();
    assert!(!read.is_empty() && !report.is_empty());
    let free = admin.post(&plans, json!({"name": "free", "rate_limit_per_minute": 60, "burst": 5})).await.id();
    let gold = admin
        .post(
            &plans,
            json!({"name": "gold", "rate_limit_per_minute": 600, "quota_per_month": 100000,
            "route_costs": {report.clone(): 7}}),
        )
        .await
        .id();
    assert_eq!(admin.patch(&format!("/apis/{api}"), json!({"anonymous_plan_id": free}), None).await.status, 200);
    let acme = post("/consumers", json!({"name": "acme", "custom_id": "crm-1"})).await;
    let idle = post("/consumers", json!({"name": "idle", "enabled": false})).await;
    let key = admin
        .post(&format!("/consumers/{acme}/keys"), json!({"name": "prod", "expires_at": "2031-01-01T00:00:00Z"}))
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    let secret = key.body["secret"].as_str().unwrap_or_default().to_owned();
    assert_eq!(admin.post("/subscriptions", json!({"consumer_id": acme, "plan_id": gold})).await.status, 201);
    let sub = admin.post("/subscriptions", json!({"consumer_id": idle, "plan_id": free, "status": "suspended"})).await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    post("/token-bindings", json!({"consumer_id": acme, "issuer": "https://idp/", "subject": "svc"})).await;
    post("/certificate-bindings", json!({"consumer_id": acme, "subject": "svc.gitops.test"})).await;
    // A developer's app: theirs, not configuration.
    let dev = post("/developers", json!({"email": "dev@example.com", "name": "Dev"})).await;
    let app = post("/consumers", json!({"name": "dev app", "developer_id": dev})).await;
    assert_eq!(admin.post(&format!("/consumers/{app}/keys"), json!({})).await.status, 201);
    secret
}

/// `data` without developers' apps and what hangs off them, with the event id cleared and
/// sealed values opened (their ciphertexts differ per database: fresh nonces).
fn comparable(mut data: ConfigData, ring: &Keyring) -> ConfigData {
    let apps: BTreeSet<_> = data.consumers.values().filter(|c| c.developer_id.is_some()).map(|c| c.id).collect();
    data.consumers.retain(|_, c| c.developer_id.is_none());
    data.developers.clear();
    data.keys.remove_where(|k| apps.contains(&k.consumer_id));
    data.subscriptions.retain(|_, s| !apps.contains(&s.consumer_id));
    data.event_id = 0;
    for api in data.apis.values_mut() {
        seal::open_api_secrets(api.id, api.jwt.as_mut(), api.introspection.as_mut(), Some(ring)).expect("open");
    }
    for cert in data.certificates.values_mut() {
        if let CertKey::Sealed(s) = &cert.key {
            let pem = ring.open(s, &seal::certificate_key_aad(cert.id)).expect("open key");
            cert.key = CertKey::Pem(String::from_utf8(pem).expect("text"));
        }
    }
    // Subscriptions are matched by consumer and API, not kept by id.
    let subs: Vec<_> = std::mem::take(&mut data.subscriptions).into_values().collect();
    for mut s in subs {
        s.id = uuid::Uuid::from_u128(
            u128::from(s.consumer_id.as_u64_pair().0) << 64 | u128::from(s.api_id.as_u64_pair().0),
        );
        data.subscriptions.insert(s.id, s);
    }
    data
}

#[tokio::test]
async fn an_export_applied_to_a_fresh_database_gives_gateways_the_same_configuration() {
    let ring = Arc::new(Keyring::new(&Keyring::generate_key(), &[]).expect("keyring"));
    let source = admin_with(&ring).await;
    let key_secret = populate(&source).await;
    let file = export(&source.app.pool, Some(&ring)).await.expect("export");
    let yaml = to_yaml(&file).expect("yaml");
    for secret in [HS_SECRET, CLIENT_SECRET, "PRIVATE KEY", key_secret.as_str()] {
        assert!(!yaml.contains(secret), "{secret:?} is in the export in clear:\n{yaml}");
    }
    assert!(!yaml.contains("dev app"), "developers' apps are not configuration");

    // A DB-less gateway reads the export as the database-backed ones load the database.
    let loaded = tollgate_gateway::config::pg::load_full(&source.app.pool).await.expect("load");
    let parsed = tollgate_gateway::config::file::parse(&yaml).expect("the gateway parses the export");
    assert_eq!(comparable(parsed, &ring), comparable(loaded.clone(), &ring));

    // Applied to a fresh database: the same configuration, secrets included.
    let target = admin_with(&ring).await;
    let events_before = target.count("config_events").await;
    let outcome = run(&target, &ring, &yaml, false, true).await.expect("apply");
    assert!(outcome.steps.iter().all(|s| s.op != Op::Delete), "{:?}", outcome.steps);
    let applied = tollgate_gateway::config::pg::load_full(&target.app.pool).await.expect("load");
    assert_eq!(comparable(applied, &ring), comparable(loaded, &ring));
    let events = target.count("config_events").await - events_before;
    assert!(events > 10, "each change is an event of one transaction: {events}");
    let actors: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT actor_name FROM audit_log WHERE entity_kind = 'api'")
        .fetch_all(&target.app.pool)
        .await
        .expect("audit");
    assert_eq!(actors, [("tollgate config apply".to_owned(),)], "audited as the tool");

    // Again: nothing to do, nothing written.
    let again = run(&target, &ring, &yaml, true, true).await.expect("apply again");
    assert_eq!(again.steps, [], "applying the same file twice changes nothing");
    assert_eq!(target.count("config_events").await - events_before, events);
    // The admin's own fields of an API are not the file's to change.
    let api = target.get("/apis?name=orders").await;
    assert_eq!(api.body["data"][0]["description"], "", "created with defaults");
}

#[tokio::test]
async fn diff_shows_apply_does_and_prune_deletes_only_configuration() {
    let ring = Arc::new(Keyring::new(&Keyring::generate_key(), &[]).expect("keyring"));
    let admin = admin_with(&ring).await;
    populate(&admin).await;
    let file = export(&admin.app.pool, Some(&ring)).await.expect("export");
    let mut doc: Value = serde_json::to_value(&file).expect("json");
    doc["apis"][0]["plans"][1]["rate_limit_per_minute"] = json!(900);
    let routes = doc["apis"][0]["routes"].as_array_mut().expect("routes");
    routes.retain(|r| r["name"] != "read");
    doc["consumers"].as_array_mut().expect("consumers").retain(|c| c["name"] != "idle");
    let text = serde_norway::to_string(&doc).expect("yaml");

    let before = admin.count("config_events").await;
    let diff = run(&admin, &ring, &text, true, false).await.expect("diff");
    let lines: Vec<String> = diff.steps.iter().map(ToString::to_string).collect();
    for expected in [
        "~ plan orders/gold (rate_limit_per_minute)",
        "- route orders/read",
        "- consumer idle",
        "- subscription idle/orders",
    ] {
        assert!(lines.iter().any(|l| l == expected), "{expected:?} not in {lines:#?}");
    }
    assert!(!lines.iter().any(|l| l.contains("dev app")), "developers' apps are never pruned: {lines:#?}");
    assert_eq!(admin.count("config_events").await, before, "a diff changes nothing");

    let without_prune = run(&admin, &ring, &text, false, false).await.expect("diff");
    assert!(without_prune.steps.iter().all(|s| s.op != Op::Delete), "{:?}", without_prune.steps);
    let applied = run(&admin, &ring, &text, true, true).await.expect("apply");
    assert_eq!(applied.steps, diff.steps, "apply does what diff said");
    let data = tollgate_gateway::config::pg::load_full(&admin.app.pool).await.expect("load");
    assert!(!data.routes.values().any(|r| r.name == "read"));
    assert!(data.consumers.values().any(|c| c.name == "dev app"), "the developer's app stays");
    assert_eq!(data.plans.values().find(|p| p.name == "gold").and_then(|p| p.rate_limit_per_minute), Some(900));
}

#[tokio::test]
async fn a_bad_file_changes_nothing_and_says_where() {
    let ring = Arc::new(Keyring::new(&Keyring::generate_key(), &[]).expect("keyring"));
    let admin = admin_with(&ring).await;
    let before = (admin.count("config_events").await, admin.count("audit_log").await);
    let cases = [
        ("apis:\n  - name: orders\n    colour: red\n", "line 3 column"),
        ("apis: [{name: orders, auth_methods: [jwt]}]", "no jwt settings"),
        ("apis:\n  - name: a\n  - name: a\n", "defined twice"),
        // Valid for the gateway's file, refused by the admin's own rules: the first API,
        // already written in the transaction, goes with it.
        ("apis: [{name: fine}, {name: Bad_Name}]", "Bad_Name"),
        ("consumers: [{name: acme, subscriptions: [{api: none, plan: gold}]}]", "unknown plan"),
    ];
    for (text, says) in cases {
        let err = run(&admin, &ring, text, true, true).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(says), "{text:?}: {err:?} should say {says:?}");
    }
    assert_eq!((admin.count("config_events").await, admin.count("audit_log").await), before, "nothing changed");
    assert_eq!(admin.count("apis").await, 0);
}
