//! Edge security across a fleet: three `tollgate gateway` processes on one PostgreSQL and one
//! private Redis enforce the API keys, subscriptions and plans set through the admin API. A
//! Redis-counted limit is shared by all nodes, a Redis outage is met by each plan's failure
//! policy and shared counting resumes once Redis is back; a revoked key is refused everywhere.
//!
//! Deadlines are generous: they catch what never happens, not what is slow. Limits are checked
//! with the GCRA's own tolerance: over T seconds, N/min with burst B admits N + B + ⌊T·N/60⌋.

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
/// Revocation must reach every node within this (the design target is milliseconds).
const REVOCATION_BOUND: Duration = Duration::from_secs(5);
/// Above the 50 ms default: on a loaded test machine a slow answer must not be taken for an
/// outage (the fallback would admit more than the shared limit).
const REDIS_TIMEOUT_MS: &str = "1000";
/// The default header of `key_auth`.
const KEY_HEADER: &str = "x-api-key";
/// The metered plans' rate and burst.
const PER_MINUTE: u64 = 30;
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
                cmd.args(["--redis-url", &url, "--redis-timeout-ms", REDIS_TIMEOUT_MS]);
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

    /// True when the private Redis holds a counter of `consumer`.
    async fn counted_in_redis(&self, consumer: &str) -> anyhow::Result<bool> {
        Ok(self.redis.keys().await?.iter().any(|k| k.contains(consumer)))
    }
}

fn problem(slug: &str) -> String {
    format!("urn:tollgate:problem:{slug}")
}

/// The most a GCRA window of `limit`/min with `burst` admits over `elapsed`.
fn gcra_max(limit: u64, burst: u64, elapsed: Duration) -> u64 {
    limit + burst + (elapsed.as_secs_f64() * limit as f64 / 60.0).floor() as u64
}

/// How many of `replies` (of `node`, or all) have `status`.
fn count(replies: &[(usize, Reply)], node: Option<usize>, status: u16) -> u64 {
    replies.iter().filter(|(n, r)| node.is_none_or(|want| *n == want) && r.status == status).count() as u64
}

/// Anything but 200 and 429, for the failure message.
fn unexpected(replies: &[(usize, Reply)]) -> Vec<String> {
    replies.iter().filter(|(_, r)| !matches!(r.status, 200 | 429)).map(|(n, r)| format!("node{n}: {r:?}")).collect()
}

/// `RateLimit-*` and the same `X-RateLimit-*`, with the limit `limit`.
fn check_rate_headers(reply: &Reply, limit: u64) -> anyhow::Result<()> {
    for name in ["limit", "remaining", "reset"] {
        let ietf =
            reply.header(&format!("ratelimit-{name}")).with_context(|| format!("no RateLimit-{name}: {reply:?}"))?;
        ietf.parse::<u64>().with_context(|| format!("RateLimit-{name}: {ietf:?}"))?;
        ensure!(reply.header(&format!("x-ratelimit-{name}")) == Some(ietf), "X-RateLimit-{name} differs: {reply:?}");
    }
    ensure!(reply.header("ratelimit-limit") == Some(limit.to_string().as_str()), "limit {limit} expected: {reply:?}");
    Ok(())
}

/// A 429 as the plan's limit renders it.
fn check_limited(reply: &Reply, limit: u64) -> anyhow::Result<()> {
    check_rate_headers(reply, limit)?;
    ensure!(reply.problem_type() == Some(problem("rate-limited")), "rate-limited problem+json expected: {reply:?}");
    ensure!(reply.header("ratelimit-remaining") == Some("0"), "nothing remains on a 429: {reply:?}");
    let retry = reply.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    ensure!(retry.is_some_and(|s| s >= 1), "Retry-After of at least 1 s expected: {reply:?}");
    Ok(())
}

/// Calls spread over the nodes with one key obey one shared limit: every node admits some and
/// refuses some, and together they admit between N and N + B (+ refill).
fn check_shared(replies: &[(usize, Reply)], elapsed: Duration, upstream_body: &str) -> anyhow::Result<u64> {
    ensure!(unexpected(replies).is_empty(), "only 200 and 429 expected: {:#?}", unexpected(replies));
    let (ok, max) = (count(replies, None, 200), gcra_max(PER_MINUTE, BURST, elapsed));
    ensure!(
        (PER_MINUTE..=max).contains(&ok),
        "{ok} of {} admitted in {elapsed:?}, expected {PER_MINUTE}..={max}",
        replies.len()
    );
    for (node, reply) in replies {
        if reply.status == 429 {
            check_limited(reply, PER_MINUTE).with_context(|| format!("node{node}"))?;
        } else {
            check_rate_headers(reply, PER_MINUTE).with_context(|| format!("node{node}"))?;
            ensure!(reply.body == upstream_body, "node{node}: the upstream's answer expected: {reply:?}");
        }
    }
    for node in 0..NODES {
        let (admitted, refused) = (count(replies, Some(node), 200), count(replies, Some(node), 429));
        ensure!(admitted >= 1 && refused >= 1, "node{node} admitted {admitted} and refused {refused}");
    }
    Ok(ok)
}

#[tokio::test]
async fn shared_limit_across_three_nodes() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let upstream = Upstream::start("metered").await?;
    let api = fleet.publish("metered", &["key_auth"], upstream.addr, "/metered").await?;
    let plan = json!({"name": "shared", "rate_limit_per_minute": PER_MINUTE, "burst": BURST, "limit_mode": "redis"});
    let app = fleet.app("metered-app", &fleet.admin.create_plan(&api, plan).await?).await?;
    fleet.synced().await?;

    let started = Instant::now();
    let replies = fleet.round_robin("/metered", &app.key, 3 * PER_MINUTE as usize).await?;
    let elapsed = started.elapsed();
    let ok = check_shared(&replies, elapsed, &upstream.body_for("/metered"))?;
    println!(
        "shared limit: {ok} of {} admitted over {NODES} nodes in {elapsed:?} (N={PER_MINUTE}, B={BURST})",
        replies.len()
    );
    ensure!(fleet.counted_in_redis(&app.consumer).await?, "no counter of the consumer in Redis");
    Ok(())
}

#[tokio::test]
async fn redis_outage_falls_back_and_recovers() -> anyhow::Result<()> {
    let mut fleet = Fleet::start().await?;
    let upstream = Upstream::start("outage").await?;
    let api = fleet.publish("outage", &["key_auth"], upstream.addr, "/outage").await?;
    let plan = |name: &str, policy: &str| {
        json!({"name": name, "rate_limit_per_minute": PER_MINUTE, "burst": BURST,
               "limit_mode": "redis", "redis_failure_policy": policy})
    };
    let open = fleet.admin.create_plan(&api, plan("open", "fail_open")).await?;
    let closed = fleet.admin.create_plan(&api, plan("closed", "fail_closed")).await?;
    let (during, strict) = (fleet.app("during", &open).await?, fleet.app("strict", &closed).await?);
    let after = fleet.app("after", &open).await?;
    let mut probes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        probes.push(fleet.app(&format!("probe{i}"), &open).await?);
    }
    fleet.synced().await?;

    let before = fleet.round_robin("/outage", &during.key, NODES).await?;
    ensure!(count(&before, None, 200) == NODES as u64, "admitted while Redis is up: {before:#?}");
    fleet.everywhere("/outage", &[(KEY_HEADER, &strict.key)], 200, None).await?;
    ensure!(fleet.counted_in_redis(&during.consumer).await?, "no counter in Redis before the outage");

    fleet.redis.kill().await?;
    check_fallback(&fleet, &during.key).await?;
    let refusals =
        fleet.everywhere("/outage", &[(KEY_HEADER, &strict.key)], 503, Some("rate-limit-unavailable")).await?;
    for reply in &refusals {
        ensure!(reply.header("retry-after").is_some(), "a fail-closed 503 says when to retry: {reply:?}");
    }
    for node in &fleet.nodes {
        node.wait_logged("rate-limit counter unreachable", 1, PROPAGATION).await?;
    }

    fleet.redis.restart().await?;
    ensure!(fleet.redis.keys().await?.is_empty(), "the restarted Redis starts empty");
    for (node, probe) in fleet.nodes.iter().zip(&probes) {
        wait_counting_in_redis(&fleet, node, probe).await?;
    }
    let started = Instant::now();
    let replies = fleet.round_robin("/outage", &after.key, 3 * PER_MINUTE as usize).await?;
    let ok = check_shared(&replies, started.elapsed(), &upstream.body_for("/outage"))?;
    println!("after the outage: a fresh consumer got {ok} of {} admitted over {NODES} nodes", replies.len());
    fleet.everywhere("/outage", &[(KEY_HEADER, &strict.key)], 200, None).await?;
    Ok(())
}

/// Redis is down: a fail-open plan is counted by each node alone with its share of the limit
/// (N / live nodes, as the node last read it: 1 to 3), without a single 5xx.
async fn check_fallback(fleet: &Fleet, key: &str) -> anyhow::Result<()> {
    let per_node = 40;
    let started = Instant::now();
    let replies = fleet.round_robin("/outage", key, NODES * per_node).await?;
    let elapsed = started.elapsed();
    ensure!(unexpected(&replies).is_empty(), "only 200 and 429 during the outage: {:#?}", unexpected(&replies));
    for node in 0..NODES {
        let mine: Vec<&Reply> = replies.iter().filter(|(n, _)| *n == node).map(|(_, r)| r).collect();
        let share = mine.iter().filter_map(|r| r.header("ratelimit-limit")?.parse::<u64>().ok()).max().unwrap_or(0);
        let live = (1..=NODES as u64).find(|k| PER_MINUTE / k == share);
        let live = live.with_context(|| format!("node{node}: limit {share} is no node share of {PER_MINUTE}"))?;
        let (admitted, refused) = (count(&replies, Some(node), 200), count(&replies, Some(node), 429));
        let max = gcra_max(share, BURST / live, elapsed);
        println!("outage: node{node} counts {live} live nodes, admitted {admitted} of {per_node} (at most {max})");
        ensure!(admitted >= 1, "node{node} admitted nothing: the fallback did not engage");
        ensure!(admitted <= max && refused >= 1, "node{node} admitted {admitted} > its share {max}");
        // A node re-reads the live nodes every few seconds, so its share may change within the
        // run: each refusal must carry a node share, and be well-formed for the share it used.
        for reply in mine.iter().filter(|r| r.status == 429) {
            let own = reply.header("ratelimit-limit").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            ensure!(
                (1..=NODES as u64).any(|k| PER_MINUTE / k == own),
                "node{node}: a 429's limit {own} is no node share"
            );
            check_limited(reply, own).with_context(|| format!("node{node}"))?;
        }
    }
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
