//! The sample API `tollgate dev` publishes on a fresh database, so a first developer finds
//! something to subscribe to and call: `GET /hello` on the gateway answers from the admin's
//! own health check. It goes through the same operations as any API (audited, one change
//! event per entity), with an OpenAPI document so its reference and try-it work too.

use std::net::SocketAddr;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::apis::Api;
use crate::change::{self, Actor, Change};
use crate::ops::{self, Parent};
use crate::plans::Plan;
use crate::routes::Route;
use crate::state::AppState;
use crate::targets::Target;

/// The sample's OpenAPI document.
const DOCUMENT: &str = r#"openapi: 3.1.0
info:
  title: Hello
  version: "1"
  description: |
    A sample API published by `tollgate dev`, so there is something to call on a fresh
    installation. Subscribe an app to the **free** plan, issue a key and call
    `GET /hello` through the gateway.
paths:
  /hello:
    get:
      summary: Say hello
      description: Answers `ok` (the admin service's health check stands in for a real upstream).
      responses:
        "200":
          description: The service is there.
          content:
            text/plain:
              schema: {type: string, example: ok}
"#;

/// Publishes the sample API in front of `upstream` (the admin's address) unless the
/// database has APIs already. Returns whether it did.
pub async fn ensure_sample_api(pool: &PgPool, upstream: SocketAddr) -> anyhow::Result<bool> {
    let (apis,): (i64,) = sqlx::query_as("SELECT count(*) FROM apis").fetch_one(pool).await?;
    if apis > 0 {
        return Ok(false);
    }
    let state = AppState::for_operations(pool.clone(), None);
    let who = Actor::system();
    let api: Api = ops::create::<Api>(
        &state,
        &who,
        None,
        serde_json::from_value(json!({"name": "hello", "description": "A sample API: GET /hello answers ok.", "portal_visible": true, "tags": ["sample"]}))?,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .into_body();
    let parent = Some(Parent { kind: "api", table: "apis", id: api.id });
    let target = json!({"host": upstream.ip().to_string(), "port": upstream.port()});
    ops::create::<Target>(&state, &who, parent, serde_json::from_value(target)?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let route = json!({"name": "hello", "paths": ["/hello"], "methods": ["GET"], "rewrite_path": "/healthz"});
    ops::create::<Route>(&state, &who, parent, serde_json::from_value(route)?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = json!({"name": "free", "description": "For trying things out", "rate_limit_per_minute": 60, "burst": 10, "quota_per_day": 1000});
    ops::create::<Plan>(&state, &who, parent, serde_json::from_value(plan)?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    publish_document(pool, &who, api.id, DOCUMENT).await?;
    Ok(true)
}

/// Stores `document` as the API's published reference (label `v1`), audited.
pub(crate) async fn publish_document(pool: &PgPool, who: &Actor, api: Uuid, document: &str) -> anyhow::Result<()> {
    let checked = crate::documents::check(document).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tx = pool.begin().await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO api_documents (id, api_id, label, title, openapi, format, source, document, published)
         VALUES ($1, $2, 'v1', $3, $4, $5, $6, $7, true)",
    )
    .bind(id)
    .bind(api)
    .bind(&checked.title)
    .bind(&checked.openapi)
    .bind(checked.format)
    .bind(document)
    .bind(&checked.document)
    .execute(&mut *tx)
    .await?;
    change::record(
        &mut tx,
        who,
        Change::create("api_document", id, json!({"api_id": api, "label": "v1"})).audit_only(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
