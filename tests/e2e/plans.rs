//! Edge security across a fleet: three `tollgate gateway` processes on one PostgreSQL and one
//! private Redis enforce the API keys, subscriptions and plans set through the admin API. A
//! Redis-counted limit is shared by all nodes, a Redis outage is met by each plan's failure
//! policy and shared counting resumes once Redis is back; a local limit is split among the
//! live nodes; a revoked key is refused everywhere.
//!
//! Limits are checked against the plan's promise (`gateway/src/limits/plan.rs`): N per second
//! with burst B admits at most N + B in any second. Concurrent clients call every node at once;
//! a request counts inside a window only if it was both sent and answered within it, so
//! latency can never make the fleet look better than it is. The gateways run with their
//! default Redis timeout: on a busy test machine a slow answer must not cost the promise.
//! Deadlines are generous: they catch what never happens, not what is slow.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tollgate_admin::testkit::{TestDatabase, test_database};

use crate::support::admin::Admin;
use crate::support::gateway::{Gateway, Reply};
use crate::support::redis::PrivateRedis;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// Gateway nodes per test.
const NODES: usize = 3;
/// How long a committed change may take to be enforced by every node.
const PROPAGATION: Duration = Duration::from_secs(5);
/// How long a node may take to count in Redis again once it is back (its circuit retries
/// Redis 1 s after a failure).
const REDIS_RECOVERY: Duration = Duration::from_secs(20);
/// How long a node may take to count every live node (nodes report every 5 s).
const NODES_SEEN: Duration = Duration::from_secs(20);
/// How long each load run calls the fleet.
const RUN: Duration = Duration::from_secs(3);
/// Revocation must reach every node within this (the design target is milliseconds).
const REVOCATION_BOUND: Duration = Duration::from_secs(5);
/// The default header of `key_auth`.
const KEY_HEADER: &str = "x-api-key";
/// The metered plans' rate (per second) and burst: at most 25 in any second.
const PER_SECOND: u64 = 20;
const BURST: u64 = 5;

/// A PostgreSQL database, the admin on it, a private Redis and three gateway nodes using both.
struct Fleet {
    nodes: Vec<Gateway>,
    admin: Admin,
    redis: PrivateRedis,
    _db: TestDatabase,
    _scratch: ScratchDir,
}

/// A consumer with one API key and a subscription.
struct App {
    consumer: String,
    key_id: String,
    key: String,
}

impl Fleet {
    async fn start() -> anyhow::Result<Self> {
        let scratch = ScratchDir::new()?;
        let redis = PrivateRedis::start(&scratch.path().join("redis")).await?;
        let db = test_database().await;
        let admin = Admin::start(&db.url).await?;
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let url = redis.url();
            let node = Gateway::start_with(&db.url, &scratch.path().join(format!("node{i}")), |cmd| {
                cmd.args(["--redis-url", &url]);
                cmd.env_remove("TOLLGATE_LIMIT_RESERVE_BATCH");
            })
            .await?;
            nodes.push(node);
        }
        Ok(Self { nodes, admin, redis, _db: db, _scratch: scratch })
    }

    /// An API `name` accepting `auth_methods`, served by `upstream` on the route `path`.
    async fn publish(
        &self,
        name: &str,
        auth_methods: &[&str],
        upstream: SocketAddr,
        path: &str,
    ) -> anyhow::Result<String> {
        let api = self.admin.create_api_with(json!({"name": name, "auth_methods": auth_methods})).await?;
        self.admin.add_target(&api, upstream).await?;
        self.admin.add_route(&api, &format!("{name}-route"), &[path]).await?;
        Ok(api)
    }

    /// A consumer `name` with a key, subscribed to `plan` (which needs no approval).
    async fn app(&self, name: &str, plan: &str) -> anyhow::Result<App> {
        let consumer = self.admin.create_consumer(json!({"name": name, "custom_id": format!("crm-{name}")})).await?;
        let (key_id, key) = self.admin.create_key(&consumer).await?;
        let subscription = self.admin.subscribe(&consumer, plan).await?;
        ensure!(subscription["status"] == "active", "a plan without approval starts active: {subscription}");
        Ok(App { consumer, key_id, key })
    }

    /// Waits until every node enforces the newest change.
    async fn synced(&self) -> anyhow::Result<()> {
        let last = self.admin.last_event_id().await?;
        for node in &self.nodes {
            eventually(&format!("{} to enforce event {last}", node.addr), PROPAGATION, || async {
                match node.config_event_id().await {
                    Ok(id) if id >= last => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Waits until every node answers `GET path` with `status` (and the problem type `slug`,
    /// when given); the replies, one per node.
    async fn everywhere(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        status: u16,
        slug: Option<&str>,
    ) -> anyhow::Result<Vec<Reply>> {
        let mut replies = Vec::with_capacity(NODES);
        for node in &self.nodes {
            let what = format!("GET {path} on {} to answer {status} {slug:?}", node.addr);
            let reply = eventually(&what, PROPAGATION, || async {
                let reply = node.request(path, headers).await.map_err(|e| format!("{e:#}"))?;
                let problem_ok = slug.is_none_or(|s| reply.problem_type() == Some(problem(s)));
                if reply.status == status && problem_ok { Ok(reply) } else { Err(format!("{reply:?}")) }
            })
            .await?;
            replies.push(reply);
        }
        Ok(replies)
    }

    /// `count` calls of `GET path` with `key`, one node after the other: (node index, reply).
    async fn round_robin(&self, path: &str, key: &str, count: usize) -> anyhow::Result<Vec<(usize, Reply)>> {
        let mut replies = Vec::with_capacity(count);
        for i in 0..count {
            let node = i % NODES;
            replies.push((node, self.nodes[node].request(path, &[(KEY_HEADER, key)]).await?));
        }
        Ok(replies)
    }

    /// One client per node calling `GET path` with `key` back to back, all at once, for `run`:
    /// every call with when it was sent and answered.
    async fn load(&self, path: &str, key: &str, run: Duration) -> anyhow::Result<Vec<Call>> {
        let until = Instant::now() + run;
        let clients = self.nodes.iter().enumerate().map(|(node, gateway)| async move {
            let mut calls = Vec::new();
            while Instant::now() < until {
                let sent = Instant::now();
                let reply = gateway.request(path, &[(KEY_HEADER, key)]).await?;
                calls.push(Call { node, sent, answered: Instant::now(), reply });
            }
            anyhow::Ok(calls)
        });
        let mut all: Vec<Call> = futures_util::future::try_join_all(clients).await?.into_iter().flatten().collect();
        all.sort_by_key(|c| c.sent);
        Ok(all)
    }

    /// Waits until every node splits local limits among all the nodes.
    async fn nodes_seen(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            node.wait_logged(&format!("local limits split {NODES} ways"), 1, NODES_SEEN).await?;
        }
        Ok(())
    }

    /// True when the private Redis holds a counter of `consumer`.
    async fn counted_in_redis(&self, consumer: &str) -> anyhow::Result<bool> {
        Ok(self.redis.keys().await?.iter().any(|k| k.contains(consumer)))
    }
}

fn problem(slug: &str) -> String {
    format!("urn:tollgate:problem:{slug}")
}

/// A timed call.
struct Call {
    node: usize,
    sent: Instant,
    answered: Instant,
    reply: Reply,
}

/// The most calls admitted inside any one second (sent and answered in it).
fn busiest(calls: &[Call]) -> u64 {
    let admitted: Vec<&Call> = calls.iter().filter(|c| c.reply.status == 200).collect();
    let within = |start: Instant| admitted.iter().filter(|c| c.sent >= start && c.answered < start + SECOND).count();
    admitted.iter().map(|c| within(c.sent) as u64).max().unwrap_or(0)
}

const SECOND: Duration = Duration::from_secs(1);

/// How many of `calls` (of `node`, or all) have `status`.
fn count(calls: &[Call], node: Option<usize>, status: u16) -> u64 {
    calls.iter().filter(|c| node.is_none_or(|want| c.node == want) && c.reply.status == status).count() as u64
}

/// Anything but 200 and 429, for the failure message.
fn unexpected(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !matches!(c.reply.status, 200 | 429))
        .map(|c| format!("node{}: {:?}", c.node, c.reply))
        .collect()
}

/// The plan's fields: its promise in `RateLimit-Policy`, and `RateLimit` naming the second
/// window with what remains (at most B) and when it is whole again; on a 429, `t` is the
/// `Retry-After` value and nothing remains.
fn check_rate_headers(reply: &Reply) -> anyhow::Result<()> {
    let policy = format!("\"second\";q={};w=1", PER_SECOND + BURST);
    ensure!(reply.header("ratelimit-policy") == Some(policy.as_str()), "RateLimit-Policy {policy}: {reply:?}");
    let field = reply.header("ratelimit").with_context(|| format!("no RateLimit: {reply:?}"))?;
    let parts: Vec<&str> = field.split(';').collect();
    let value = |key: &str| parts.iter().find_map(|p| p.strip_prefix(key)?.parse::<u64>().ok());
    let (remaining, reset) = (value("r="), value("t="));
    ensure!(parts.first() == Some(&"\"second\"") && remaining.is_some_and(|r| r <= BURST), "RateLimit: {field}");
    ensure!(reply.header("ratelimit-limit").is_none(), "legacy fields only when asked for: {reply:?}");
    if reply.status == 429 {
        ensure!(reply.problem_type() == Some(problem("rate-limited")), "rate-limited problem+json: {reply:?}");
        let retry = reply.header("retry-after").and_then(|v| v.parse::<u64>().ok());
        ensure!(retry.is_some_and(|s| s >= 1) && retry == reset, "Retry-After equal to t: {reply:?}");
        ensure!(remaining == Some(0), "nothing remains on a 429: {reply:?}");
    }
    Ok(())
}

/// Calls from every node with one key keep the plan's promise together: at most N + B in any
/// second, yet the fleet is not starved (close to N a second); every node admits some and
/// refuses some. Returns the admitted count.
fn check_promise(calls: &[Call], run: Duration, upstream_body: &str) -> anyhow::Result<u64> {
    ensure!(unexpected(calls).is_empty(), "only 200 and 429 expected: {:#?}", unexpected(calls));
    let (ok, most) = (count(calls, None, 200), busiest(calls));
    ensure!(most <= PER_SECOND + BURST, "{most} admitted within one second, promised at most {}", PER_SECOND + BURST);
    let least = (run.as_secs_f64() * PER_SECOND as f64 * 0.7) as u64;
    ensure!(ok >= least, "only {ok} of {} admitted in {run:?}: at least {least} expected", calls.len());
    for call in calls {
        check_rate_headers(&call.reply).with_context(|| format!("node{}", call.node))?;
        if call.reply.status == 200 {
            ensure!(call.reply.body == upstream_body, "node{}: the upstream's answer: {:?}", call.node, call.reply);
        }
    }
    for node in 0..NODES {
        let (admitted, refused) = (count(calls, Some(node), 200), count(calls, Some(node), 429));
        ensure!(admitted >= 1 && refused >= 1, "node{node} admitted {admitted} and refused {refused}");
    }
    println!(
        "{ok} of {} admitted in {run:?}, at most {most} in one second (promise {})",
        calls.len(),
        PER_SECOND + BURST
    );
    Ok(ok)
}

fn metered(name: &str, mode: &str, policy: &str) -> Value {
    json!({"name": name, "rate_limit_per_second": PER_SECOND, "burst": BURST,
           "limit_mode": mode, "redis_failure_policy": policy})
}

#[tokio::test]
async fn shared_limit_across_three_nodes() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let upstream = Upstream::start("metered").await?;
    let api = fleet.publish("metered", &["key_auth"], upstream.addr, "/metered").await?;
    let app = fleet
        .app("metered-app", &fleet.admin.create_plan(&api, metered("shared", "redis", "fail_open")).await?)
        .await?;
    fleet.synced().await?;

    let calls = fleet.load("/metered", &app.key, RUN).await?;
    check_promise(&calls, RUN, &upstream.body_for("/metered")).context("Redis counting")?;
    ensure!(fleet.counted_in_redis(&app.consumer).await?, "no counter of the consumer in Redis");
    Ok(())
}

/// A local plan is split among the live nodes: together they keep the promise.
#[tokio::test]
async fn local_limits_are_split_among_the_live_nodes() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let upstream = Upstream::start("split").await?;
    let api = fleet.publish("split", &["key_auth"], upstream.addr, "/split").await?;
    let app =
        fleet.app("split-app", &fleet.admin.create_plan(&api, metered("local", "local", "fail_open")).await?).await?;
    fleet.synced().await?;
    fleet.nodes_seen().await?;

    let calls = fleet.load("/split", &app.key, RUN).await?;
    check_promise(&calls, RUN, &upstream.body_for("/split")).context("local counting, split 3 ways")?;
    ensure!(!fleet.counted_in_redis(&app.consumer).await?, "a local plan is not counted in Redis");
    Ok(())
}

#[tokio::test]
async fn redis_outage_falls_back_and_recovers() -> anyhow::Result<()> {
    let mut fleet = Fleet::start().await?;
    let upstream = Upstream::start("outage").await?;
    let api = fleet.publish("outage", &["key_auth"], upstream.addr, "/outage").await?;
    let open = fleet.admin.create_plan(&api, metered("open", "redis", "fail_open")).await?;
    let closed = fleet.admin.create_plan(&api, metered("closed", "redis", "fail_closed")).await?;
    let (during, strict) = (fleet.app("during", &open).await?, fleet.app("strict", &closed).await?);
    let after = fleet.app("after", &open).await?;
    let mut probes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        probes.push(fleet.app(&format!("probe{i}"), &open).await?);
    }
    fleet.synced().await?;
    fleet.nodes_seen().await?;

    let before = fleet.round_robin("/outage", &during.key, NODES).await?;
    ensure!(before.iter().all(|(_, r)| r.status == 200), "admitted while Redis is up: {before:#?}");
    fleet.everywhere("/outage", &[(KEY_HEADER, &strict.key)], 200, None).await?;
    ensure!(fleet.counted_in_redis(&during.consumer).await?, "no counter in Redis before the outage");

    // Down: each node counts its share (a third) in its fallback, continuing from what Redis
    // admitted on it, so the fleet keeps the same promise; no 5xx.
    fleet.redis.kill().await?;
    let calls = fleet.load("/outage", &during.key, RUN).await?;
    check_promise(&calls, RUN, &upstream.body_for("/outage")).context("fail-open fallback during the outage")?;
    let refusals =
        fleet.everywhere("/outage", &[(KEY_HEADER, &strict.key)], 503, Some("rate-limit-unavailable")).await?;
    for reply in &refusals {
        ensure!(reply.header("retry-after").is_some(), "a fail-closed 503 says when to retry: {reply:?}");
        ensure!(reply.header("ratelimit").is_none(), "no limit is claimed while the counter is down: {reply:?}");
    }
    for node in &fleet.nodes {
        node.wait_logged("rate-limit counter unreachable", 1, PROPAGATION).await?;
    }

    fleet.redis.restart().await?;
    ensure!(fleet.redis.keys().await?.is_empty(), "the restarted Redis starts empty");
    for (node, probe) in fleet.nodes.iter().zip(&probes) {
        wait_counting_in_redis(&fleet, node, probe).await?;
    }
    let calls = fleet.load("/outage", &after.key, RUN).await?;
    check_promise(&calls, RUN, &upstream.body_for("/outage")).context("Redis counting after the outage")?;
    fleet.everywhere("/outage", &[(KEY_HEADER, &strict.key)], 200, None).await?;
    Ok(())
}

/// Calls `node` with the probe's key until the probe's counter appears in Redis; no 5xx meanwhile.
async fn wait_counting_in_redis(fleet: &Fleet, node: &Gateway, probe: &App) -> anyhow::Result<()> {
    let server_error = eventually(&format!("{} to count in Redis again", node.addr), REDIS_RECOVERY, || async {
        let reply = node.request("/outage", &[(KEY_HEADER, &probe.key)]).await.map_err(|e| format!("{e:#}"))?;
        if reply.status >= 500 {
            return Ok(Some(reply));
        }
        match fleet.counted_in_redis(&probe.consumer).await {
            Ok(true) => Ok(None),
            other => Err(format!("{} and {other:?}", reply.status)),
        }
    })
    .await?;
    ensure!(server_error.is_none(), "{} failed while Redis came back: {server_error:?}", node.addr);
    Ok(())
}

#[tokio::test]
async fn revoked_key_is_rejected_everywhere() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let upstream = Upstream::start("revocable").await?;
    let api = fleet.publish("revocable", &["key_auth"], upstream.addr, "/revocable").await?;
    let plan = fleet.admin.create_plan(&api, json!({"name": "unmetered"})).await?;
    let app = fleet.app("revocable-app", &plan).await?;
    let (_, spare) = fleet.admin.create_key(&app.consumer).await?;
    fleet.everywhere("/revocable", &[(KEY_HEADER, &app.key)], 200, None).await?;
    fleet.everywhere("/revocable", &[(KEY_HEADER, &spare)], 200, None).await?;
    for reply in fleet.everywhere("/revocable", &[], 401, Some("credentials-missing")).await? {
        ensure!(reply.header("www-authenticate").is_some(), "a 401 names the credentials it wants: {reply:?}");
    }

    let started = Instant::now();
    fleet.admin.revoke_key(&app.consumer, &app.key_id).await?;
    let answered = started.elapsed();
    let reached = wait_refused_everywhere(&fleet.nodes, &app.key, started).await?;
    let all = reached.iter().max().copied().unwrap_or_default();
    println!("revocation: admin answered in {answered:?}; 401 on node0..2 after {reached:?}; all nodes in {all:?}");
    ensure!(all <= REVOCATION_BOUND, "revocation took {all:?} to reach every node (bound {REVOCATION_BOUND:?})");

    for round in 0..10 {
        for node in &fleet.nodes {
            let reply = node.request("/revocable", &[(KEY_HEADER, &app.key)]).await?;
            ensure!(reply.status == 401, "round {round}, {}: revoked key answered {reply:?}", node.addr);
            ensure!(reply.problem_type() == Some(problem("invalid-credentials")), "{reply:?}");
            ensure!(reply.header("www-authenticate").is_some(), "no WWW-Authenticate: {reply:?}");
        }
    }
    fleet.everywhere("/revocable", &[(KEY_HEADER, &spare)], 200, None).await?;
    Ok(())
}

/// Polls every node every few milliseconds until each refuses `key`; when each first did.
async fn wait_refused_everywhere(nodes: &[Gateway], key: &str, since: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut reached: Vec<Option<Duration>> = vec![None; nodes.len()];
    while reached.iter().any(Option::is_none) {
        for (node, at) in nodes.iter().zip(reached.iter_mut()).filter(|(_, at)| at.is_none()) {
            let reply = node.request("/revocable", &[(KEY_HEADER, key)]).await?;
            match reply.status {
                401 => *at = Some(since.elapsed()),
                200 => {}
                _ => anyhow::bail!("{} answered neither 200 nor 401 while the revocation spread: {reply:?}", node.addr),
            }
        }
        ensure!(
            since.elapsed() <= REVOCATION_BOUND * 2,
            "not refused everywhere after {:?}: {reached:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(reached.into_iter().flatten().collect())
}

#[tokio::test]
async fn subscription_states_are_enforced() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let echo = Upstream::start_echo("echo").await?;
    let api = fleet.publish("members", &["key_auth"], echo.addr, "/members").await?;
    let plan = fleet.admin.create_plan(&api, json!({"name": "gold", "approval_required": true})).await?;
    let consumer = fleet.admin.create_consumer(json!({"name": "acme-app", "custom_id": "crm-42"})).await?;
    let (key_id, key) = fleet.admin.create_key(&consumer).await?;
    let with_key = [(KEY_HEADER, key.as_str())];
    fleet.everywhere("/members", &with_key, 403, Some("subscription-required")).await?;

    let sub = fleet.admin.subscribe(&consumer, &plan).await?;
    ensure!(sub["status"] == "pending", "a plan with approval starts pending: {sub}");
    let sub = sub["id"].as_str().context("no subscription id")?.to_owned();
    fleet.everywhere("/members", &with_key, 403, Some("subscription-pending")).await?;

    fleet.admin.set_subscription_status(&sub, "active").await?;
    let spoofed = [
        (KEY_HEADER, key.as_str()),
        ("x-consumer-id", "spoofed"),
        ("x-plan", "platinum"),
        ("x-anonymous-consumer", "true"),
    ];
    for reply in fleet.everywhere("/members", &spoofed, 200, None).await? {
        let seen: Value = serde_json::from_str(&reply.body).with_context(|| format!("echo: {reply:?}"))?;
        let headers = &seen["headers"];
        let expected = [
            ("x-consumer-id", consumer.as_str()),
            ("x-consumer-username", "acme-app"),
            ("x-consumer-custom-id", "crm-42"),
            ("x-credential-id", key_id.as_str()),
            ("x-plan", "gold"),
        ];
        for (name, value) in expected {
            ensure!(
                headers[name] == json!([value]),
                "upstream saw {name}: {} (expected only {value:?})",
                headers[name]
            );
        }
        ensure!(
            headers.get("x-anonymous-consumer").is_none(),
            "a client's X-Anonymous-Consumer reached the upstream: {headers}"
        );
    }

    fleet.admin.set_subscription_status(&sub, "suspended").await?;
    fleet.everywhere("/members", &with_key, 403, Some("subscription-suspended")).await?;
    check_anonymous(&fleet, echo.addr).await
}

/// An API open to anonymous calls needs no key; the upstream learns the call is anonymous and
/// never sees a client's identity headers. Where keys are accepted too, a key that is sent
/// must be valid: it is refused, not downgraded to anonymous.
async fn check_anonymous(fleet: &Fleet, echo: SocketAddr) -> anyhow::Result<()> {
    fleet.publish("open-data", &["anonymous"], echo, "/open").await?;
    fleet.publish("mixed", &["key_auth", "anonymous"], echo, "/mixed").await?;
    let spoofed = [("x-consumer-id", "spoofed"), ("x-consumer-username", "someone")];
    for path in ["/open", "/mixed"] {
        for reply in fleet.everywhere(path, &spoofed, 200, None).await? {
            let seen: Value = serde_json::from_str(&reply.body).with_context(|| format!("echo: {reply:?}"))?;
            let headers = &seen["headers"];
            ensure!(headers["x-anonymous-consumer"] == json!(["true"]), "{path}: not marked anonymous: {headers}");
            for name in ["x-consumer-id", "x-consumer-username", "x-credential-id", "x-plan"] {
                ensure!(
                    headers.get(name).is_none(),
                    "{path}: {name} reached the upstream of an anonymous call: {headers}"
                );
            }
        }
    }
    fleet.everywhere("/mixed", &[(KEY_HEADER, "tg_not-a-key")], 401, Some("invalid-credentials")).await?;
    Ok(())
}
