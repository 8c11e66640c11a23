//! Live demo traffic: a few calls per second through the real gateway (over HTTP, to its
//! listener) with the demo apps' keys, so the dashboard's last hour shows usage recorded by
//! the gateway's own pipeline. Busier apps call more; some calls carry no key (401), some
//! exceed the `free` plan of the books API (429), and `ledger-sync` calls the payments API
//! before its subscription is approved (403).

use std::future::Future;
use std::time::Duration;

use reqwest::Method;

use super::{APIS, APPS, ApiSpec, DemoKey};

/// Calls per second.
pub const RATE: u64 = 4;
/// Weight of keyless calls, in the apps' unit (busiest-hour calls per hour).
const KEYLESS_WEIGHT: f64 = 900.0;
/// How long a call may take before it is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Who calls: a key (or none) and the APIs it calls.
struct Caller {
    key: Option<String>,
    weight: f64,
    apis: Vec<&'static ApiSpec>,
}

/// The callers: each app with a stored key, on every API it subscribed to, and keyless calls
/// on every API.
fn callers(keys: &[DemoKey]) -> Vec<Caller> {
    let mut out: Vec<Caller> = APPS
        .iter()
        .filter_map(|app| {
            let key = keys.iter().find(|k| k.app == app.name)?;
            let apis = APIS.iter().filter(|api| app.subscriptions.iter().any(|(name, _)| *name == api.name)).collect();
            Some(Caller { key: Some(key.secret.clone()), weight: app.per_hour, apis })
        })
        .collect();
    out.push(Caller { key: None, weight: KEYLESS_WEIGHT, apis: APIS.iter().collect() });
    out
}

/// One call: method, path (with query) and body.
struct Call<'a> {
    key: Option<&'a str>,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

/// A random call: a caller by weight, one of its APIs, a route by weight, an example path.
fn pick<'a>(rng: &mut fastrand::Rng, callers: &'a [Caller]) -> Option<Call<'a>> {
    let total: f64 = callers.iter().map(|c| c.weight).sum();
    let mut at = rng.f64() * total;
    let caller = callers.iter().find(|c| {
        at -= c.weight;
        at < 0.0
    })?;
    let api = caller.apis.get(rng.usize(..caller.apis.len().max(1)))?;
    let routes: u32 = api.routes.iter().map(|r| r.weight).sum();
    let mut at = rng.u32(..routes.max(1));
    let route = api.routes.iter().find(|r| {
        let hit = at < r.weight;
        at = at.saturating_sub(r.weight);
        hit
    })?;
    let path = route.examples.get(rng.usize(..route.examples.len().max(1)))?;
    Some(Call { key: caller.key.as_deref(), method: route.method, path, body: route.body })
}

/// Calls the gateway at `gateway` (`http://host:port`) [`RATE`] times a second with the
/// demo `keys` until `shutdown` completes. Waits for the gateway to be up first.
pub async fn run(gateway: String, keys: Vec<DemoKey>, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().timeout(CALL_TIMEOUT).build()?;
    let callers = callers(&keys);
    let mut rng = fastrand::Rng::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let work = async {
        wait_for(&client, &gateway).await;
        tracing::info!(rate = RATE, gateway, apps = callers.len() - 1, "demo traffic started");
        loop {
            tick.tick().await;
            if let Some(call) = pick(&mut rng, &callers) {
                send(&client, &gateway, &call).await;
            }
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = work => {}
    }
    Ok(())
}

/// Polls the gateway's health endpoint until it answers.
async fn wait_for(client: &reqwest::Client, gateway: &str) {
    let url = format!("{gateway}{}", tollgate_gateway::HEALTH_PATH);
    loop {
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(client: &reqwest::Client, gateway: &str, call: &Call<'_>) {
    let method = Method::from_bytes(call.method.as_bytes()).unwrap_or(Method::GET);
    let mut request = client.request(method, format!("{gateway}{}", call.path));
    if let Some(key) = call.key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = call.body {
        request = request.header("content-type", "application/json").body(body);
    }
    match request.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            // Read the body, so the connection is reused.
            let _ = res.bytes().await;
            tracing::trace!(path = call.path, status, "demo call");
        }
        Err(error) => tracing::debug!(path = call.path, %error, "demo call failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_cover_every_app_with_a_key_and_keyless_calls() {
        let keys: Vec<DemoKey> =
            APPS.iter().map(|a| DemoKey { app: a.name.into(), secret: format!("tg_{}", a.name) }).collect();
        let callers = callers(&keys);
        assert_eq!(callers.len(), APPS.len() + 1);
        let mut rng = fastrand::Rng::with_seed(7);
        let calls: Vec<Call<'_>> = (0..2000).filter_map(|_| pick(&mut rng, &callers)).collect();
        assert_eq!(calls.len(), 2000, "every pick finds a call");
        assert!(calls.iter().any(|c| c.key.is_none()), "some calls carry no key");
        for app in &APPS {
            let key = format!("tg_{}", app.name);
            assert!(calls.iter().any(|c| c.key == Some(key.as_str())), "{} calls", app.name);
        }
        let missing = super::callers(&[]);
        assert_eq!(missing.len(), 1, "without stored keys only keyless calls are made");
    }
}
