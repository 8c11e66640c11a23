//! Plans across a fleet, checked as an operator would (issue 16's acceptance): three real
//! `tollgate gateway` processes (the release binary beside this one) on a fresh PostgreSQL
//! database and one private `redis-server`, a plan of 600/min with burst 100, and three
//! clients, each pacing 100 req/s (a timer, not a closed loop) over keep-alive to its own
//! node. Every request's send and receive instants and status are recorded; a window counts
//! only the admitted requests whose [send, receive] lies inside it, so latency never inflates
//! a count.
//!
//!   cargo build --release -p tollgate -p tollgate-bench
//!   target/release/fleet postgres://postgres@127.0.0.1:5432/postgres [seconds] [--no-kill]
//!
//! Scenarios, each `seconds` long (default 60) on a consumer of its own (a fresh counter):
//! 1. `redis`, Redis healthy: at most N + B = 700 in any 60 s (+1 %: 707).
//! 2. `redis`, Redis frozen (SIGSTOP) from a third of the run for a sixth of it (20 s, 10 s),
//!    then SIGCONT: during the stop at most 10 s of the rate + burst = 200, no 5xx; a window
//!    holding the stop at most 707 + B (the stop's own burst on top of the healthy promise).
//! 3. the same with Redis killed (SIGKILL) and started again empty; the 60 s count is shown but
//!    not bounded (a restarted Redis has forgotten what it counted). `--no-kill` skips it.
//! 4. `local`, the plan divided among the live nodes: at most 735 + burst = 835 in any 60 s.
//!
//! Before the load, the nodes' shares are watched until each node divides `local` plans by
//! three (read from the `RateLimit` field of a probe consumer: r ≤ 32 once B + 1 is split
//! three ways), and `/nodes` on the admin lists three live nodes. Prints markdown tables;
//! exits 1 when a bound is broken.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tollgate_admin::AdminConfig;
use tollgate_bench::{fresh_database, pct};

const NODES: usize = 3;
/// Requests per second of each client.
const RATE: u64 = 100;
const PER_MINUTE: u64 = 600;
const BURST: u64 = 100;
/// The plan's emission interval T = W / N, in seconds.
const T: f64 = 60.0 / PER_MINUTE as f64;
const KEY_HEADER: &str = "x-api-key";
const DATABASE: &str = "tollgate_bench_fleet";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = args.first().cloned().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let secs: u64 = args.get(1).map(|s| s.parse()).transpose().context("seconds")?.unwrap_or(60);
    ensure!(secs >= 6, "a run of at least 6 seconds is needed (the stop is a sixth of it)");
    let kill_variant = !args.iter().any(|a| a == "--no-kill");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "fleet: {NODES} nodes, {NODES} clients at {RATE} req/s for {secs} s each run; load average at start: {load}"
    );

    let mut fleet = Fleet::start(&server).await?;
    let share_follow = fleet.wait_shares().await?;
    let stop_at = Duration::from_secs(secs) / 3;
    let stop_for = Duration::from_secs(secs) / 6;
    let mut runs = Vec::new();
    for (name, key, disturb) in [
        ("redis, Redis healthy", 0, Disturb::None),
        ("redis, Redis SIGSTOP", 1, Disturb::Stop),
        ("redis, Redis SIGKILL + restart", 2, Disturb::Kill),
        ("local, split among nodes", 3, Disturb::None),
    ] {
        if disturb == Disturb::Kill && !kill_variant {
            continue;
        }
        let samples = fleet.run(key, secs, disturb, stop_at, stop_for).await?;
        let stop = (disturb != Disturb::None).then(|| (stop_at.as_secs_f64(), (stop_at + stop_for).as_secs_f64()));
        runs.push(Run::new(name, key == 3, disturb, samples, stop));
    }
    let broken = report(&runs, stop_for, share_follow);
    fleet.stop().await;
    drop_database(&server).await?;
    Ok(if broken { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What happens to Redis during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disturb {
    None,
    /// SIGSTOP, then SIGCONT: connections stay open, nothing answers.
    Stop,
    /// SIGKILL, then a new server on the same port, empty.
    Kill,
}

/// One request: which node, when sent and answered (seconds from the run's start), status
/// (0: no answer).
#[derive(Debug, Clone, Copy)]
struct Sample {
    node: usize,
    send: f64,
    recv: f64,
    status: u16,
}

/// The admin, Redis, an upstream and the gateway nodes, with a key per scenario.
struct Fleet {
    admin: Admin,
    redis: Redis,
    nodes: Vec<Node>,
    /// Keys of the scenarios' consumers (0–2 on the `redis` plan, 3 on the `local` one) and
    /// the probe's (4, `local`).
    keys: Vec<String>,
    scratch: PathBuf,
}

impl Fleet {
    async fn start(server: &str) -> anyhow::Result<Self> {
        let scratch = std::env::temp_dir().join(format!("tollgate-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        let pool = fresh_database(server, DATABASE).await?;
        let admin = Admin::start(pool).await?;
        let upstream = upstream().await?;
        let redis = Redis::start(&scratch.join("redis")).await?;

        let api = admin.post("/apis", json!({"name": "fleet", "auth_methods": ["key_auth"]})).await?;
        let api = id(&api)?;
        let target = json!({"host": upstream.ip().to_string(), "port": upstream.port()});
        admin.post(&format!("/apis/{api}/targets"), target).await?;
        admin.post(&format!("/apis/{api}/routes"), json!({"name": "fleet", "paths": ["/fleet"]})).await?;
        let mut plans = Vec::new();
        for mode in ["redis", "local"] {
            let plan = json!({"name": mode, "rate_limit_per_minute": PER_MINUTE, "burst": BURST,
                              "limit_mode": mode, "redis_failure_policy": "fail_open", "approval_required": false});
            plans.push(id(&admin.post(&format!("/apis/{api}/plans"), plan).await?)?);
        }
        let mut keys = Vec::new();
        for (i, plan) in [&plans[0], &plans[0], &plans[0], &plans[1], &plans[1]].into_iter().enumerate() {
            let consumer = id(&admin.post("/consumers", json!({"name": format!("client {i}")})).await?)?;
            let key = admin.post(&format!("/consumers/{consumer}/keys"), json!({})).await?;
            keys.push(key["secret"].as_str().with_context(|| format!("no secret in {key}"))?.to_owned());
            let sub = admin.post("/subscriptions", json!({"consumer_id": consumer, "plan_id": plan})).await?;
            ensure!(sub["status"] == "active", "subscription not active: {sub}");
        }

        let bin = std::env::current_exe()?.with_file_name("tollgate");
        ensure!(bin.exists(), "{} is missing: cargo build --release -p tollgate", bin.display());
        let db_url = format!("{}/{DATABASE}", server.rsplit_once('/').map_or(server, |(b, _)| b));
        let mut nodes = Vec::new();
        for i in 0..NODES {
            nodes.push(Node::start(&bin, &db_url, &redis.url(), &scratch.join(format!("node{i}"))).await?);
        }
        Ok(Self { admin, redis, nodes, keys, scratch })
    }

    /// Waits until `/nodes` lists every node as live and each node splits `local` plans
    /// among all of them (read from the probe consumer's `RateLimit` field); the seconds
    /// from the last node's start to each.
    async fn wait_shares(&self) -> anyhow::Result<(f64, f64)> {
        let started = Instant::now();
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?;
        let (mut listed, mut shared) = (None, None);
        while started.elapsed() < Duration::from_secs(40) && (listed.is_none() || shared.is_none()) {
            let nodes = self.admin.get("/nodes").await?;
            let live = nodes["data"].as_array().map_or(0, |d| d.iter().filter(|n| n["live"] == true).count());
            if live >= NODES && listed.is_none() {
                listed = Some(started.elapsed().as_secs_f64());
            }
            let mut splits = Vec::new();
            for node in &self.nodes {
                let res = http.get(node.url("/fleet")).header(KEY_HEADER, &self.keys[4]).send().await?;
                let field = res.headers().get("ratelimit").and_then(|v| v.to_str().ok()).unwrap_or_default();
                splits.push(nodes_in_share(field));
            }
            if splits.iter().all(|s| *s == Some(NODES as u64)) && shared.is_none() {
                shared = Some(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match (listed, shared) {
            (Some(l), Some(s)) => Ok((l, s)),
            _ => bail!("after 40 s: /nodes listed all nodes: {listed:?}, every node split the plan: {shared:?}"),
        }
    }

    /// One run of `secs` seconds with the key `key`, Redis disturbed as `disturb` from
    /// `stop_at` for `stop_for`.
    async fn run(
        &mut self,
        key: usize,
        secs: u64,
        disturb: Disturb,
        stop_at: Duration,
        stop_for: Duration,
    ) -> anyhow::Result<Vec<Sample>> {
        let t0 = Instant::now();
        let clients: Vec<_> =
            self.nodes.iter().enumerate().map(|(i, n)| client(i, n.url("/fleet"), &self.keys[key], secs, t0)).collect();
        let redis = &mut self.redis;
        let chaos = async move {
            if disturb == Disturb::None {
                return Ok(());
            }
            tokio::time::sleep_until((t0 + stop_at).into()).await;
            match disturb {
                Disturb::Stop => redis.signal("STOP").await?,
                _ => redis.kill().await?,
            }
            tokio::time::sleep_until((t0 + stop_at + stop_for).into()).await;
            match disturb {
                Disturb::Stop => redis.signal("CONT").await,
                _ => redis.spawn().await,
            }
        };
        let (samples, chaos) = tokio::join!(futures_util::future::try_join_all(clients), chaos);
        chaos?;
        Ok(samples?.into_iter().flatten().collect())
    }

    async fn stop(self) {
        drop(self.nodes);
        drop(self.redis);
        let _ = std::fs::remove_dir_all(&self.scratch);
        drop(self.admin);
    }
}

/// How many nodes a `local` plan is split among, from a `RateLimit` field
/// `"minute";r=<remaining>;t=<s>` of a probe paced far below the rate: each node may admit
/// ⌊(B + 1) / n⌋ at once, so r is at most that minus one.
fn nodes_in_share(field: &str) -> Option<u64> {
    let r: u64 = field.split(';').find_map(|p| p.trim().strip_prefix("r="))?.parse().ok()?;
    (1..=NODES as u64).rev().find(|n| r < (BURST + 1) / n)
}

/// One client: `RATE` requests a second to `url` for `secs` seconds over one keep-alive
/// client, each sent on its tick without waiting for the previous answer.
async fn client(node: usize, url: String, key: &str, secs: u64, t0: Instant) -> anyhow::Result<Vec<Sample>> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    let mut tick = tokio::time::interval_at(t0.into(), Duration::from_secs(1) / RATE as u32);
    let mut pending = Vec::with_capacity((secs * RATE) as usize);
    for _ in 0..secs * RATE {
        tick.tick().await;
        let req = http.get(&url).header(KEY_HEADER, key);
        pending.push(tokio::spawn(async move {
            let send = t0.elapsed().as_secs_f64();
            let status = match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let _ = res.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            Sample { node, send, recv: t0.elapsed().as_secs_f64(), status }
        }));
    }
    let mut samples = Vec::with_capacity(pending.len());
    for p in pending {
        samples.push(p.await?);
    }
    Ok(samples)
}

/// What one run showed.
struct Run {
    name: &'static str,
    local: bool,
    /// What happened to Redis: a stop may add its burst to a window (the outage allowance);
    /// a restarted Redis forgot its counts, so its windows are shown, not bounded.
    disturb: Disturb,
    samples: Vec<Sample>,
    /// Admitted (send, recv), by send.
    admitted: Vec<(f64, f64)>,
    stop: Option<(f64, f64)>,
}

impl Run {
    fn new(name: &'static str, local: bool, disturb: Disturb, samples: Vec<Sample>, stop: Option<(f64, f64)>) -> Self {
        let mut admitted: Vec<(f64, f64)> =
            samples.iter().filter(|s| s.status == 200).map(|s| (s.send, s.recv)).collect();
        admitted.sort_by(|a, b| a.0.total_cmp(&b.0));
        Run { name, local, disturb, samples, admitted, stop }
    }

    fn count(&self, pred: impl Fn(&Sample) -> bool) -> usize {
        self.samples.iter().filter(|s| pred(s)).count()
    }

    /// The most admitted in any window [a, a + w) (both instants of a request inside).
    fn max_in(&self, w: f64) -> usize {
        let a = &self.admitted;
        (0..a.len()).map(|i| a[i..].iter().filter(|(_, recv)| *recv < a[i].0 + w).count()).max().unwrap_or(0)
    }

    /// The promise for a window of `w` seconds and the bound checked: Redis counting within
    /// 1 % of ⌈w / T⌉ + B, plus B when a window holds an outage (which may admit the rate
    /// + B, issue 16); local counting within 5 % of it + B.
    fn bound(&self, w: f64) -> Option<u64> {
        let promise = (w / T).ceil() + BURST as f64;
        match (self.disturb, self.local) {
            (Disturb::Kill, _) => None,
            (Disturb::Stop, _) => Some((promise * 1.01).floor() as u64 + BURST),
            (Disturb::None, false) => Some((promise * 1.01).floor() as u64),
            (Disturb::None, true) => Some((promise * 1.05).floor() as u64 + BURST),
        }
    }

    /// Admitted requests that overlap the stop (an upper bound on those decided during it),
    /// and those entirely inside it (a lower bound); 5xx or no answer overlapping it.
    /// Also the admitted in the same time before it and in the 2 s after it (Redis back).
    fn during_stop(&self) -> Option<[usize; 5]> {
        let (from, to) = self.stop?;
        let overlaps = |s: &Sample| s.send < to && s.recv > from;
        let inside = |a: f64, b: f64| move |s: &Sample| s.status == 200 && s.send >= a && s.recv < b;
        Some([
            self.count(|s| s.status == 200 && overlaps(s)),
            self.count(inside(from, to)),
            self.count(|s| (s.status >= 500 || s.status == 0) && overlaps(s)),
            self.count(inside(from - (to - from), from)),
            self.count(inside(to, to + 2.0)),
        ])
    }
}

/// Prints the tables; true when a bound is broken.
fn report(runs: &[Run], stop_for: Duration, (listed, shared): (f64, f64)) -> bool {
    let mut broken = Vec::new();
    println!("\nShares: /nodes listed {NODES} live nodes {listed:.1} s after the last node answered its health check;");
    println!("every node divided `local` plans by {NODES} after {shared:.1} s.\n");
    println!(
        "| run | sent | admitted (by node) | 429 | 5xx | no answer | p99 ms | most in any 60 s | most in any 10 s |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in runs {
        let by_node: Vec<String> =
            (0..NODES).map(|n| r.count(|s| s.node == n && s.status == 200).to_string()).collect();
        let mut ms: Vec<f64> = r.samples.iter().map(|s| (s.recv - s.send) * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let m60 = check(&mut broken, format!("{}: most in 60 s", r.name), r.max_in(60.0), r.bound(60.0));
        let m10 = check(&mut broken, format!("{}: most in 10 s", r.name), r.max_in(10.0), r.bound(10.0));
        let fivexx = r.count(|s| s.status >= 500);
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {:.1} | {m60} | {m10} |",
            r.name,
            r.samples.len(),
            r.admitted.len(),
            by_node.join(" / "),
            r.count(|s| s.status == 429),
            fivexx,
            r.count(|s| s.status == 0),
            pct(&ms, 0.99),
        );
        if fivexx > 0 || r.count(|s| s.status == 0) > 0 {
            broken.push(format!("{}: {fivexx} 5xx, {} without an answer", r.name, r.count(|s| s.status == 0)));
        }
    }
    let stop_bound = (stop_for.as_secs_f64() / T).ceil() as u64 + BURST;
    println!(
        "\n| run | stop | admitted overlapping the stop | entirely inside it | 5xx or no answer in it | admitted as long before it | in the 2 s after it |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for r in runs {
        let (Some((from, to)), Some([over, inside, failed, before, after])) = (r.stop, r.during_stop()) else {
            continue;
        };
        let over = check(&mut broken, format!("{}: admitted during the stop", r.name), over, Some(stop_bound));
        println!("| {} | {from:.1}–{to:.1} s | {over} | {inside} | {failed} | {before} | {after} |", r.name);
    }
    if broken.is_empty() {
        println!("\nevery bound held");
    } else {
        println!("\nbroken: {}", broken.join("; "));
    }
    !broken.is_empty()
}

/// `got` against `bound` for the table; a broken bound is added to `broken`.
fn check(broken: &mut Vec<String>, what: String, got: usize, bound: Option<u64>) -> String {
    match bound {
        Some(b) if got as u64 > b => {
            broken.push(format!("{what}: {got} > {b}"));
            format!("**{got}** > {b}")
        }
        Some(b) => format!("{got} ≤ {b}"),
        None => format!("{got} (not bounded)"),
    }
}

/// The admin service in-process on a free port, and its owner's token.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn start(pool: sqlx::PgPool) -> anyhow::Result<Self> {
        let owner = tollgate_admin::seed::ensure_first_owner(&pool, "owner@fleet.bench")
            .await?
            .context("the fresh database had an owner")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = AdminConfig::new(addr, tollgate_admin::auth::random_token("", 32).into());
        config.usage_rollup_every = None;
        let task = tokio::spawn(async move {
            if let Err(e) = tollgate_admin::serve(listener, pool, config, std::future::pending()).await {
                eprintln!("admin stopped: {e:#}");
            }
        });
        let http = reqwest::Client::builder().no_proxy().build()?;
        let mut admin = Admin { http, base: format!("http://{addr}/admin/v1"), token: String::new(), task };
        let login = json!({"email": "owner@fleet.bench", "password": owner.password.expose()});
        let session = admin.send(Method::POST, "/auth/login", Some(login)).await?;
        admin.token = session["token"].as_str().context("no token in the login answer")?.to_owned();
        Ok(admin)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let text = res.text().await?;
        ensure!(status.is_success(), "{method} {path} answered {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn id(entity: &Value) -> anyhow::Result<String> {
    entity["id"].as_str().map(str::to_owned).with_context(|| format!("no id in {entity}"))
}

/// A private `redis-server` without persistence on a free port; killed on drop.
struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut redis = Redis { port: free_port()?, dir: dir.to_path_buf(), child: None };
        redis.spawn().await?;
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, empty) on its port and waits for `PING`.
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(&self.dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.child =
            Some(cmd.kill_on_drop(true).spawn().context("spawning redis-server (apt-get install redis-server)")?);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port).await {
            ensure!(Instant::now() < deadline, "redis-server on port {} did not answer PING", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Sends SIG`name` (`STOP`, `CONT`).
    async fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.child.as_ref().and_then(Child::id).context("redis-server is not running")?;
        let sent = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().await?;
        ensure!(sent.success(), "kill -{name} {pid} failed");
        Ok(())
    }

    /// SIGKILL, and waits for the exit.
    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

async fn ping(port: u16) -> bool {
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf == *b"+PONG\r\n")
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), exchange).await, Ok(Ok(true)))
}

/// A `tollgate gateway` process; killed on drop.
struct Node {
    addr: SocketAddr,
    _child: Child,
}

impl Node {
    /// Starts a node on a free port with its log in `dir/gateway.log`; waits for its health.
    async fn start(bin: &Path, db_url: &str, redis_url: &str, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = Command::new(bin);
        cmd.args(["--workers", "1", "gateway", "--listen", &addr.to_string(), "--database-url", db_url]);
        cmd.args(["--redis-url", redis_url]).arg("--state-dir").arg(dir);
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TOLLGATE_") || n == "DATABASE_URL") {
            cmd.env_remove(name);
        }
        cmd.env("TOLLGATE_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(dir.join("gateway.log"))?).kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        let node = Node { addr, _child: child };
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http.get(node.url(tollgate_gateway::HEALTH_PATH)).send().await.is_ok_and(|r| r.status() == 200) {
                return Ok(node);
            }
            ensure!(
                Instant::now() < deadline,
                "node {addr} not healthy in 30 s; see {}",
                dir.join("gateway.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// An upstream answering every request `200 ok`, keep-alive.
async fn upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn drop_database(server: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")))
        .execute(&mut conn)
        .await?;
    Ok(())
}
