//! `/health/live` and `/health/ready` of the portal and the admin service, over real sockets:
//! both ready while PostgreSQL answers; live but not ready (503, with the reason) once their
//! database is gone.

use serde_json::{Value, json};

use crate::helpers::Portal;

async fn probe(http: &reqwest::Client, url: String) -> (u16, Value) {
    let res = http.get(&url).send().await.expect("GET");
    let status = res.status().as_u16();
    assert_eq!(res.headers()["cache-control"], "no-store", "{url}");
    assert_eq!(res.headers()["content-type"], "application/json", "{url}");
    (status, res.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn portal_and_admin_are_ready_while_the_database_answers_and_only_live_after() {
    let portal = Portal::spawn().await;
    let http = reqwest::Client::new();
    let services = [portal.base.clone(), portal.admin.base_url.clone()];
    for base in &services {
        assert_eq!(probe(&http, format!("{base}/health/live")).await, (200, json!({"status": "live"})), "{base}");
        assert_eq!(probe(&http, format!("{base}/health/ready")).await, (200, json!({"status": "ready"})), "{base}");
    }
    // Both services share this pool: closed, every query fails as an unreachable database would.
    portal.pool.close().await;
    for base in &services {
        assert_eq!(probe(&http, format!("{base}/health/live")).await.0, 200, "{base}: still live");
        let (status, body) = probe(&http, format!("{base}/health/ready")).await;
        assert_eq!((status, &body["status"]), (503, &json!("unavailable")), "{base}: {body}");
        assert!(body["reason"].as_str().is_some_and(|r| r.contains("database")), "{base}: {body}");
    }
}
