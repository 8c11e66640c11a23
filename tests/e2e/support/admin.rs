//! The control plane as the tests drive it: the admin service in-process on a free port,
//! against any database URL (the shared test server or a private cluster), and a client
//! logged in as its owner that makes changes through the REST API only.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tollgate_admin::testkit::install_crypto_provider;
use tollgate_admin::{AdminConfig, Secret};

const OWNER_EMAIL: &str = "owner@e2e.test";

/// A running admin service and its owner's token; the service stops on drop.
pub struct Admin {
    base: String,
    http: reqwest::Client,
    token: String,
    /// The admin's own pool (for what the REST API does not expose, e.g. pruning the log).
    pub pool: PgPool,
    task: JoinHandle<()>,
}

impl Admin {
    /// Migrates the database at `database_url`, creates the owner, serves the admin API on
    /// 127.0.0.1:0 and logs in.
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        Self::start_with(database_url, |_| {}).await
    }

    /// [`Admin::start`] with settings changed by `configure` (e.g. the node windows).
    pub async fn start_with(database_url: &str, configure: impl FnOnce(&mut AdminConfig)) -> anyhow::Result<Self> {
        install_crypto_provider();
        let pool = tollgate_admin::db::connect(database_url).await.context("admin: connecting")?;
        tollgate_admin::db::migrate(&pool).await.context("admin: migrating")?;
        let owner = tollgate_admin::seed::ensure_first_owner(&pool, OWNER_EMAIL)
            .await?
            .context("admin: the database already had admin users")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut config = AdminConfig::new(addr, Secret::new(secret));
        configure(&mut config);
        let server_pool = pool.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = tollgate_admin::serve(listener, server_pool, config, std::future::pending()).await {
                eprintln!("admin service failed: {err:#}");
            }
        });
        let http = reqwest::Client::builder().no_proxy().build()?;
        let mut admin = Self { base: format!("http://{addr}/admin/v1"), http, token: String::new(), pool, task };
        let login = json!({"email": OWNER_EMAIL, "password": owner.password.expose()});
        let session = admin.send(Method::POST, "/auth/login", Some(login)).await?;
        admin.token = session["token"].as_str().context("no token in the login answer")?.to_owned();
        Ok(admin)
    }

    /// Sends a request as the owner; any status but 2xx is an error carrying the body.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let bytes = res.bytes().await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    /// Creates an API (anonymous access: these tests are about configuration, not auth).
    pub async fn create_api(&self, name: &str) -> anyhow::Result<String> {
        let api = self.send(Method::POST, "/apis", Some(json!({"name": name, "auth_methods": ["anonymous"]}))).await?;
        id_of(&api)
    }

    /// Adds a target at `addr` to `api`.
    pub async fn add_target(&self, api: &str, addr: SocketAddr) -> anyhow::Result<String> {
        let body = json!({"host": addr.ip().to_string(), "port": addr.port()});
        id_of(&self.send(Method::POST, &format!("/apis/{api}/targets"), Some(body)).await?)
    }

    /// Points an existing target at `addr`.
    pub async fn move_target(&self, api: &str, target: &str, addr: SocketAddr) -> anyhow::Result<()> {
        let body = json!({"host": addr.ip().to_string(), "port": addr.port()});
        self.send(Method::PATCH, &format!("/apis/{api}/targets/{target}"), Some(body)).await.map(drop)
    }

    /// Adds a route `name` matching `paths` to `api`.
    pub async fn add_route(&self, api: &str, name: &str, paths: &[&str]) -> anyhow::Result<String> {
        let body = json!({"name": name, "paths": paths});
        id_of(&self.send(Method::POST, &format!("/apis/{api}/routes"), Some(body)).await?)
    }

    /// Replaces the paths of a route.
    pub async fn set_route_paths(&self, api: &str, route: &str, paths: &[&str]) -> anyhow::Result<()> {
        let body = json!({"paths": paths});
        self.send(Method::PATCH, &format!("/apis/{api}/routes/{route}"), Some(body)).await.map(drop)
    }

    pub async fn delete_route(&self, api: &str, route: &str) -> anyhow::Result<()> {
        self.send(Method::DELETE, &format!("/apis/{api}/routes/{route}"), None).await.map(drop)
    }

    /// An API with one target at `upstream` and one route `name` on `paths`: (api, route).
    pub async fn publish(&self, name: &str, upstream: SocketAddr, paths: &[&str]) -> anyhow::Result<(String, String)> {
        let api = self.create_api(name).await?;
        self.add_target(&api, upstream).await?;
        let route = self.add_route(&api, &format!("{name}-route"), paths).await?;
        Ok((api, route))
    }

    /// Creates an API from a full body (`auth_methods` defaults to `["key_auth"]`).
    pub async fn create_api_with(&self, body: Value) -> anyhow::Result<String> {
        id_of(&self.send(Method::POST, "/apis", Some(body)).await?)
    }

    /// Creates a plan of `api` from a full body (`name`, limits, `limit_mode`, ...).
    pub async fn create_plan(&self, api: &str, body: Value) -> anyhow::Result<String> {
        id_of(&self.send(Method::POST, &format!("/apis/{api}/plans"), Some(body)).await?)
    }

    /// Creates a consumer from a full body (`name`, optional `custom_id`, ...).
    pub async fn create_consumer(&self, body: Value) -> anyhow::Result<String> {
        id_of(&self.send(Method::POST, "/consumers", Some(body)).await?)
    }

    /// Issues an API key for `consumer`: (key id, secret). The secret is returned only now.
    pub async fn create_key(&self, consumer: &str) -> anyhow::Result<(String, String)> {
        let key = self.send(Method::POST, &format!("/consumers/{consumer}/keys"), Some(json!({}))).await?;
        let secret = key["secret"].as_str().with_context(|| format!("no secret in {key}"))?.to_owned();
        Ok((id_of(&key)?, secret))
    }

    /// Revokes a key of `consumer`, for good.
    pub async fn revoke_key(&self, consumer: &str, key: &str) -> anyhow::Result<Value> {
        self.send(Method::POST, &format!("/consumers/{consumer}/keys/{key}/revoke"), None).await
    }

    /// Subscribes `consumer` to `plan`; the subscription as stored (`pending` when the plan
    /// needs approval, else `active`).
    pub async fn subscribe(&self, consumer: &str, plan: &str) -> anyhow::Result<Value> {
        self.send(Method::POST, "/subscriptions", Some(json!({"consumer_id": consumer, "plan_id": plan}))).await
    }

    /// Sets a subscription's status (`pending`, `active`, `suspended`).
    pub async fn set_subscription_status(&self, subscription: &str, status: &str) -> anyhow::Result<Value> {
        let body = json!({"status": status});
        self.send(Method::PATCH, &format!("/subscriptions/{subscription}"), Some(body)).await
    }

    /// Id of the newest config event, read from the change log's API (0 when it is empty).
    pub async fn last_event_id(&self) -> anyhow::Result<i64> {
        let mut after = 0;
        loop {
            let page = self.get(&format!("/config-events?limit=500&after={after}")).await?;
            let ids = page["data"].as_array().context("no data in the config event page")?;
            after = ids.last().and_then(|e| e["id"].as_i64()).unwrap_or(after);
            if page["next_after"].is_null() {
                return Ok(after);
            }
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn id_of(entity: &Value) -> anyhow::Result<String> {
    entity["id"].as_str().map(str::to_owned).with_context(|| format!("no id in {entity}"))
}
