//! DB-less live configuration: rewriting the file changes what the gateway serves, on the
//! connections already open, without restarting the listener.

use serde_json::json;

use crate::helpers::{Gateway, Raw, Upstream, api, config, paths};

#[tokio::test]
async fn a_rewritten_config_file_is_served_on_open_connections() {
    let (a, b) = (Upstream::echo("a").await, Upstream::echo("b").await);
    let mut gw = Gateway::start(config(vec![api("one", &[&a], json!([paths("v1", &["/v1/*"])]), json!({}))])).await;
    let mut conn = Raw::connect(gw.addr).await;
    let get = async |conn: &mut Raw, path: &str| {
        conn.send(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await;
        conn.response().await
    };
    assert_eq!(get(&mut conn, "/v1/x").await.json()["upstream"], "a");
    assert_eq!(get(&mut conn, "/v2/x").await.status, 404);

    gw.reload(config(vec![
        api("one", &[&b], json!([paths("v1", &["/v1/*"])]), json!({})),
        api("two", &[&a], json!([paths("v2", &["/v2/*"])]), json!({})),
    ]))
    .await;
    assert_eq!(get(&mut conn, "/v1/x").await.json()["upstream"], "b", "targets changed in place");
    assert_eq!(get(&mut conn, "/v2/x").await.json()["upstream"], "a", "a new API and route");

    gw.reload(config(vec![api("two", &[&a], json!([paths("v2", &["/v2/*"])]), json!({ "enabled": false }))])).await;
    assert_eq!(get(&mut conn, "/v1/x").await.status, 404, "a removed API");
    assert_eq!(get(&mut conn, "/v2/x").await.status, 404, "a disabled API");
}
