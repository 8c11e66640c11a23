//! Roll-ups and retention of usage: minutes → hours → days, by a background job of the
//! admin. Gateways mark every hour they write into (`usage_rollup_pending`); the job takes
//! the marks and recomputes each marked hour from its minutes (and then each marked day from
//! its hours), replacing the rows it had — so rolling up the same minutes twice changes
//! nothing, an interrupted run is simply redone, and minutes written late (a node that could
//! not reach PostgreSQL for a while) are rolled up when they arrive.
//!
//! Several admin instances may run the job: a transaction-scoped advisory lock lets one of
//! them at a time do it. A flush and a roll-up of the same hour cannot lose each other's
//! work: the flush marks the hour *after* writing its minutes, taking the mark's row lock,
//! and the roll-up deletes the marks *before* reading minutes, so it either waits for the
//! flush to commit (and then sees its minutes) or the flush re-creates the mark.
//!
//! An hour is recomputed only while all its minutes are kept (its start within the minutes'
//! retention); a mark for an older one is dropped with a warning (its hour keeps the
//! counts it had). Days likewise against the hours' retention.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

/// Key of the advisory lock of the roll-up job (`hashtext('tollgate usage rollup')`-like,
/// fixed so every admin version agrees).
const LOCK_KEY: i64 = 0x7467_7573_6167_6531;

/// Buckets recomputed per transaction.
const CHUNK: usize = 24;

/// Rows deleted per retention statement.
const DELETE_BATCH: i64 = 10_000;

/// How long each tier is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub minutes: Duration,
    pub hours: Duration,
    pub days: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        let day = 24 * 3600;
        Retention {
            minutes: Duration::from_secs(2 * day),
            hours: Duration::from_secs(90 * day),
            days: Duration::from_secs(396 * day),
        }
    }
}

/// A source tier rolled into a coarser one (with its per-API twin).
struct Step {
    source: &'static str,
    target: &'static str,
    api_source: &'static str,
    api_target: &'static str,
    /// `date_trunc` unit, and the pending-mark tier, of the target.
    unit: &'static str,
    /// The pending-mark tier set on the next step's buckets (None for days).
    next: Option<&'static str>,
}

const HOURS: Step = Step {
    source: "usage_minutes",
    target: "usage_hours",
    api_source: "usage_api_minutes",
    api_target: "usage_api_hours",
    unit: "hour",
    next: Some("day"),
};
const DAYS: Step = Step {
    source: "usage_hours",
    target: "usage_days",
    api_source: "usage_api_hours",
    api_target: "usage_api_days",
    unit: "day",
    next: None,
};

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RollupReport {
    /// False when another instance held the lock (nothing was done).
    pub ran: bool,
    pub hours: usize,
    pub days: usize,
    /// Marks dropped because their source rows are past retention.
    pub expired_marks: usize,
}

/// Rolls up every marked hour, then every marked day.
pub async fn roll_up(pool: &PgPool, retention: &Retention) -> Result<RollupReport, sqlx::Error> {
    let mut report = RollupReport { ran: true, ..RollupReport::default() };
    for (step, keep) in [(&HOURS, retention.minutes), (&DAYS, retention.hours)] {
        loop {
            match roll_chunk(pool, step, keep).await? {
                None => return Ok(RollupReport { ran: false, ..report }),
                Some((0, 0)) => break,
                Some((done, expired)) => {
                    if step.unit == "hour" {
                        report.hours += done;
                    } else {
                        report.days += done;
                    }
                    report.expired_marks += expired;
                }
            }
        }
    }
    Ok(report)
}

/// One transaction: takes up to [`CHUNK`] marks of `step` and recomputes their buckets.
/// `None` when another instance holds the lock; else (recomputed, expired) marks.
async fn roll_chunk(pool: &PgPool, step: &Step, keep: Duration) -> Result<Option<(usize, usize)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (locked,): (bool,) =
        sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)").bind(LOCK_KEY).fetch_one(&mut *tx).await?;
    if !locked {
        return Ok(None);
    }
    let marks: Vec<(OffsetDateTime,)> = sqlx::query_as(
        "DELETE FROM usage_rollup_pending WHERE (tier, bucket) IN (
             SELECT tier, bucket FROM usage_rollup_pending WHERE tier = $1 ORDER BY bucket LIMIT $2)
         RETURNING bucket",
    )
    .bind(step.unit)
    .bind(CHUNK as i64)
    .fetch_all(&mut *tx)
    .await?;
    if marks.is_empty() {
        tx.commit().await?;
        return Ok(Some((0, 0)));
    }
    let horizon = OffsetDateTime::now_utc() - keep;
    let (buckets, expired): (Vec<OffsetDateTime>, Vec<OffsetDateTime>) =
        marks.into_iter().map(|(b,)| b).partition(|b| *b >= horizon);
    if !expired.is_empty() {
        tracing::warn!(
            tier = step.unit,
            buckets = expired.len(),
            "usage arrived for periods whose finer rows are past retention; not rolled up again"
        );
    }
    if !buckets.is_empty() {
        recompute(&mut tx, step.source, step.target, step.unit, &buckets).await?;
        recompute(&mut tx, step.api_source, step.api_target, step.unit, &buckets).await?;
        if let Some(next) = step.next {
            sqlx::query(
                "INSERT INTO usage_rollup_pending (tier, bucket)
                 SELECT DISTINCT $1, date_trunc($1, b, 'UTC') FROM unnest($2::timestamptz[]) AS b
                 ON CONFLICT (tier, bucket) DO UPDATE SET touched_at = now()",
            )
            .bind(next)
            .bind(&buckets)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(Some((buckets.len(), expired.len())))
}

/// Replaces the `target` rows of `buckets` with the sums of their `source` rows, histograms
/// merged bucket by bucket. The names are the fixed usage tables, never input.
async fn recompute(
    tx: &mut sqlx::PgConnection,
    source: &str,
    target: &str,
    unit: &str,
    buckets: &[OffsetDateTime],
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {target} WHERE bucket = ANY($1)")))
        .bind(buckets)
        .execute(&mut *tx)
        .await?;
    let keys = "api_id, route_id, consumer_id, credential_id, plan_id, status_class";
    let sql = format!(
        "WITH src AS (
             SELECT date_trunc('{unit}', s.bucket, 'UTC') AS b, s.*
             FROM {source} AS s
             WHERE s.bucket >= (SELECT min(x) FROM unnest($1::timestamptz[]) AS x)
               AND s.bucket < (SELECT max(x) FROM unnest($1::timestamptz[]) AS x) + interval '1 {unit}'
               AND date_trunc('{unit}', s.bucket, 'UTC') = ANY($1)),
         counts AS (
             SELECT b, {keys}, sum(requests)::bigint AS requests, sum(request_bytes)::bigint AS request_bytes,
                    sum(response_bytes)::bigint AS response_bytes, sum(latency_us_sum)::bigint AS latency_us_sum
             FROM src GROUP BY b, {keys}),
         buckets AS (
             SELECT b, {keys}, p.i, sum(p.n)::bigint AS n
             FROM src, LATERAL usage_hist_pairs(src.hist) AS p
             GROUP BY b, {keys}, p.i),
         hists AS (
             SELECT b, {keys}, array_agg(e.v ORDER BY buckets.i, e.k) AS hist
             FROM buckets, LATERAL (VALUES (0, buckets.i), (1, buckets.n)) AS e (k, v)
             GROUP BY b, {keys})
         INSERT INTO {target} (bucket, {keys}, requests, request_bytes, response_bytes, latency_us_sum, hist)
         SELECT b, {keys}, requests, request_bytes, response_bytes, latency_us_sum, coalesce(hists.hist, '{{}}')
         FROM counts LEFT JOIN hists USING (b, {keys})"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(buckets).execute(&mut *tx).await?;
    Ok(())
}

/// Deletes rows past their tier's retention (and old flush records and local quota
/// counters); returns how many rows went.
pub async fn apply_retention(pool: &PgPool, retention: &Retention) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    for (table, keep) in [
        ("usage_minutes", retention.minutes),
        ("usage_hours", retention.hours),
        ("usage_days", retention.days),
        ("usage_api_minutes", retention.minutes),
        ("usage_api_hours", retention.hours),
        ("usage_api_days", retention.days),
    ] {
        loop {
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {table} WHERE bucket < now() - make_interval(secs => $1) LIMIT $2))"
            );
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(keep.as_secs_f64())
                .bind(DELETE_BATCH)
                .execute(pool)
                .await?
                .rows_affected();
            total += n;
            if n < DELETE_BATCH as u64 {
                break;
            }
        }
    }
    total += sqlx::query("DELETE FROM usage_flushes WHERE at < now() - make_interval(secs => $1)")
        .bind(retention.minutes.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
    // A month's window is at most 31 days long; older counters are of finished windows.
    total += sqlx::query("DELETE FROM usage_local_quotas WHERE window_start < now() - interval '32 days'")
        .execute(pool)
        .await?
        .rows_affected();
    Ok(total)
}

/// Runs roll-ups every `every` (retention with them, hourly) until the task is aborted.
pub fn spawn(pool: PgPool, retention: Retention, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            match roll_up(&pool, &retention).await {
                Ok(r) if r.hours + r.days > 0 => tracing::debug!(hours = r.hours, days = r.days, "usage rolled up"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "rolling up usage failed; retrying later"),
            }
            if last_retention.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                match apply_retention(&pool, &retention).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "usage past retention deleted"),
                    Err(error) => tracing::warn!(%error, "deleting old usage failed; retrying later"),
                }
                last_retention = Some(tokio::time::Instant::now());
            }
        }
    })
}
