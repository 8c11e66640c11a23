//! Usage analytics in PostgreSQL: gateway recorders flushed by their writers (the very code
//! the nodes run), rolled up by the admin's job and read through the usage API. A TCP relay
//! in front of PostgreSQL plays the outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tollgate_admin::usage::Retention;
use tollgate_admin::usage::rollup::roll_up;
use tollgate_gateway::usage::flush::{FlushConfig, Flusher, LocalQuota, LocalQuotas};
use tollgate_gateway::usage::{Attribution, Recorder, StatusClass};
use uuid::Uuid;

use crate::helpers::{Admin, assert_problem};

/// A consumer's requests, as a gateway would attribute them.
fn caller(api: Uuid, route: Uuid, consumer: u128, plan: Uuid) -> Attribution {
    Attribution {
        api,
        route,
        consumer: Uuid::from_u128(consumer),
        credential: Uuid::from_u128(consumer + 1_000_000),
        plan,
    }
}

fn flusher(recorder: &Arc<Recorder>, pool: PgPool, node: Uuid, max_pending: usize) -> Flusher {
    let config = FlushConfig {
        max_pending_series: max_pending,
        final_deadline: Duration::from_secs(2),
        ..FlushConfig::default()
    };
    Flusher::new(recorder.clone(), pool, node, config, None)
}

async fn total(pool: &PgPool, table: &str) -> i64 {
    let sql = format!("SELECT coalesce(sum(requests), 0)::bigint FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.expect("sum")
}

/// A TCP relay to PostgreSQL that can be cut (every connection dropped, new ones refused).
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: (String, u16)) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().expect("relay lock").push(task);
            }
        });
        Relay { addr, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().expect("relay lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// A pool reaching `pool`'s database through the relay.
    fn pool(&self, pool: &PgPool) -> PgPool {
        let opts = (*pool.connect_options()).clone().host("127.0.0.1").port(self.addr.port());
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(opts)
    }
}

fn target(pool: &PgPool) -> (String, u16) {
    let o = pool.connect_options();
    (o.get_host().to_owned(), o.get_port())
}

#[tokio::test]
async fn flushed_usage_is_exact_and_a_retried_batch_counts_once() {
    let admin = Admin::spawn_with(|c| c.usage_rollup_every = None).await;
    let pool = admin.app.pool.clone();
    let (api, route, plan) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let node = Uuid::new_v4();
    let started = Instant::now();
    let record = |r: &Recorder| {
        for i in 0..1_000u128 {
            let class = match i % 10 {
                0 => StatusClass(429),
                1 => StatusClass(401),
                2 => StatusClass(5),
                _ => StatusClass(2),
            };
            r.record(
                &caller(api, route, i % 4, plan),
                class,
                started,
                Duration::from_micros(100 + (i as u64) * 37),
                50,
                300,
            );
        }
    };
    let recorder = Arc::new(Recorder::new(10_000));
    record(&recorder);
    let mut writer = flusher(&recorder, pool.clone(), node, 1_000_000);
    assert!(writer.flush().await, "everything written");
    assert_eq!(total(&pool, "usage_minutes").await, 1_000);
    // The default query (the last 24 hours, by hour) sees it at once: hours are rolled up
    // before they are read (no background job runs in this test).
    let r = admin.get("/usage").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["granularity"], "hour");
    assert_eq!(r.body["series"][0]["total"]["requests"], 1_000, "{}", r.body);

    // The same node's batch again (a retry after a commit whose answer was lost): nothing added.
    let again = Arc::new(Recorder::new(10_000));
    record(&again);
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM usage_flushes WHERE node_id = $1")
        .bind(node)
        .fetch_one(&pool)
        .await
        .expect("the batch's number");
    let mut retry = flusher(&again, pool.clone(), node, 1_000_000).numbered_from(seq);
    assert!(retry.flush().await);
    assert_eq!(total(&pool, "usage_minutes").await, 1_000, "a batch is counted once");
    // Another node's batch adds up.
    let mut other = flusher(&again, pool.clone(), Uuid::new_v4(), 1_000_000);
    record(&again);
    assert!(other.flush().await);
    assert_eq!(total(&pool, "usage_minutes").await, 2_000);

    let (seq_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM usage_flushes WHERE node_id = $1")
        .bind(node)
        .fetch_one(&pool)
        .await
        .expect("flushes");
    assert_eq!(seq_rows, 1);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_rollup_pending WHERE tier = 'hour'")
        .fetch_one(&pool)
        .await
        .expect("marks");
    assert!(pending >= 1, "the written hour is marked for roll-up");
}

#[tokio::test]
async fn an_outage_keeps_usage_in_memory_and_a_long_one_drops_the_oldest_counted() {
    let admin = Admin::spawn_with(|c| c.usage_rollup_every = None).await;
    let pool = admin.app.pool.clone();
    let relay = Relay::start(target(&pool)).await;
    let recorder = Arc::new(Recorder::new(10_000));
    let mut writer = flusher(&recorder, relay.pool(&pool), Uuid::new_v4(), 1_000_000);
    let who = caller(Uuid::new_v4(), Uuid::new_v4(), 1, Uuid::new_v4());
    for _ in 0..10 {
        recorder.record(&who, StatusClass(2), Instant::now(), Duration::from_millis(2), 0, 0);
    }
    assert!(writer.flush().await);
    relay.cut();
    for _ in 0..25 {
        recorder.record(&who, StatusClass(2), Instant::now(), Duration::from_millis(2), 0, 0);
    }
    assert!(!writer.flush().await, "nothing can be written while PostgreSQL is cut off");
    for _ in 0..5 {
        recorder.record(&who, StatusClass(5), Instant::now(), Duration::from_millis(2), 0, 0);
    }
    assert!(!writer.flush().await);
    assert!(recorder.stats.flush_failures.load(Ordering::Relaxed) >= 2);
    assert_eq!(total(&pool, "usage_minutes").await, 10);
    relay.restore();
    assert!(writer.flush().await, "written once PostgreSQL is back");
    assert_eq!(total(&pool, "usage_minutes").await, 40, "nothing lost, nothing doubled");
    assert_eq!(recorder.stats.dropped_requests.load(Ordering::Relaxed), 0);

    // A bound of 1 pending series: the older minute is given up, and counted.
    let tight = Arc::new(Recorder::new(10_000));
    let mut bounded = flusher(&tight, relay.pool(&pool), Uuid::new_v4(), 1);
    relay.cut();
    let minute_ago = Instant::now().checked_sub(Duration::from_secs(61)).expect("a minute of uptime");
    for _ in 0..7 {
        tight.record(&who, StatusClass(2), minute_ago, Duration::from_millis(1), 0, 0);
    }
    assert!(!bounded.flush().await);
    for _ in 0..3 {
        tight.record(&who, StatusClass(2), Instant::now(), Duration::from_millis(1), 0, 0);
    }
    assert!(!bounded.flush().await);
    relay.restore();
    assert!(bounded.flush().await);
    let dropped = tight.stats.dropped_requests.load(Ordering::Relaxed);
    let written = total(&pool, "usage_minutes").await - 40;
    assert_eq!(written + i64::try_from(dropped).unwrap_or(0), 10, "written {written} + dropped {dropped} = recorded");
    assert!(dropped > 0);
}

/// Local quota counters as a node would report them.
struct FixedQuotas(Uuid, Uuid);

impl LocalQuotas for FixedQuotas {
    fn local_quotas(&self, plan: Uuid, consumer: Uuid) -> Vec<LocalQuota> {
        if (plan, consumer) != (self.0, self.1) {
            return Vec::new();
        }
        let start = time::OffsetDateTime::now_utc().date().midnight().assume_utc().unix_timestamp();
        vec![LocalQuota { plan, consumer, period: "day", window_start: start, used: 42 }]
    }
}

async fn created(admin: &Admin, path: &str, body: Value) -> String {
    let r = admin.post(path, body).await;
    assert_eq!(r.status, 201, "{path}: {}", r.body);
    r.id()
}

/// A usage row as compared before and after a second roll-up.
type TierRow = (time::OffsetDateTime, Uuid, Uuid, Uuid, Uuid, Uuid, i16, i64, String);

#[tokio::test]
async fn rollups_are_idempotent_and_the_api_splits_exactly_as_sent() {
    let admin = Admin::spawn_with(|c| c.usage_rollup_every = None).await;
    let pool = admin.app.pool.clone();
    let (api, plan) = (Uuid::new_v4(), Uuid::new_v4());
    let routes = [Uuid::new_v4(), Uuid::new_v4()];
    let recorder = Arc::new(Recorder::new(10_000));
    let mut latencies = Vec::new();
    let started = Instant::now();
    // 3 consumers × 2 routes; consumer n sends (n + 1) × 100 requests; every 7th is a 429.
    for consumer in 0..3u128 {
        for i in 0..(consumer as u64 + 1) * 100 {
            let us = 1_000 + (i * 7_919) % 40_000 + consumer as u64 * 5_000;
            latencies.push(us);
            let class = if i % 7 == 0 { StatusClass(429) } else { StatusClass(2) };
            let who = caller(api, routes[(i % 2) as usize], consumer, plan);
            recorder.record(&who, class, started, Duration::from_micros(us), 10, 100);
        }
    }
    let node = Uuid::new_v4();
    let quotas = Arc::new(FixedQuotas(plan, Uuid::from_u128(0)));
    let config = FlushConfig::default();
    let mut writer = Flusher::new(recorder.clone(), pool.clone(), node, config, Some(quotas));
    assert!(writer.flush().await);

    let retention = Retention::default();
    let first = roll_up(&pool, &retention).await.expect("roll up");
    assert!(first.ran && first.hours >= 1 && first.days >= 1, "{first:?}");
    let snapshot = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let sql = format!(
                "SELECT bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class, requests, hist::text
                 FROM {table} ORDER BY 1, 2, 3, 4, 5, 6, 7"
            );
            let rows: Vec<TierRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.expect("rows");
            rows
        }
    };
    let tiers = ["usage_hours", "usage_days", "usage_api_hours", "usage_api_days"];
    let mut before = Vec::new();
    for table in tiers {
        assert_eq!(total(&pool, table).await, 600, "{table}");
        before.push(snapshot(table).await);
    }
    assert_eq!(total(&pool, "usage_api_minutes").await, 600);
    let api_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_api_days").fetch_one(&pool).await.expect("count");
    assert_eq!(api_rows, 2, "one row per API and class a day, however many consumers");
    // Rolling up the same minutes again (marks put back by hand) changes nothing.
    sqlx::query("INSERT INTO usage_rollup_pending (tier, bucket) SELECT DISTINCT 'hour', bucket FROM usage_hours")
        .execute(&pool)
        .await
        .expect("re-mark");
    let second = roll_up(&pool, &retention).await.expect("roll up again");
    assert!(second.hours >= 1);
    for (table, rows) in tiers.into_iter().zip(before) {
        assert_eq!(snapshot(table).await, rows, "{table} unchanged by a second roll-up");
    }

    // The API: by consumer and class, totals exact, p95 within one histogram bucket.
    let day_start = time::OffsetDateTime::now_utc().date().midnight().assume_utc();
    let from = (day_start - time::Duration::DAY).format(&time::format_description::well_known::Rfc3339).expect("time");
    let to =
        (day_start + time::Duration::days(2)).format(&time::format_description::well_known::Rfc3339).expect("time");
    for granularity in ["minute", "hour", "day"] {
        let range = if granularity == "minute" {
            let now = time::OffsetDateTime::now_utc();
            let f = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).expect("time");
            format!("from={}&to={}", f(now - time::Duration::HOUR), f(now + time::Duration::HOUR))
        } else {
            format!("from={from}&to={to}")
        };
        let r = admin.get(&format!("/usage?{range}&granularity={granularity}&group_by=consumer&api_id={api}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let series = r.body["series"].as_array().cloned().unwrap_or_default();
        assert_eq!(series.len(), 3, "{granularity}: {}", r.body);
        for (rank, s) in series.iter().enumerate() {
            let consumer = 2 - rank as u128;
            assert_eq!(s["group"]["consumer_id"], Uuid::from_u128(consumer).to_string());
            let sent = (consumer as u64 + 1) * 100;
            let refused = (0..sent).filter(|i| i % 7 == 0).count() as u64;
            assert_eq!(s["total"]["requests"], sent, "{granularity}");
            assert_eq!(s["total"]["by_class"]["429"], refused);
            assert_eq!(s["total"]["client_errors"], refused);
            assert_eq!(s["total"]["by_class"]["2xx"], sent - refused);
            assert_eq!(s["total"]["request_bytes"], sent * 10);
        }
    }
    let r = admin.get(&format!("/usage?from={from}&to={to}&granularity=hour&api_id={api}")).await;
    let p95 = r.body["series"][0]["total"]["p95_ms"].as_f64().expect("p95") * 1000.0;
    latencies.sort_unstable();
    let truth = latencies[(latencies.len() as f64 * 0.95).ceil() as usize - 1];
    let (low, high) =
        tollgate_gateway::usage::histogram::bucket_range(tollgate_gateway::usage::histogram::bucket_of(truth));
    // (The API rounds to 10 µs.)
    assert!(p95 >= low as f64 - 10.0 && p95 <= high as f64 + 10.0, "p95 {p95} µs vs true {truth} µs");

    // One API's series by class (read from the per-API tier).
    let r = admin.get(&format!("/usage?from={from}&to={to}&granularity=day&api_id={api}&group_by=status_class")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let by_class: Vec<(String, u64)> = r.body["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["group"]["status_class"].as_str().unwrap_or_default().to_owned(),
                s["total"]["requests"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let refused_all = (0..100u64).filter(|i| i % 7 == 0).count() as u64
        + (0..200u64).filter(|i| i % 7 == 0).count() as u64
        + (0..300u64).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(by_class, [("2xx".to_owned(), 600 - refused_all), ("429".to_owned(), refused_all)]);

    let r = admin.get(&format!("/usage/top?by=route&from={from}&to={to}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tops: Vec<u64> =
        r.body["data"].as_array().into_iter().flatten().filter_map(|e| e["requests"].as_u64()).collect();
    assert_eq!(tops.iter().sum::<u64>(), 600);
    assert_eq!(r.body["granularity"], "day");

    // Bad queries are refused with a clear error: what the schema states with 400, rules
    // between fields with 422 naming the field.
    for (query, field) in [
        ("group_by=consumer,color", None),
        ("group_by=consumer,%20route", None),
        ("group_by=", None),
        ("status_class=6xx", None),
        ("granularity=week", None),
        ("from=yesterday", Some("from")),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=minute", Some("granularity")),
        ("from=2026-03-01T00:00:00Z&to=2026-01-01T00:00:00Z", Some("from")),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", Some("from")),
    ] {
        let r = admin.get(&format!("/usage?{query}")).await;
        match field {
            Some(field) => {
                assert_problem(&r, 422, "validation");
                assert_eq!(r.body["errors"][0]["pointer"], format!("/{field}"), "{query}: {}", r.body);
            }
            None => assert_problem(&r, 400, "bad-request"),
        }
    }
    for query in ["by=status_class", "limit=101", "limit=0"] {
        assert_problem(&admin.get(&format!("/usage/top?{query}")).await, 400, "bad-request");
    }

    // Viewers read usage; without a token nobody does.
    let viewer = admin.user_token("viewer@example.com", "viewer").await;
    let r = admin.send_as(Some(&viewer), reqwest::Method::GET, "/usage", None, None).await;
    assert_eq!(r.status, 200);
    let r = admin.send_as(Some(""), reqwest::Method::GET, "/usage", None, None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_quota_answer_and_last_use_come_from_the_flushes() {
    let admin = Admin::spawn_with(|c| c.usage_rollup_every = None).await;
    let pool = admin.app.pool.clone();
    let api = Uuid::parse_str(&admin.create_api("quota-api").await).expect("api id");
    let plan = created(&admin, &format!("/apis/{api}/plans"), json!({"name": "daily", "quota_per_day": 100})).await;
    let plan = Uuid::parse_str(&plan).expect("plan id");
    let consumer =
        Uuid::parse_str(&created(&admin, "/consumers", json!({"name": "quota-app"})).await).expect("consumer");
    let key = admin.post(&format!("/consumers/{consumer}/keys"), json!({})).await;
    assert_eq!(key.status, 201, "{}", key.body);
    let key_id = Uuid::parse_str(&key.id()).expect("key id");
    let sub = created(&admin, "/subscriptions", json!({"consumer_id": consumer, "plan_id": plan})).await;

    let r = admin.get(&format!("/subscriptions/{sub}/quota")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["quotas"][0]["used"], 0);
    assert_eq!(r.body["quotas"][0]["remaining"], 100);

    let recorder = Arc::new(Recorder::new(100));
    let who = Attribution { api, route: Uuid::new_v4(), consumer, credential: key_id, plan };
    recorder.record(&who, StatusClass(2), Instant::now(), Duration::from_millis(1), 0, 0);
    let node = Uuid::new_v4();
    let mut writer = Flusher::new(
        recorder.clone(),
        pool.clone(),
        node,
        FlushConfig::default(),
        Some(Arc::new(FixedQuotas(plan, consumer))),
    );
    assert!(writer.flush().await);

    let r = admin.get(&format!("/subscriptions/{sub}/quota")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let q = &r.body["quotas"][0];
    assert_eq!(
        (q["period"].as_str(), q["limit"].as_u64(), q["used"].as_u64(), q["remaining"].as_u64()),
        (Some("day"), Some(100), Some(42), Some(58))
    );
    assert_eq!(q["nodes"][0]["node_id"], node.to_string());
    assert!(q["resets_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (last_used,): (Option<time::OffsetDateTime>,) =
        sqlx::query_as("SELECT last_used_at FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_one(&pool)
            .await
            .expect("key");
    let (last_call,): (Option<time::OffsetDateTime>,) =
        sqlx::query_as("SELECT last_call_at FROM subscriptions WHERE consumer_id = $1")
            .bind(consumer)
            .fetch_one(&pool)
            .await
            .expect("sub");
    let now = time::OffsetDateTime::now_utc();
    for at in [last_used, last_call] {
        let at = at.expect("set by the flush");
        assert!(now - at < time::Duration::minutes(2), "{at} vs {now}");
    }
    assert_problem(&admin.get(&format!("/subscriptions/{}/quota", Uuid::new_v4())).await, 404, "not-found");

    // A Redis-counted plan, and an admin without --redis-url: the count is absent, and why.
    let shared = created(
        &admin,
        &format!("/apis/{api}/plans"),
        json!({"name": "shared", "quota_per_month": 9, "limit_mode": "redis"}),
    )
    .await;
    let other = created(&admin, "/consumers", json!({"name": "redis-app"})).await;
    let sub = created(&admin, "/subscriptions", json!({"consumer_id": other, "plan_id": shared})).await;
    let r = admin.get(&format!("/subscriptions/{sub}/quota")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let q = &r.body["quotas"][0];
    assert_eq!(
        (q["period"].as_str(), q["used"].is_null(), q["remaining"].is_null()),
        (Some("month"), true, true),
        "{q}"
    );
    assert!(q["unavailable"].as_str().is_some_and(|why| why.contains("--redis-url")), "{q}");
}
