//! A portal (with the admin on the same database) and a cookie-keeping client.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tollgate_admin::testkit::{TestApp, spawn_app_with};
use tollgate_portal::PortalConfig;

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running portal and the admin service beside it, on one database.
pub struct Portal {
    pub base: String,
    pub pool: PgPool,
    pub admin: TestApp,
    admin_token: String,
}

impl Portal {
    pub async fn spawn() -> Portal {
        Portal::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut PortalConfig)) -> Portal {
        // (With a secrets key, as in production: certificates can be uploaded.)
        let key = tollgate_gateway::seal::Keyring::generate_key();
        let ring = tollgate_gateway::seal::Keyring::new(&key, &[]).map(std::sync::Arc::new).ok();
        let admin = spawn_app_with(move |c| c.secrets = ring).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = PortalConfig::new(format!("http://{addr}"), "http://127.0.0.1:9");
        configure(&mut config);
        let pool = admin.pool.clone();
        let server_pool = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = tollgate_portal::serve(listener, server_pool, config, std::future::pending()).await {
                eprintln!("portal failed: {e:#}");
            }
        });
        let http = reqwest::Client::new();
        let login = http
            .post(format!("{}/admin/v1/auth/login", admin.base_url))
            .json(&json!({"email": admin.owner_email, "password": admin.owner_password}))
            .send()
            .await
            .expect("admin login");
        let body: Value = login.json().await.expect("login body");
        let admin_token = body["token"].as_str().unwrap_or_default().to_owned();
        Portal { base: format!("http://{addr}"), pool, admin, admin_token }
    }

    /// A new browser (empty cookie jar).
    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// Calls the admin REST API as its owner.
    pub async fn admin_api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/admin/v1{path}", self.admin.base_url))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("admin request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The first link to `path` (e.g. `/verify?token=`) in mail to `to`, waiting up to 10 s
    /// (mail goes out in the background).
    pub async fn link_in_mail(&self, to: &str, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bodies: Vec<(String,)> =
                sqlx::query_as("SELECT body FROM mail_outbox WHERE lower(recipient) = lower($1) ORDER BY id DESC")
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await
                    .expect("outbox");
            let found = bodies.iter().find_map(|(b,)| {
                let start = b.find(&format!("{}{path}", self.base))?;
                Some(b[start..].split_whitespace().next().unwrap_or_default().to_owned())
            });
            if let Some(link) = found {
                return link;
            }
            assert!(Instant::now() < deadline, "no mail to {to} with a link to {path}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Mail sent to `to` so far, oldest first, waiting up to 10 s for at least `n`.
    pub async fn mails_to(&self, to: &str, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails: Vec<(String, String)> =
                sqlx::query_as("SELECT subject, body FROM mail_outbox WHERE lower(recipient) = lower($1) ORDER BY id")
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await
                    .expect("outbox");
            if mails.len() >= n || Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A developer who signed up, confirmed the address and is signed in.
    pub async fn developer(&self, email: &str) -> Browser {
        let mut b = self.browser();
        b.get("/signup").await;
        let page = b.post("/signup", &[("name", "Ada Lovelace"), ("email", email), ("password", PASSWORD)]).await;
        assert_eq!(page.status, 200, "{}", page.html);
        let link = self.link_in_mail(email, "/verify?token=").await;
        b.get(&link).await;
        let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
        let done = b.post("/verify", &[("token", &token)]).await;
        assert!(done.url.ends_with("/apps?notice=verified"), "after confirming: {}", done.url);
        assert!(done.shows("Your e-mail address is confirmed. Welcome!"), "the welcome notice");
        b
    }

    /// An admin user with `role` made by the owner over the REST API; returns (e-mail, password).
    pub async fn admin_user(&self, role: &str) -> (String, String) {
        let email = format!("{role}-{}@example.com", uuid::Uuid::new_v4().simple());
        let body = json!({"email": email, "role": role, "password": PASSWORD});
        let (status, user) = self.admin_api(reqwest::Method::POST, "/users", Some(body)).await;
        assert_eq!(status, 201, "{user}");
        (email, PASSWORD.to_owned())
    }

    /// A browser logged in to the admin UI as `email`.
    pub async fn admin_ui(&self, email: &str, password: &str) -> Browser {
        let mut b = Browser::new(&self.admin.base_url);
        let login = b.get("/ui/login").await;
        assert_eq!(login.status, 200);
        let page = b.post("/ui/login", &[("email", email), ("password", password), ("next", "")]).await;
        assert!(page.url.ends_with("/ui"), "after login: {} {}", page.url, page.html);
        b
    }

    /// The admin UI as its owner.
    pub async fn owner_ui(&self) -> Browser {
        let (email, password) = (self.admin.owner_email.clone(), self.admin.owner_password.clone());
        self.admin_ui(&email, &password).await
    }

    /// Counts rows of `table` (for "nothing changed" checks).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await.expect("count");
        n
    }
}

/// One page as a browser got it (after redirects).
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub html: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// Whether the page's text contains `s` (HTML-escaped as the page would show it; text of
    /// the template itself, with apostrophes, as written).
    pub fn shows(&self, s: &str) -> bool {
        let markup = s.contains(['<', '>', '&', '"']);
        self.html.contains(&escape(s)) || (!markup && self.html.contains(s))
    }

    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        attr_after(&self.html, "name=\"csrf\" value=\"").unwrap_or_default()
    }

    /// The message shown next to field `name`, if any.
    pub fn field_error(&self, name: &str) -> Option<String> {
        let marker = format!("id=\"{name}-error\"><span class=\"vh\">Error: </span>");
        let start = self.html.find(&marker)? + marker.len();
        Some(self.html[start..].split('<').next().unwrap_or_default().to_owned())
    }
}

fn attr_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    Some(html[start..].split('"').next().unwrap_or_default().to_owned())
}

/// askama's HTML escaping of text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&#38;").replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// A browser without JavaScript: keeps cookies, follows redirects, sends forms with the
/// CSRF token of the page it last loaded.
pub struct Browser {
    base: String,
    pub http: reqwest::Client,
    pub last: Option<Page>,
    /// The CSRF token of the last page that had a form (a page without forms, such as an
    /// error page, leaves it as it was, as the browser's other tab would).
    csrf: String,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().cookie_store(true).build().expect("client");
        Self { base: base.to_owned(), http, last: None, csrf: String::new() }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let res = self.http.get(self.url(path)).send().await.expect("GET");
        self.keep(res).await
    }

    /// Posts `fields` with the CSRF token of the last page.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, &[]).await
    }

    /// Posts exactly `form` with extra headers.
    pub async fn post_raw(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut req = self.http.post(self.url(path)).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("POST");
        self.keep(res).await
    }

    /// Posts a multipart form (`files`: field, file name, content) with the page's CSRF token.
    pub async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], files: &[(&str, &str, &str)]) -> Page {
        let mut form = reqwest::multipart::Form::new().text("csrf", self.csrf.clone());
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        for (k, name, content) in files {
            let part = reqwest::multipart::Part::text(content.to_string()).file_name(name.to_string());
            form = form.part(k.to_string(), part);
        }
        let res = self.http.post(self.url(path)).multipart(form).send().await.expect("POST");
        self.keep(res).await
    }

    async fn keep(&mut self, res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let url = res.url().to_string();
        let headers = res.headers().clone();
        let html = res.text().await.unwrap_or_default();
        let page = Page { status, url, html, headers };
        let token = page.csrf();
        if !token.is_empty() {
            self.csrf = token;
        }
        self.last = Some(page.clone());
        page
    }
}
