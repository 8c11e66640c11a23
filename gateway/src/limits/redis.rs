//! Shared counting in Redis: one Lua script evaluates every window and quota of a key and
//! commits all of them or none, atomically on the server, using the server's clock (`TIME`)
//! so nodes with skewed clocks agree.
//!
//! Keys: `<ns>:{<key>}:r<slot>` (a window's TAT in microseconds, expiring when it is in the
//! past) and `<ns>:{<key>}:q<d|m>:<window start>` (a quota count, expiring after its calendar
//! window). Every key of one decision shares the `{<key>}` hash tag, so the script touches one
//! Redis Cluster slot.

use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use smallvec::SmallVec;
use time::OffsetDateTime;

use super::LimitKey;
use super::batch;
use super::calendar;
use super::decision::{self, Backend, Decision, Denial, Outcome};
use super::plan::{PlanLimits, QuotaPeriod};

/// The GCRA + quota script, for a batch of decisions evaluated one after the other (exactly
/// as separate calls in that order would be). Decisions are sent in entries: identical
/// decisions of concurrent requests (same keys, cost, clock and arguments) travel as one entry
/// with a count m, which the script decides at once — of m identical decisions in a row the
/// first k pass and the rest do not (k from the room in each window and quota) — so a busy
/// key costs Redis one parse and one evaluation per batch, not one per request.
///
/// ARGV: the number of entries, then per entry: m, cost, number of rate keys, number of
/// quota keys, the time in µs (0: the server's `TIME`; tests drive a clock of their own), a
/// debt (units a node admitted on its own while Redis was unreachable: taken first, whatever
/// the decisions, and never capped), a deadline on the server's clock in µs (0: none; past
/// it the entry and its debt are skipped, as its requesters have given up — see [`batch`]),
/// (interval µs, tolerance µs) per rate key, (limit, ttl s) per quota key. KEYS: each
/// entry's rate keys then quota keys. Returns the server's `TIME` in µs, then per entry {k
/// (the decisions admitted, or -1 when skipped), now µs, TAT before the entry per rate key,
/// count before per quota key}; the node expands it into each decision's values
/// ([`batch`]). A key read once is kept in a table for the rest of the batch and written once
/// at the end.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local server_now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cache, ttl, nows = {}, {}, {}
local function get(key)
  local v = cache[key]
  if v == nil then
    v = tonumber(redis.call('GET', key)) or 0
    cache[key] = v
  end
  return v
end
local out = {server_now}
local a, k = 2, 1
for e = 1, tonumber(ARGV[1]) do
  local m, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local nr, nq = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local now = tonumber(ARGV[a + 4])
  if now == 0 then now = server_now end
  local debt, deadline = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  a = a + 7
  local first = #out + 1
  if deadline > 0 and server_now > deadline then
    out[first] = -1
    out[first + 1] = now
    for i = 1, nr + nq do out[first + 1 + i] = 0 end
  else
    if debt > 0 then
      for i = 1, nr do
        local key = KEYS[k + i - 1]
        cache[key] = math.max(get(key), now) + debt * tonumber(ARGV[a + 2 * i - 2])
        ttl[key] = -1
        nows[key] = now
      end
      for j = 1, nq do
        local key = KEYS[k + nr + j - 1]
        cache[key] = get(key) + debt
        ttl[key] = tonumber(ARGV[a + 2 * nr + 2 * j - 1])
      end
    end
    -- How many of the m pass: the j-th passes while max(tat, now) + j * step - now stays
    -- within max(tolerance, step) in every window and used + j * cost within every limit.
    -- Counted from how far the TAT is ahead of now: times since the epoch are ~1.8e15 µs,
    -- where a double's step is 0.25 µs, enough to refuse a request exactly at its time.
    local n = m
    for i = 1, nr do
      local tat = get(KEYS[k + i - 1])
      local step, tol = cost * tonumber(ARGV[a + 2 * i - 2]), tonumber(ARGV[a + 2 * i - 1])
      local ahead, room = math.max(tat - now, 0), math.max(tol, step)
      local fits = 0
      if step > 0 then
        fits = math.floor((room - ahead) / step)
        while fits < n and ahead + (fits + 1) * step <= room do fits = fits + 1 end
        while fits > 0 and ahead + fits * step > room do fits = fits - 1 end
      elseif ahead <= room then
        fits = n
      end
      if fits < n then n = fits end
      out[first + 1 + i] = tat
    end
    for j = 1, nq do
      local used, limit = get(KEYS[k + nr + j - 1]), tonumber(ARGV[a + 2 * nr + 2 * j - 2])
      local fits = n
      if cost > 0 then fits = math.floor((limit - used) / cost) elseif used > limit then fits = 0 end
      if fits < n then n = fits end
      out[first + 1 + nr + j] = used
    end
    if n < 0 then n = 0 end
    if n > 0 then
      for i = 1, nr do
        local key = KEYS[k + i - 1]
        cache[key] = math.max(cache[key], now) + n * cost * tonumber(ARGV[a + 2 * i - 2])
        ttl[key] = -1
        nows[key] = now
      end
      for j = 1, nq do
        local key = KEYS[k + nr + j - 1]
        cache[key] = cache[key] + n * cost
        ttl[key] = tonumber(ARGV[a + 2 * nr + 2 * j - 1])
      end
    end
    out[first] = n
    out[first + 1] = now
  end
  a = a + 2 * (nr + nq)
  k = k + nr + nq
end
for key, s in pairs(ttl) do
  if s < 0 then
    local ms = math.ceil((cache[key] - nows[key]) / 1000) + 1
    redis.call('SET', key, string.format('%.0f', cache[key]), 'PX', ms)
  else
    redis.call('SET', key, string.format('%.0f', cache[key]), 'EX', s)
  end
end
return out
";

/// Why Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered {0} values, expected {1}")]
    Reply(usize, usize),
    #[error("redis batch: {0}")]
    Batch(String),
    #[error("redis ran the decision after its deadline")]
    Late,
}

/// A Redis-backed counter shared by every node. Concurrent decisions are coalesced: one
/// script call at a time carries every decision queued meanwhile ([`batch`]).
#[derive(Clone)]
pub struct RedisCounter {
    conn: ConnectionManager,
    batch: batch::Sender,
    namespace: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// What reading a decision's reply needs beyond the script's values: each quota's limit and
/// the time left in its window.
type QuotaLefts = SmallVec<[(QuotaPeriod, u64, u64); 2]>;

impl RedisCounter {
    /// A counter on `url` that connects lazily and reconnects by itself; calls that take
    /// longer than `timeout` fail. Must be called inside a Tokio runtime.
    pub fn new(url: &str, namespace: &str, timeout: Duration) -> Result<Self, CounterError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let batch = batch::spawn(batch::Link {
            conn: conn.clone(),
            script: Script::new(SCRIPT),
            clock: batch::Clock::new(timeout),
            namespace: namespace.to_owned(),
            timeout,
        });
        Ok(RedisCounter { conn, batch, namespace: namespace.to_owned(), timeout })
    }

    /// Counts `cost` units for `key` under `plan`; quota windows follow `utc`.
    pub async fn check(
        &self,
        key: &LimitKey,
        plan: &PlanLimits,
        cost: u32,
        utc: OffsetDateTime,
    ) -> Result<Decision, CounterError> {
        Ok(self.check_at(key, plan, cost, utc, 0, 0).await?.0)
    }

    /// [`Self::check`] at `now_us` microseconds on the rate windows' clock (0: Redis's), first
    /// charging `debt` units (see [`SCRIPT`]); also returns the fleet's state after it, unless
    /// a later decision of the same key in the same call has a more recent one.
    pub(crate) async fn check_at(
        &self,
        key: &LimitKey,
        plan: &PlanLimits,
        cost: u32,
        utc: OffsetDateTime,
        now_us: u64,
        debt: u64,
    ) -> Result<(Decision, Option<Fleet>), CounterError> {
        let cost = u64::from(cost);
        let mut decide = batch::Decide {
            key: key.clone(),
            rates: plan
                .rate_windows()
                .map(|w| batch::Rate {
                    slot: w.slot,
                    // Whole microseconds, so the script's arithmetic stays in integers
                    // (exact in a double up to 2^53 µs) and an entry of n decisions ends
                    // exactly where n separate calls would; rounded toward the stricter
                    // side, since an interval rounded down lets one more request into a
                    // window (1 s / 13 is 76,923.08 µs, and 13 × 76,923 < 1 s). A plan of
                    // more than a million requests a second per key counts as a million.
                    interval_us: w.interval_ns.div_ceil(1000).max(1),
                    tolerance_us: w.tolerance_ns / 1000,
                })
                .collect(),
            quotas: SmallVec::new(),
            cost,
            now_us,
            debt,
        };
        let mut lefts = QuotaLefts::new();
        for (period, limit) in plan.quotas() {
            let Some((start, left_ns)) = calendar::window(period, utc) else { continue };
            // A minute of slack so a slow clock on this node never expires a live count.
            let ttl_s = left_ns / 1_000_000_000 + 60;
            decide.quotas.push(batch::Quota { period, start, limit, ttl_s });
            lefts.push((period, limit, left_ns));
        }
        let answer = self.batch.decide(decide).await?;
        let (d, fleet) = read_reply(&answer.values, plan, cost, &lefts)?;
        Ok((d, answer.latest.then_some(fleet)))
    }

    /// The count of `key`'s current `period` quota window at `utc` (read only; 0 when the
    /// window has no count yet).
    pub async fn quota_used(
        &self,
        key: &LimitKey,
        period: QuotaPeriod,
        utc: OffsetDateTime,
    ) -> Result<u64, CounterError> {
        let Some((start, _)) = calendar::window(period, utc) else { return Ok(0) };
        let name = batch::QuotaName { namespace: &self.namespace, key, period, start }.to_string();
        let mut conn = self.conn.clone();
        let used: Option<i64> = tokio::time::timeout(self.timeout, redis::cmd("GET").arg(&name).query_async(&mut conn))
            .await
            .map_err(|_| CounterError::Timeout(self.timeout))??;
        Ok(used.map_or(0, |u| u64::try_from(u).unwrap_or(0)))
    }
}

/// The shared counters of one key after a decision, as Redis holds them: how far each rate
/// window's TAT runs ahead of now (by slot), and each quota's count (day, month).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fleet {
    pub ahead_ns: [Option<u64>; 3],
    pub used: [Option<u64>; 2],
}

/// Rebuilds the outcomes from the state the script saw; the script's verdict is final.
fn read_reply(
    reply: &[i64],
    plan: &PlanLimits,
    cost: u64,
    quotas: &QuotaLefts,
) -> Result<(Decision, Fleet), CounterError> {
    let expected = 2 + plan.rate_windows().count() + quotas.len();
    if reply.len() != expected {
        return Err(CounterError::Reply(reply.len(), expected));
    }
    if reply[0] < 0 {
        return Err(CounterError::Late);
    }
    let admitted = reply[0] == 1;
    let now_ns = u64::try_from(reply[1]).unwrap_or(0).saturating_mul(1000);
    let mut values = reply[2..].iter().map(|v| u64::try_from(*v).unwrap_or(0));
    let mut outs: SmallVec<[Outcome; 5]> = SmallVec::new();
    let mut fleet = Fleet::default();
    for w in plan.rate_windows() {
        let tat_ns = values.next().unwrap_or(0).saturating_mul(1000);
        let (out, new_tat) = decision::gcra(tat_ns, now_ns, cost, &w);
        fleet.ahead_ns[w.slot] = Some(if admitted { new_tat } else { tat_ns }.saturating_sub(now_ns));
        outs.push(out);
    }
    for (period, limit, left_ns) in quotas {
        let used = values.next().unwrap_or(0);
        fleet.used[*period as usize] = Some(if admitted { used + cost } else { used });
        outs.push(decision::quota(*period, used, cost, *limit, *left_ns));
    }
    let mut d = Decision::tightest(&outs, Backend::Redis);
    if d.allowed != admitted {
        // Rounding between the script's float microseconds and our nanoseconds: the script
        // committed (or not), so its verdict stands.
        d.allowed = admitted;
        d.retry_after = (!admitted).then_some(Duration::from_millis(1));
        d.denied_by = (!admitted).then_some(Denial::Rate);
    }
    Ok((d, fleet))
}
