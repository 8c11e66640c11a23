//! A logged-in client for a freshly spawned admin (own database, own port).

use serde_json::{Value, json};
use tollgate_admin::AdminConfig;
use tollgate_admin::testkit::{TestApp, spawn_app_with};

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub etag: Option<String>,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The `id` field of the body.
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_owned()
    }
}

/// An admin server and a client logged in as its owner.
pub struct Admin {
    pub app: TestApp,
    pub http: reqwest::Client,
    pub token: String,
}

impl Admin {
    /// Spawns an admin and logs in as the seeded owner.
    pub async fn spawn() -> Admin {
        Admin::spawn_with(|_| {}).await
    }

    /// Like [`Admin::spawn`], with the configuration adjusted by `configure` first.
    pub async fn spawn_with(configure: impl FnOnce(&mut AdminConfig)) -> Admin {
        let app = spawn_app_with(configure).await;
        let http = reqwest::Client::new();
        let mut admin = Admin { app, http, token: String::new() };
        let login = admin
            .send(
                reqwest::Method::POST,
                "/auth/login",
                Some(json!({"email": admin.app.owner_email, "password": admin.app.owner_password})),
                None,
            )
            .await;
        assert_eq!(login.status, 200, "owner login: {:?}", login.body);
        admin.token = login.body["token"].as_str().unwrap_or_default().to_owned();
        admin
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/admin/v1{path}", self.app.base_url)
    }

    /// Sends a request with the owner's token (or `token`, if given).
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token.or(Some(self.token.as_str())).filter(|t| !t.is_empty()) {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        read(req.send().await.expect("request sent")).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>, if_match: Option<&str>) -> Resp {
        self.send_as(None, method, path, body, if_match).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body), None).await
    }

    pub async fn patch(&self, path: &str, body: Value, if_match: Option<&str>) -> Resp {
        self.send(reqwest::Method::PATCH, path, Some(body), if_match).await
    }

    pub async fn delete(&self, path: &str, if_match: Option<&str>) -> Resp {
        self.send(reqwest::Method::DELETE, path, None, if_match).await
    }

    /// Creates an API and returns its id.
    pub async fn create_api(&self, name: &str) -> String {
        let r = self.post("/apis", json!({"name": name})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.id()
    }

    /// Creates an admin user with `role` and returns a login token for it.
    pub async fn user_token(&self, email: &str, role: &str) -> String {
        let password = "a-sufficiently-long-passphrase";
        let r = self.post("/users", json!({"email": email, "role": role, "password": password})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let login = self
            .send_as(
                Some(""),
                reqwest::Method::POST,
                "/auth/login",
                Some(json!({"email": email, "password": password})),
                None,
            )
            .await;
        assert_eq!(login.status, 200, "{:?}", login.body);
        login.body["token"].as_str().unwrap_or_default().to_owned()
    }

    /// A login attempt sent through `client` (see [`client_from`]), without a token.
    pub async fn login_via(&self, client: &reqwest::Client, email: &str, password: &str) -> Resp {
        let body = json!({"email": email, "password": password});
        read(client.post(self.url("/auth/login")).json(&body).send().await.expect("request sent")).await
    }

    /// A login as the owner with the right password, sent through `client`.
    pub async fn owner_login_via(&self, client: &reqwest::Client) -> Resp {
        self.login_via(client, &self.app.owner_email, &self.app.owner_password).await
    }

    /// Number of rows in `table` (a fixed test table name).
    pub async fn count(&self, table: &str) -> i64 {
        let q = format!("SELECT count(*) FROM {table}");
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(q)).fetch_one(&self.app.pool).await.expect("count");
        n
    }
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address reaches the admin on
/// 127.0.0.1): the admin sees it as the client address, as it would another machine.
pub fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().expect("client")
}

/// Reads a response whole; bodies that are not JSON become `Value::Null`.
pub async fn read(res: reqwest::Response) -> Resp {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = res.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp { status, etag, content_type, headers, body }
}

/// Asserts an RFC 9457 problem response with `status` and problem type slug `slug`.
pub fn assert_problem(r: &Resp, status: u16, slug: &str) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.body["type"], format!("urn:tollgate:problem:{slug}"), "body: {}", r.body);
    assert_eq!(r.body["status"], status);
}
