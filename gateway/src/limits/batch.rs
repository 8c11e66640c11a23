//! Coalescing of Redis decisions: every decision is queued to one task per counter, which
//! sends one script call at a time carrying everything queued meanwhile (up to
//! [`MAX_BATCH`]). Under load a node makes one round trip per batch instead of one per
//! request, and Redis runs one script per batch; with a single request in flight the cost is
//! one channel hop. Decisions in a batch are evaluated in queue order inside one script, so
//! the answers are exactly those of separate calls made in that order.
//!
//! Bounded: the queue holds [`QUEUE`] decisions (a full queue is answered as an error, so
//! the plan's failure policy applies). The task also keeps the counter's timeout for every
//! requester: each decision is answered by the time its requester gives up (queue time + the
//! timeout), with a timeout error if Redis has not answered by then, and one that has expired
//! in the queue is not sent. One timer per call instead of one per request.
//!
//! Decisions are plain values (key, windows, quotas); the Redis key names and arguments are
//! written once per entry, so a busy key costs no string per request.
//!
//! A call can reach Redis after its requester gave up (a stalled server runs its backlog when
//! it resumes; the bytes were already on the socket). Each decision therefore carries a
//! deadline on Redis's clock — when its requester stops waiting, estimated from this node's
//! monotonic clock and the offset to Redis's `TIME` that each reply measures ([`Clock`]) —
//! and the script skips a decision (its debt too) that runs past it: what the node decided
//! without Redis is not counted twice.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::ConnectionManager;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};

use super::LimitKey;
use super::plan::QuotaPeriod;
use super::redis::CounterError;

/// Most decisions in one script call.
pub(crate) const MAX_BATCH: usize = 256;
/// Batches smaller than this wait for the tasks already ready to run once (see [`run`]).
const LINGER_BELOW: usize = 64;
/// Most decisions waiting for the next call.
pub(crate) const QUEUE: usize = 16_384;

/// One decision's values in the script's reply: {admitted, now, TAT per rate key, count per
/// quota key} — at most 2 + 3 + 2.
pub(crate) type Values = SmallVec<[i64; 7]>;

/// A rate window as the script reads it: its key's slot, interval and tolerance in whole
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Rate {
    pub slot: usize,
    pub interval_us: u64,
    pub tolerance_us: u64,
}

/// A quota as the script reads it: its calendar window (period, start in Unix seconds), the
/// limit and the seconds its count is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Quota {
    pub period: QuotaPeriod,
    pub start: i64,
    pub limit: u64,
    pub ttl_s: u64,
}

/// One decision as the script reads it (see `SCRIPT` in [`super::redis`]). Plain values:
/// the Redis key names and arguments are written once per entry of the batch, not per
/// decision.
#[derive(Debug)]
pub(crate) struct Decide {
    pub key: LimitKey,
    pub rates: SmallVec<[Rate; 3]>,
    pub quotas: SmallVec<[Quota; 2]>,
    pub cost: u64,
    /// The clock (0: Redis's `TIME`).
    pub now_us: u64,
    pub debt: u64,
}

impl Decide {
    /// The values of this decision in the script's reply.
    fn len(&self) -> usize {
        2 + self.rates.len() + self.quotas.len()
    }

    /// The values the script would have returned for this decision alone, as the `i`-th
    /// (from 0) of the entry whose part of the reply is `entry` ({admitted count or -1, now,
    /// TAT before per rate key, count before per quota key}): the first `k` pass; the `i`-th
    /// saw the state after min(i, k) admissions.
    fn expand(&self, entry: &[i64], i: usize) -> Values {
        let (Some(&k), Some(&now)) = (entry.first(), entry.get(1)) else { return Values::from_slice(entry) };
        if k < 0 {
            return Values::from_slice(entry);
        }
        let before = u64::try_from(k).map_or(0, |k| k.min(i as u64));
        let units = i64::try_from(before * self.cost).unwrap_or(i64::MAX);
        let mut values = Values::new();
        values.push(i64::from(u64::try_from(k).is_ok_and(|k| (i as u64) < k)));
        values.push(now);
        for (rate, &tat) in self.rates.iter().zip(entry.iter().skip(2)) {
            values.push(if before == 0 {
                tat
            } else {
                // As the script computes its state: max(tat, now) + n × cost × interval (whole
                // microseconds).
                let interval = i64::try_from(rate.interval_us).unwrap_or(i64::MAX);
                tat.max(now).saturating_add(units.saturating_mul(interval))
            });
        }
        for &used in entry.iter().skip(2 + self.rates.len()).take(self.quotas.len()) {
            values.push(used.saturating_add(units));
        }
        values
    }

    /// Whether `other` is the same decision for the script (so both can travel as one
    /// entry): everything but the deadline, and neither carries a debt.
    fn same_as(&self, other: &Decide) -> bool {
        self.debt == 0
            && other.debt == 0
            && (self.cost, self.now_us) == (other.cost, other.now_us)
            && self.rates == other.rates
            && self.quotas == other.quotas
            && self.key == other.key
    }

    /// Writes the entry's arguments and keys (`m` decisions like this one) into `call`;
    /// `name` is scratch space for the key names.
    fn write(
        &self,
        m: usize,
        deadline_us: u64,
        namespace: &str,
        name: &mut String,
        call: &mut redis::ScriptInvocation,
    ) {
        call.arg(m).arg(self.cost).arg(self.rates.len()).arg(self.quotas.len()).arg(self.now_us).arg(self.debt);
        call.arg(deadline_us);
        for rate in &self.rates {
            call.arg(rate.interval_us).arg(rate.tolerance_us);
        }
        for quota in &self.quotas {
            call.arg(quota.limit).arg(quota.ttl_s);
        }
        for rate in &self.rates {
            name.clear();
            let _ = write!(name, "{namespace}:{{{}}}:r{}", self.key, rate.slot);
            call.key(name.as_str());
        }
        for quota in &self.quotas {
            name.clear();
            let _ =
                write!(name, "{}", QuotaName { namespace, key: &self.key, period: quota.period, start: quota.start });
            call.key(name.as_str());
        }
    }
}

/// The Redis key of a quota's count in one calendar window: `<ns>:{<key>}:q<d|m>:<start>`.
pub(crate) struct QuotaName<'a> {
    pub namespace: &'a str,
    pub key: &'a LimitKey,
    pub period: QuotaPeriod,
    pub start: i64,
}

impl std::fmt::Display for QuotaName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = if self.period == QuotaPeriod::Day { 'd' } else { 'm' };
        write!(f, "{}:{{{}}}:q{tag}:{}", self.namespace, self.key, self.start)
    }
}

/// A decision's values, and whether it is the last decision of its entry: no later one of
/// the same key was in that call, so its values are the key's latest state in Redis.
#[derive(Debug)]
pub(crate) struct Answer {
    pub values: Values,
    pub latest: bool,
}

struct Job {
    decide: Decide,
    /// When the requester stops waiting (the counter's timeout after it queued the decision).
    give_up: tokio::time::Instant,
    reply: oneshot::Sender<Result<Answer, CounterError>>,
}

/// This node's estimate of Redis's clock: the offset from a local monotonic clock to Redis's
/// `TIME`, measured at the middle of each round trip short enough to bound the error.
#[derive(Debug)]
pub(crate) struct Clock {
    epoch: Instant,
    /// Redis µs minus local µs; [`UNKNOWN`] until a reply measured it.
    offset_us: AtomicI64,
    /// Round trips longer than this (µs) measure nothing: the error is half the round trip.
    max_rtt_us: i64,
}

const UNKNOWN: i64 = i64::MIN;

impl Clock {
    pub(crate) fn new(timeout: Duration) -> Self {
        let max_rtt_us = i64::try_from(timeout.as_micros() / 4).unwrap_or(i64::MAX);
        Clock { epoch: Instant::now(), offset_us: AtomicI64::new(UNKNOWN), max_rtt_us }
    }

    fn local_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// `instant` on Redis's clock (µs), or 0 (no deadline) while no reply has measured the
    /// offset.
    pub(crate) fn on_redis(&self, instant: tokio::time::Instant) -> u64 {
        let offset = self.offset_us.load(Ordering::Relaxed);
        if offset == UNKNOWN {
            return 0;
        }
        let local =
            i64::try_from(instant.into_std().saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX);
        u64::try_from(local.saturating_add(offset)).unwrap_or(0).max(1)
    }

    /// Notes a reply stamped `server_us` by Redis to a call sent at local `sent_us`.
    fn measure(&self, sent_us: i64, server_us: i64) {
        let received = self.local_us();
        if received - sent_us <= self.max_rtt_us {
            self.offset_us.store(server_us - (sent_us + received) / 2, Ordering::Relaxed);
        }
    }
}

/// Where decisions are queued.
#[derive(Clone)]
pub(crate) struct Sender {
    queue: mpsc::Sender<Job>,
    timeout: Duration,
}

impl Sender {
    /// Queues one decision and waits for its values in the script's reply — or for the
    /// counter's timeout after now, which the batch task enforces (one timer per call, not
    /// one per decision).
    pub(crate) async fn decide(&self, decide: Decide) -> Result<Answer, CounterError> {
        let (reply, answer) = oneshot::channel();
        let give_up = tokio::time::Instant::now() + self.timeout;
        self.queue.try_send(Job { decide, give_up, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CounterError::Batch("too many decisions waiting".into()),
            mpsc::error::TrySendError::Closed(_) => CounterError::Batch("the batch task has stopped".into()),
        })?;
        answer.await.map_err(|_| CounterError::Batch("the batch task has stopped".into()))?
    }
}

/// What the batch task sends with: the connection, the script, Redis's clock, the key
/// namespace and the counter's timeout.
pub(crate) struct Link {
    pub conn: ConnectionManager,
    pub script: Script,
    pub clock: Clock,
    pub namespace: String,
    pub timeout: Duration,
}

/// Starts the task that sends the batches on `link`; it ends when every [`Sender`] is gone.
pub(crate) fn spawn(link: Link) -> Sender {
    let (tx, rx) = mpsc::channel(QUEUE);
    let timeout = link.timeout;
    tokio::spawn(run(rx, link));
    Sender { queue: tx, timeout }
}

async fn run(mut rx: mpsc::Receiver<Job>, link: Link) {
    let Link { mut conn, script, clock, namespace, timeout } = link;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<Entry> = Vec::with_capacity(MAX_BATCH);
    let mut name = String::new();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        if jobs.len() < LINGER_BELOW {
            // Lets the tasks already ready run first (requests whose decisions are on the
            // way), so the call carries them too.
            tokio::task::yield_now().await;
            while jobs.len() < MAX_BATCH {
                let Ok(job) = rx.try_recv() else { break };
                jobs.push(job);
            }
        }
        // Decisions whose requesters gave up (or are about to be told so) are not sent.
        let now = tokio::time::Instant::now();
        for job in jobs.extract_if(.., |job| job.reply.is_closed() || job.give_up <= now) {
            let _ = job.reply.send(Err(CounterError::Timeout(timeout)));
        }
        if jobs.is_empty() {
            continue;
        }
        group(&jobs, &mut entries);
        let mut call = script.prepare_invoke();
        call.arg(entries.len());
        for entry in &entries {
            let Some(first) = entry.jobs.first().and_then(|&j| jobs.get(j)) else { continue };
            let deadline_us = clock.on_redis(entry.give_up);
            first.decide.write(entry.jobs.len(), deadline_us, &namespace, &mut name, &mut call);
        }
        let mut slots: Vec<Option<Job>> = jobs.drain(..).map(Some).collect();
        let sent = clock.local_us();
        let result = {
            let invoke = call.invoke_async::<Vec<i64>>(&mut conn);
            tokio::pin!(invoke);
            loop {
                // Waits until the first requester still waiting gives up; tells it (and any
                // other past its time) and waits on for the others.
                let Some(until) = slots.iter().flatten().map(|job| job.give_up).min() else { break None };
                match tokio::time::timeout_at(until, &mut invoke).await {
                    Ok(result) => break Some(result),
                    Err(_) => give_up(&mut slots, timeout),
                }
            }
        };
        if let Some(result) = result {
            // The reply starts with Redis's TIME when the script ran.
            if let Ok(&[server_us, ..]) = result.as_deref() {
                clock.measure(sent, server_us);
            }
            answer(&entries, &mut slots, result);
        }
        entries.clear();
    }
}

/// Answers the jobs past their time with a timeout.
fn give_up(slots: &mut [Option<Job>], timeout: Duration) {
    let now = tokio::time::Instant::now();
    for slot in slots {
        if slot.as_ref().is_some_and(|job| job.give_up <= now)
            && let Some(job) = slot.take()
        {
            let _ = job.reply.send(Err(CounterError::Timeout(timeout)));
        }
    }
}

/// Decisions that travel as one entry: indexes into the batch, in queue order.
struct Entry {
    jobs: SmallVec<[usize; 8]>,
    /// The earliest time one of them gives up: the entry is skipped once the first of its
    /// requesters has given up.
    give_up: tokio::time::Instant,
    /// The values of one decision in the reply.
    len: usize,
}

/// Groups the batch's decisions into entries of identical decisions. Decisions of one batch
/// were all waiting at once, so any order of them is one in which separate calls could have
/// run; identical ones are put next to each other.
fn group(jobs: &[Job], entries: &mut Vec<Entry>) {
    let hasher = foldhash::fast::FixedState::default();
    let mut by_decision: HashMap<u64, SmallVec<[usize; 2]>> = HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let d = &job.decide;
        let candidates = by_decision.entry(hasher.hash_one((&d.key, &d.rates, &d.quotas, d.cost))).or_default();
        let same = candidates.iter().copied().find(|&e| {
            entries.get(e).and_then(|e| e.jobs.first()).and_then(|&j| jobs.get(j)).is_some_and(|j| j.decide.same_as(d))
        });
        match same.and_then(|e| entries.get_mut(e)) {
            Some(entry) => {
                entry.jobs.push(i);
                entry.give_up = entry.give_up.min(job.give_up);
            }
            None => {
                candidates.push(entries.len());
                entries.push(Entry { jobs: smallvec::smallvec![i], give_up: job.give_up, len: d.len() });
            }
        }
    }
}

/// Hands each waiting job its values (or the error): each entry's part of the reply,
/// expanded into the values of its decisions in the order the script evaluated them.
fn answer(entries: &[Entry], slots: &mut [Option<Job>], result: Result<Vec<i64>, redis::RedisError>) {
    match result {
        Ok(values) => {
            let mut rest = values.get(1..).unwrap_or_default();
            for entry in entries {
                let part = rest.split_at_checked(entry.len).map(|(mine, after)| {
                    rest = after;
                    mine
                });
                let available = rest.len();
                let last = entry.jobs.len().saturating_sub(1);
                for (i, &j) in entry.jobs.iter().enumerate() {
                    let Some(job) = slots.get_mut(j).and_then(Option::take) else { continue };
                    let answer = part
                        .map(|p| Answer { values: job.decide.expand(p, i), latest: i == last })
                        .ok_or(CounterError::Reply(available, entry.len));
                    let _ = job.reply.send(answer);
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            for job in slots.iter_mut().filter_map(Option::take) {
                let _ = job.reply.send(Err(CounterError::Batch(text.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, cost: u64, debt: u64, give_up_ms: u64) -> Job {
        let decide = Decide {
            key: LimitKey::Named(key.into()),
            rates: smallvec::smallvec![Rate { slot: 1, interval_us: 100, tolerance_us: 1000 }],
            quotas: SmallVec::new(),
            cost,
            now_us: 0,
            debt,
        };
        let give_up = epoch() + Duration::from_millis(give_up_ms);
        Job { decide, give_up, reply: oneshot::channel().0 }
    }

    fn epoch() -> tokio::time::Instant {
        static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(tokio::time::Instant::now)
    }

    #[test]
    fn identical_decisions_travel_as_one_entry_and_debts_alone() {
        let jobs = [
            job("a", 1, 0, 500),
            job("b", 1, 0, 900),
            job("a", 1, 0, 400),
            job("a", 2, 0, 900),
            job("a", 1, 7, 900),
            job("a", 1, 0, 900),
            job("b", 1, 0, 300),
        ];
        let mut entries = Vec::new();
        group(&jobs, &mut entries);
        let shape: Vec<(Vec<usize>, Duration)> =
            entries.iter().map(|e| (e.jobs.to_vec(), e.give_up - epoch())).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            shape,
            [(vec![0, 2, 5], ms(400)), (vec![1, 6], ms(300)), (vec![3], ms(900)), (vec![4], ms(900))],
            "same key, cost and arguments share an entry (the earliest give-up); another cost, or a debt, does not"
        );
    }
}
