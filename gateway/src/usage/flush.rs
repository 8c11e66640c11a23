//! Writing usage to PostgreSQL: every interval the node takes what its workers recorded,
//! adds it to what is still unwritten, and writes it as one batch in one transaction — the
//! series in one `INSERT … ON CONFLICT DO UPDATE` (counts and histogram buckets added), the
//! hours it touched marked for roll-up, keys' `last_used_at` and subscriptions'
//! `last_call_at` moved forward, and the node's local quota counters.
//!
//! A batch carries the node id and a sequence number, recorded in `usage_flushes` in the
//! same transaction: a batch retried after an ambiguous failure (the commit may have
//! happened) is recognised and adds nothing. A batch is frozen once tried: data recorded
//! meanwhile waits for the next sequence number. While PostgreSQL is unreachable the node
//! keeps aggregating, up to `max_pending_series`; beyond that the oldest minutes are given
//! up, counted, and logged. On shutdown everything is written (retrying for a while).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Batch, Counts, OTHER, Recorder, SeriesKey};

/// How a node writes its usage.
#[derive(Debug, Clone)]
pub struct FlushConfig {
    /// How often recorded usage is written.
    pub interval: Duration,
    /// Most series kept unwritten while PostgreSQL is unreachable.
    pub max_pending_series: usize,
    /// How long shutdown keeps trying to write what is left.
    pub final_deadline: Duration,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            interval: Duration::from_secs(10),
            max_pending_series: 1_000_000,
            final_deadline: Duration::from_secs(10),
        }
    }
}

/// A node's local quota counter for one consumer on one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalQuota {
    pub plan: Uuid,
    pub consumer: Uuid,
    /// `day` or `month`.
    pub period: &'static str,
    /// Unix seconds of the calendar window's start.
    pub window_start: i64,
    pub used: u64,
}

/// Reads the node's local quota counters of `local` plans (none for other plans).
pub trait LocalQuotas: Send + Sync {
    fn local_quotas(&self, plan: Uuid, consumer: Uuid) -> Vec<LocalQuota>;
}

/// A batch written (or being written) under one sequence number, in primary-key order (so
/// concurrent flushes of several nodes lock shared rows in the same order).
struct Frozen {
    seq: i64,
    rows: Vec<(SeriesKey, Counts)>,
}

impl Frozen {
    fn requests(&self) -> u64 {
        self.rows.iter().map(|(_, c)| c.requests).sum()
    }
}

/// The node's writer.
pub struct Flusher {
    recorder: Arc<Recorder>,
    pool: PgPool,
    node: Uuid,
    config: FlushConfig,
    quotas: Option<Arc<dyn LocalQuotas>>,
    next_seq: i64,
    inflight: Option<Frozen>,
    pending: Batch,
    failing: bool,
}

/// What writing one batch found.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// This node's batch with that sequence number was already in (a retry).
    AlreadyApplied,
}

/// The first sequence number of this process: microseconds since the epoch. A node keeps its
/// id across restarts, so numbering from 1 again would make the new process's batches look
/// like retries of the old one's (and drop them); one batch per interval never catches up
/// with the clock.
fn first_seq() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX / 2)
}

impl Flusher {
    pub fn new(
        recorder: Arc<Recorder>,
        pool: PgPool,
        node: Uuid,
        config: FlushConfig,
        quotas: Option<Arc<dyn LocalQuotas>>,
    ) -> Self {
        Flusher {
            recorder,
            pool,
            node,
            config,
            quotas,
            next_seq: first_seq(),
            inflight: None,
            pending: Batch::default(),
            failing: false,
        }
    }

    /// Numbers this writer's batches from `seq` on: a writer resuming another's numbering
    /// (tests use it to replay a batch as a retry after a lost commit answer).
    pub fn numbered_from(mut self, seq: i64) -> Self {
        self.next_seq = seq;
        self
    }

    /// Flushes every interval until `stop` turns true, then writes what is left.
    pub fn spawn(mut self, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => { self.flush().await; }
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            break;
                        }
                    }
                }
            }
            self.finish().await;
        })
    }

    /// Takes what was recorded and writes everything unwritten; false when something is
    /// still unwritten.
    pub async fn flush(&mut self) -> bool {
        let taken = self.recorder.take();
        merge_into(&mut self.pending, taken);
        loop {
            if self.inflight.is_none() {
                if self.pending.is_empty() {
                    break;
                }
                self.inflight = Some(self.freeze());
            }
            let Some(batch) = &self.inflight else { break };
            match write(&self.pool, self.node, batch, self.quotas.as_deref()).await {
                Ok(outcome) => {
                    self.written(outcome);
                }
                Err(error) => {
                    self.recorder.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                    if !self.failing {
                        tracing::warn!(%error, "writing usage failed; keeping it in memory and retrying");
                    }
                    self.failing = true;
                    break;
                }
            }
        }
        self.bound();
        self.publish_pending();
        self.inflight.is_none() && self.pending.is_empty()
    }

    fn written(&mut self, outcome: Written) {
        let Some(batch) = self.inflight.take() else { return };
        let stats = &self.recorder.stats;
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.last_batch_series.store(batch.rows.len() as u64, Ordering::Relaxed);
        stats.last_batch_requests.store(batch.requests(), Ordering::Relaxed);
        stats.last_flush_unix_ms.store(unix_ms(), Ordering::Relaxed);
        if self.failing {
            tracing::info!(series = batch.rows.len(), "writing usage works again");
            self.failing = false;
        }
        if outcome == Written::AlreadyApplied {
            tracing::debug!(seq = batch.seq, "usage batch was already written");
        }
    }

    fn freeze(&mut self) -> Frozen {
        let mut rows: Vec<(SeriesKey, Counts)> = std::mem::take(&mut self.pending).into_iter().collect();
        rows.sort_unstable_by_key(|(key, _)| *key);
        let seq = self.next_seq;
        self.next_seq += 1;
        Frozen { seq, rows }
    }

    /// Gives up the oldest unwritten minutes beyond `max_pending_series`.
    fn bound(&mut self) {
        let inflight = self.inflight.as_ref().map_or(0, |b| b.rows.len());
        let limit = self.config.max_pending_series.saturating_sub(inflight);
        if self.pending.len() <= limit {
            return;
        }
        let mut minutes: Vec<i64> = self.pending.keys().map(|k| k.minute).collect();
        minutes.sort_unstable();
        let cut = minutes[self.pending.len() - limit - 1];
        let (mut series, mut requests) = (0u64, 0u64);
        self.pending.retain(|k, c| {
            let keep = k.minute > cut;
            if !keep {
                series += 1;
                requests += c.requests;
            }
            keep
        });
        let stats = &self.recorder.stats;
        stats.dropped_series.fetch_add(series, Ordering::Relaxed);
        stats.dropped_requests.fetch_add(requests, Ordering::Relaxed);
        tracing::error!(series, requests, "usage could not be written for too long; the oldest minutes were given up");
    }

    fn publish_pending(&self) {
        let n = self.pending.len() + self.inflight.as_ref().map_or(0, |b| b.rows.len());
        self.recorder.stats.pending_series.store(n, Ordering::Relaxed);
    }

    /// Writes what is left, retrying until the deadline.
    pub async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + self.config.final_deadline;
        loop {
            if self.flush().await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let left: u64 = self.pending.values().map(|c| c.requests).sum::<u64>()
                    + self.inflight.as_ref().map_or(0, Frozen::requests);
                self.recorder.stats.dropped_requests.fetch_add(left, Ordering::Relaxed);
                tracing::error!(requests = left, "usage could not be written before shutdown; it is lost");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Adds every series of `from` to `into`.
pub(crate) fn merge_into(into: &mut Batch, from: Batch) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (key, counts) in from {
        match into.get_mut(&key) {
            Some(c) => c.merge(&counts),
            None => {
                into.insert(key, counts);
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn minute_start(minute: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(minute.saturating_mul(60)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether a dimension names a real entity (not absent, not folded).
fn real(id: Uuid) -> bool {
    !id.is_nil() && id != OTHER
}

/// Writes one batch in one transaction (see the module documentation).
async fn write(
    pool: &PgPool,
    node: Uuid,
    batch: &Frozen,
    quotas: Option<&dyn LocalQuotas>,
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let first = sqlx::query(
        "INSERT INTO usage_flushes (node_id, seq, series, requests) VALUES ($1, $2, $3, $4)
         ON CONFLICT (node_id, seq) DO NOTHING",
    )
    .bind(node)
    .bind(batch.seq)
    .bind(i32::try_from(batch.rows.len()).unwrap_or(i32::MAX))
    .bind(as_i64(batch.requests()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if first == 0 {
        tx.commit().await?;
        return Ok(Written::AlreadyApplied);
    }
    insert_series(&mut tx, "usage_minutes", &batch.rows).await?;
    insert_series(&mut tx, "usage_api_minutes", &per_api(&batch.rows)).await?;

    let mut hours: Vec<i64> = batch.rows.iter().map(|(k, _)| k.minute.div_euclid(60) * 60).collect();
    hours.sort_unstable();
    hours.dedup();
    let hours: Vec<OffsetDateTime> = hours.into_iter().map(minute_start).collect();
    sqlx::query(
        "INSERT INTO usage_rollup_pending (tier, bucket) SELECT 'hour', h FROM unnest($1::timestamptz[]) AS h
         ON CONFLICT (tier, bucket) DO UPDATE SET touched_at = now()",
    )
    .bind(&hours)
    .execute(&mut *tx)
    .await?;

    let mut keys: Vec<(Uuid, i64)> =
        batch.rows.iter().filter(|(k, _)| real(k.credential)).map(|(k, _)| (k.credential, k.minute)).collect();
    keys.sort_unstable();
    keys.dedup_by(|later, earlier| {
        later.0 == earlier.0 && {
            earlier.1 = earlier.1.max(later.1);
            true
        }
    });
    if !keys.is_empty() {
        let (ids, at): (Vec<Uuid>, Vec<OffsetDateTime>) = keys.iter().map(|(id, m)| (*id, minute_start(*m))).unzip();
        sqlx::query(
            "UPDATE api_keys AS k SET last_used_at = v.at
             FROM unnest($1::uuid[], $2::timestamptz[]) AS v (id, at)
             WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)",
        )
        .bind(&ids)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
    }

    let mut calls: Vec<(Uuid, Uuid, i64)> = batch
        .rows
        .iter()
        .filter(|(k, _)| real(k.consumer) && real(k.api))
        .map(|(k, _)| (k.consumer, k.api, k.minute))
        .collect();
    calls.sort_unstable();
    calls.dedup_by(|later, earlier| {
        (later.0, later.1) == (earlier.0, earlier.1) && {
            earlier.2 = earlier.2.max(later.2);
            true
        }
    });
    if !calls.is_empty() {
        let consumers: Vec<Uuid> = calls.iter().map(|c| c.0).collect();
        let apis: Vec<Uuid> = calls.iter().map(|c| c.1).collect();
        let at: Vec<OffsetDateTime> = calls.iter().map(|c| minute_start(c.2)).collect();
        sqlx::query(
            "UPDATE subscriptions AS s SET last_call_at = v.at
             FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS v (consumer_id, api_id, at)
             WHERE s.consumer_id = v.consumer_id AND s.api_id = v.api_id
               AND (s.last_call_at IS NULL OR s.last_call_at < v.at)",
        )
        .bind(&consumers)
        .bind(&apis)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
    }

    if let Some(quotas) = quotas {
        write_local_quotas(&mut tx, node, batch, quotas).await?;
    }
    tx.commit().await?;
    Ok(Written::Applied)
}

/// The node's local quota counters of the consumers in `batch`, replacing its earlier ones.
async fn write_local_quotas(
    tx: &mut sqlx::PgConnection,
    node: Uuid,
    batch: &Frozen,
    quotas: &dyn LocalQuotas,
) -> Result<(), sqlx::Error> {
    let mut pairs: Vec<(Uuid, Uuid)> = batch
        .rows
        .iter()
        .filter(|(k, _)| real(k.plan) && real(k.consumer))
        .map(|(k, _)| (k.plan, k.consumer))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let found: Vec<LocalQuota> = pairs.into_iter().flat_map(|(p, c)| quotas.local_quotas(p, c)).collect();
    if found.is_empty() {
        return Ok(());
    }
    let plans: Vec<Uuid> = found.iter().map(|q| q.plan).collect();
    let consumers: Vec<Uuid> = found.iter().map(|q| q.consumer).collect();
    let periods: Vec<&str> = found.iter().map(|q| q.period).collect();
    let starts: Vec<OffsetDateTime> = found
        .iter()
        .map(|q| OffsetDateTime::from_unix_timestamp(q.window_start).unwrap_or(OffsetDateTime::UNIX_EPOCH))
        .collect();
    let used: Vec<i64> = found.iter().map(|q| as_i64(q.used)).collect();
    sqlx::query(
        "INSERT INTO usage_local_quotas (node_id, plan_id, consumer_id, period, window_start, used)
         SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::bigint[])
         ON CONFLICT (plan_id, consumer_id, period, node_id)
         DO UPDATE SET window_start = EXCLUDED.window_start, used = EXCLUDED.used, updated_at = now()",
    )
    .bind(node)
    .bind(&plans)
    .bind(&consumers)
    .bind(&periods)
    .bind(&starts)
    .bind(&used)
    .execute(tx)
    .await?;
    Ok(())
}

/// The rows summed per minute, API and status class (other dimensions nil: "all"), in
/// primary-key order.
pub fn per_api(rows: &[(SeriesKey, Counts)]) -> Vec<(SeriesKey, Counts)> {
    let nil = Uuid::nil();
    let mut sums = Batch::default();
    for (key, counts) in rows {
        let k = SeriesKey { route: nil, consumer: nil, credential: nil, plan: nil, ..*key };
        sums.entry(k).or_default().merge(counts);
    }
    let mut out: Vec<(SeriesKey, Counts)> = sums.into_iter().collect();
    out.sort_unstable_by_key(|(key, _)| *key);
    out
}

/// Inserts `rows` (in primary-key order) into a usage table, adding to existing series.
/// `table` is one of the fixed usage tables, never user input.
pub async fn insert_series(
    tx: &mut sqlx::PgConnection,
    table: &'static str,
    rows: &[(SeriesKey, Counts)],
) -> Result<(), sqlx::Error> {
    let n = rows.len();
    let mut buckets = Vec::with_capacity(n);
    let (mut api, mut route, mut consumer, mut credential, mut plan) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut class, mut requests, mut req_bytes, mut res_bytes, mut lat, mut hist) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (k, c) in rows {
        buckets.push(minute_start(k.minute));
        api.push(k.api);
        route.push(k.route);
        consumer.push(k.consumer);
        credential.push(k.credential);
        plan.push(k.plan);
        class.push(k.class.0);
        requests.push(as_i64(c.requests));
        req_bytes.push(as_i64(c.request_bytes));
        res_bytes.push(as_i64(c.response_bytes));
        lat.push(as_i64(c.latency_us_sum));
        hist.push(pairs_literal(&c.hist.to_pairs()));
    }
    let sql = format!(
        "INSERT INTO {table} AS u (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class,
                                  requests, request_bytes, response_bytes, latency_us_sum, hist)
         SELECT b, a, r, c, k, p, s, n, qb, rb, l, h::bigint[]
         FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::smallint[],
                     $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[])
              AS v (b, a, r, c, k, p, s, n, qb, rb, l, h)
         ON CONFLICT (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class) DO UPDATE SET
             requests = u.requests + EXCLUDED.requests,
             request_bytes = u.request_bytes + EXCLUDED.request_bytes,
             response_bytes = u.response_bytes + EXCLUDED.response_bytes,
             latency_us_sum = u.latency_us_sum + EXCLUDED.latency_us_sum,
             hist = usage_hist_add(u.hist, EXCLUDED.hist)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&buckets)
        .bind(&api)
        .bind(&route)
        .bind(&consumer)
        .bind(&credential)
        .bind(&plan)
        .bind(&class)
        .bind(&requests)
        .bind(&req_bytes)
        .bind(&res_bytes)
        .bind(&lat)
        .bind(&hist)
        .execute(tx)
        .await?;
    Ok(())
}

/// A PostgreSQL array literal of integers: `{1,2,3}`.
fn pairs_literal(pairs: &[i64]) -> String {
    let mut s = String::with_capacity(2 + pairs.len() * 6);
    s.push('{');
    for (i, v) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(itoa::Buffer::new().format(*v));
    }
    s.push('}');
    s
}
