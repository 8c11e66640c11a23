//! Rate-limit decision benchmark: decisions per second and p50/p99 latency per decision,
//! for local counting and for Redis counting (one Lua script round trip per decision),
//! with and without local token reservation (`reserve_batch`), sequentially (latency) and
//! from many concurrent tasks (throughput).
//!
//! Usage: `ratelimit [decisions]` (default 50000); Redis at `REDIS_URL` or 127.0.0.1:6379.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_gateway::limits::{Backend, LimitKey, Limiter, LimiterConfig, Mode, PlanLimits};
use uuid::Uuid;

const KEYS: usize = 1000;
const TASKS: usize = 32;

/// A plan that admits nearly everything, so the work measured is the counting itself.
fn plan(mode: Mode) -> PlanLimits {
    PlanLimits {
        per_second: Some(1_000_000),
        per_minute: Some(50_000_000),
        quota_per_day: Some(u64::from(u32::MAX)),
        mode,
        ..PlanLimits::default()
    }
}

fn keys() -> Vec<LimitKey> {
    let plan = Uuid::new_v4();
    (0..KEYS).map(|_| LimitKey::consumer(plan, Uuid::new_v4())).collect()
}

/// Runs `n` decisions in sequence; returns each one's latency.
async fn sequential(
    l: &Limiter,
    p: &PlanLimits,
    keys: &[LimitKey],
    n: usize,
    want: Backend,
) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let d = l.check(&keys[i % keys.len()], p, 1, l.now()).await;
        lat.push(start.elapsed());
        anyhow::ensure!(d.backend == want, "decision counted by {:?}, not {want:?}", d.backend);
    }
    Ok(lat)
}

/// Runs `n` decisions from `TASKS` concurrent tasks; returns the wall time.
async fn concurrent(l: Arc<Limiter>, p: PlanLimits, keys: Arc<Vec<LimitKey>>, n: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (l, p, keys) = (l.clone(), p.clone(), keys.clone());
            tokio::spawn(async move {
                for i in 0..n / TASKS {
                    l.check(&keys[(t * 31 + i) % keys.len()], &p, 1, l.now()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    Ok(start.elapsed())
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration, n: usize) {
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    let seq: Duration = lat.iter().sum();
    println!(
        "{name:16} sequential {:>10.0}/s  p50 {:>9.1?}  p99 {:>9.1?} | {TASKS} tasks {:>10.0}/s",
        lat.len() as f64 / seq.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        n as f64 / wall.as_secs_f64(),
    );
}

async fn run(name: &str, l: Arc<Limiter>, mode: Mode, want: Backend, n: usize) -> anyhow::Result<()> {
    let (p, keys) = (plan(mode), Arc::new(keys()));
    sequential(&l, &p, &keys, n.min(1000), want).await?; // warm-up (script load, connections)
    let lat = sequential(&l, &p, &keys, n, want).await?;
    let wall = concurrent(l, p, keys, n).await?;
    report(name, lat, wall, n);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(50_000);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let config = |reserve_batch| LimiterConfig {
        redis_url: Some(url.clone()),
        namespace: format!("tgbench-{}", Uuid::new_v4()),
        redis_timeout: Duration::from_secs(1),
        reserve_batch,
        ..LimiterConfig::default()
    };
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    println!("{n} decisions over {KEYS} keys, {workers} worker threads");
    run("local", Arc::new(Limiter::new(config(0))?), Mode::Local, Backend::Local, n).await?;
    run("redis", Arc::new(Limiter::new(config(0))?), Mode::Redis, Backend::Redis, n).await?;
    run("redis+reserve 64", Arc::new(Limiter::new(config(64))?), Mode::Redis, Backend::Redis, n).await
}
