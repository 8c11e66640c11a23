//! Config propagation benchmark: time from an admin API commit to the change being
//! enforced on every gateway node. Each round creates a route through the admin API and
//! polls all nodes (1 ms apart) until each routes it; reports p50/p99 of the slowest node.
//!
//! Usage: `propagation <admin-url> <email> <password> <upstream-port> <rounds> <gateway-url>...`

use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res =
            self.http.post(format!("{}/admin/v1{path}", self.base)).bearer_auth(&self.token).json(&body).send().await?;
        anyhow::ensure!(res.status().is_success(), "POST {path}: {}", res.status());
        Ok(res.json().await?)
    }
}

async fn wait_routed(http: &reqwest::Client, url: String) -> anyhow::Result<Duration> {
    let url = url.as_str();
    let start = Instant::now();
    loop {
        if http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "{url} never became routable");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 6,
        "usage: propagation <admin-url> <email> <password> <upstream-port> <rounds> <gateway-url>..."
    );
    let (base, email, password, port, rounds) =
        (&args[0], &args[1], &args[2], args[3].parse::<u16>()?, args[4].parse::<usize>()?);
    let gateways = &args[5..];
    let http = reqwest::Client::builder().pool_max_idle_per_host(8).build()?;
    let login: Value = http
        .post(format!("{base}/admin/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().ok_or_else(|| anyhow::anyhow!("login failed: {login}"))?.to_owned();
    let admin = Admin { http: http.clone(), base: base.clone(), token };
    // Anonymous: "routable" is a 200 from the upstream (APIs default to key auth, a 401).
    let name = format!("prop-{}", uuid::Uuid::new_v4().simple());
    let api = admin.post("/apis", json!({"name": name, "auth_methods": ["anonymous"]})).await?;
    let api_id = api["id"].as_str().unwrap_or_default().to_owned();
    admin.post(&format!("/apis/{api_id}/targets"), json!({"host": "127.0.0.1", "port": port})).await?;
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let path = format!("/prop{i}");
        let t0 = Instant::now();
        admin
            .post(&format!("/apis/{api_id}/routes"), json!({"name": format!("r{i}"), "paths": [path.clone()]}))
            .await?;
        let committed = t0.elapsed();
        let waits = gateways.iter().map(|g| wait_routed(&http, format!("{g}{path}")));
        let slowest = futures_util::future::try_join_all(waits).await?.into_iter().max().unwrap_or_default();
        samples.push((committed + slowest).as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "propagation to {} nodes over {rounds} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (includes the admin request)",
        gateways.len(),
        pct(&samples, 0.5),
        pct(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
