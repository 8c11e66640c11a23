//! Coalescing of Redis decisions: every decision is queued to one task per counter, which
//! sends one script call at a time carrying everything queued meanwhile (up to
//! [`MAX_BATCH`]). Under load a node makes one round trip per batch instead of one per
//! request, and Redis runs one script per batch; with a single request in flight the cost is
//! one channel hop. Decisions in a batch are evaluated in queue order inside one script, so
//! the answers are exactly those of separate calls made in that order.
//!
//! Bounded: the queue holds [`QUEUE`] decisions (a full queue is answered as an error, so
//! the plan's failure policy applies), and a decision whose requester has given up (its own
//! timeout) is dropped before the call.
//!
//! A call can reach Redis after its requester gave up (a stalled server runs its backlog when
//! it resumes; the bytes were already on the socket). Each decision therefore carries a
//! deadline on Redis's clock — when its requester stops waiting, estimated from this node's
//! monotonic clock and the offset to Redis's `TIME` that each reply measures ([`Clock`]) —
//! and the script skips a decision (its debt too) that runs past it: what the node decided
//! without Redis is not counted twice.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::ConnectionManager;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};

use super::redis::CounterError;

/// Most decisions in one script call.
pub(crate) const MAX_BATCH: usize = 256;
/// Most decisions waiting for the next call.
pub(crate) const QUEUE: usize = 16_384;

pub(crate) type Keys = SmallVec<[String; 5]>;
pub(crate) type Args = SmallVec<[String; 10]>;

/// One decision as the script reads it (see `SCRIPT` in [`super::redis`]).
#[derive(Debug)]
pub(crate) struct Decide {
    /// Rate keys, then quota keys.
    pub keys: Keys,
    pub cost: u64,
    pub rates: usize,
    pub quotas: usize,
    /// The clock (0: Redis's `TIME`).
    pub now_us: u64,
    pub debt: u64,
    /// On Redis's clock (0: none).
    pub deadline_us: u64,
    /// (interval, tolerance) per rate key, (limit, ttl) per quota key.
    pub args: Args,
}

impl Decide {
    /// The values of this decision in the script's reply.
    fn len(&self) -> usize {
        2 + self.rates + self.quotas
    }

    /// The values the script would have returned for this decision alone, as the `i`-th
    /// (from 0) of the entry whose part of the reply is `entry` ({admitted count or -1, now,
    /// TAT before per rate key, count before per quota key}): the first `k` pass; the `i`-th
    /// saw the state after min(i, k) admissions.
    fn expand(&self, entry: &[i64], i: usize) -> Vec<i64> {
        let (Some(&k), Some(&now)) = (entry.first(), entry.get(1)) else { return entry.to_vec() };
        if k < 0 {
            return entry.to_vec();
        }
        let before = u64::try_from(k).map_or(0, |k| k.min(i as u64));
        let mut values = Vec::with_capacity(entry.len());
        values.push(i64::from(u64::try_from(k).is_ok_and(|k| (i as u64) < k)));
        values.push(now);
        for (r, &tat) in entry.iter().skip(2).take(self.rates).enumerate() {
            let seen = if before == 0 {
                tat
            } else {
                // As the script computes its state: max(tat, now) + n × cost × interval (whole
                // microseconds).
                let interval: i64 = self.args.get(2 * r).and_then(|a| a.parse().ok()).unwrap_or(0);
                let units = i64::try_from(before * self.cost).unwrap_or(i64::MAX);
                tat.max(now).saturating_add(units.saturating_mul(interval))
            };
            values.push(seen);
        }
        for &used in entry.iter().skip(2 + self.rates).take(self.quotas) {
            values.push(used.saturating_add(i64::try_from(before * self.cost).unwrap_or(i64::MAX)));
        }
        values
    }

    /// Whether `other` is the same decision for the script (so both can travel as one
    /// entry): everything but the deadline, and neither carries a debt.
    fn same_as(&self, other: &Decide) -> bool {
        self.debt == 0
            && other.debt == 0
            && (self.cost, self.rates, self.quotas, self.now_us)
                == (other.cost, other.rates, other.quotas, other.now_us)
            && self.keys == other.keys
            && self.args == other.args
    }
}

struct Job {
    decide: Decide,
    reply: oneshot::Sender<Result<Vec<i64>, CounterError>>,
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

    /// The instant `after` from now on Redis's clock (µs), or 0 (no deadline) while no reply
    /// has measured the offset.
    pub(crate) fn deadline_us(&self, after: Duration) -> u64 {
        let offset = self.offset_us.load(Ordering::Relaxed);
        if offset == UNKNOWN {
            return 0;
        }
        let after = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
        u64::try_from(self.local_us().saturating_add(after).saturating_add(offset)).unwrap_or(0).max(1)
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
pub(crate) struct Sender(mpsc::Sender<Job>, Arc<Clock>);

impl Sender {
    /// The estimate of Redis's clock the batches keep.
    pub(crate) fn clock(&self) -> &Clock {
        &self.1
    }

    /// Queues one decision and waits for its values in the script's reply.
    pub(crate) async fn decide(&self, decide: Decide) -> Result<Vec<i64>, CounterError> {
        let (reply, answer) = oneshot::channel();
        self.0.try_send(Job { decide, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CounterError::Batch("too many decisions waiting".into()),
            mpsc::error::TrySendError::Closed(_) => CounterError::Batch("the batch task has stopped".into()),
        })?;
        answer.await.map_err(|_| CounterError::Batch("the batch task has stopped".into()))?
    }
}

/// Starts the task that sends the batches on `conn`; it ends when every [`Sender`] is gone.
pub(crate) fn spawn(conn: ConnectionManager, script: Script, clock: Clock) -> Sender {
    let (tx, rx) = mpsc::channel(QUEUE);
    let clock = Arc::new(clock);
    tokio::spawn(run(rx, conn, script, clock.clone()));
    Sender(tx, clock)
}

async fn run(mut rx: mpsc::Receiver<Job>, mut conn: ConnectionManager, script: Script, clock: Arc<Clock>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<Entry> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        jobs.retain(|job: &Job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        group(&jobs, &mut entries);
        let mut call = script.prepare_invoke();
        call.arg(entries.len());
        for entry in &entries {
            let Some(first) = entry.jobs.first().and_then(|&j| jobs.get(j)) else { continue };
            let d = &first.decide;
            call.arg(entry.jobs.len()).arg(d.cost).arg(d.rates).arg(d.quotas).arg(d.now_us).arg(d.debt);
            call.arg(entry.deadline_us);
            for arg in &d.args {
                call.arg(arg);
            }
            for key in &d.keys {
                call.key(key);
            }
        }
        let sent = clock.local_us();
        let result: Result<Vec<i64>, redis::RedisError> = call.invoke_async(&mut conn).await;
        // The reply starts with Redis's TIME when the script ran.
        if let Ok(&[server_us, ..]) = result.as_deref() {
            clock.measure(sent, server_us);
        }
        let mut slots: Vec<Option<Job>> = jobs.drain(..).map(Some).collect();
        let grouped: Vec<SmallVec<[Job; 4]>> = entries
            .drain(..)
            .map(|e| e.jobs.iter().filter_map(|&j| slots.get_mut(j).and_then(Option::take)).collect())
            .collect();
        answer(grouped.into_iter().map(SmallVec::into_iter), result);
    }
}

/// Decisions that travel as one entry: indexes into the batch, in queue order.
struct Entry {
    jobs: SmallVec<[usize; 8]>,
    /// The earliest of their deadlines (0 when one has none): the entry is skipped once the
    /// first of its requesters gives up.
    deadline_us: u64,
}

/// Groups the batch's decisions into entries of identical decisions. Decisions of one batch
/// were all waiting at once, so any order of them is one in which separate calls could have
/// run; identical ones are put next to each other.
fn group(jobs: &[Job], entries: &mut Vec<Entry>) {
    let hasher = foldhash::fast::FixedState::default();
    let mut by_decision: HashMap<u64, SmallVec<[usize; 2]>> = HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let d = &job.decide;
        let candidates = by_decision.entry(hasher.hash_one((&d.keys, &d.args, d.cost))).or_default();
        let same = candidates.iter().copied().find(|&e| {
            entries.get(e).and_then(|e| e.jobs.first()).and_then(|&j| jobs.get(j)).is_some_and(|j| j.decide.same_as(d))
        });
        match same.and_then(|e| entries.get_mut(e)) {
            Some(entry) => {
                entry.jobs.push(i);
                entry.deadline_us = earliest(entry.deadline_us, d.deadline_us);
            }
            None => {
                candidates.push(entries.len());
                entries.push(Entry { jobs: smallvec::smallvec![i], deadline_us: d.deadline_us });
            }
        }
    }
}

/// The earlier of two deadlines, 0 meaning none.
fn earliest(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// Hands each job its values (or the error): each entry's part of the reply, expanded into
/// the values of its decisions in the order the script evaluated them.
fn answer<E, J>(entries: E, result: Result<Vec<i64>, redis::RedisError>)
where
    E: Iterator<Item = J>,
    J: Iterator<Item = Job>,
{
    match result {
        Ok(values) => {
            let mut rest = values.get(1..).unwrap_or_default();
            for jobs in entries {
                let mut jobs = jobs.peekable();
                let Some(len) = jobs.peek().map(|j| j.decide.len()) else { continue };
                let part = rest.split_at_checked(len).map(|(mine, after)| {
                    rest = after;
                    mine
                });
                let available = rest.len();
                for (i, job) in jobs.enumerate() {
                    let values = part.map(|p| job.decide.expand(p, i)).ok_or(CounterError::Reply(available, len));
                    let _ = job.reply.send(values);
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            for job in entries.flatten() {
                let _ = job.reply.send(Err(CounterError::Batch(text.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, cost: u64, debt: u64, deadline_us: u64) -> Job {
        let decide = Decide {
            keys: smallvec::smallvec![key.to_owned()],
            cost,
            rates: 1,
            quotas: 0,
            now_us: 0,
            debt,
            deadline_us,
            args: smallvec::smallvec!["100".to_owned(), "1000".to_owned()],
        };
        Job { decide, reply: oneshot::channel().0 }
    }

    #[test]
    fn identical_decisions_travel_as_one_entry_and_debts_alone() {
        let jobs = [
            job("a", 1, 0, 500),
            job("b", 1, 0, 0),
            job("a", 1, 0, 400),
            job("a", 2, 0, 0),
            job("a", 1, 7, 0),
            job("a", 1, 0, 0),
            job("b", 1, 0, 300),
        ];
        let mut entries = Vec::new();
        group(&jobs, &mut entries);
        let shape: Vec<(Vec<usize>, u64)> = entries.iter().map(|e| (e.jobs.to_vec(), e.deadline_us)).collect();
        assert_eq!(
            shape,
            [(vec![0, 2, 5], 400), (vec![1, 6], 300), (vec![3], 0), (vec![4], 0)],
            "same key, cost and arguments share an entry (the earliest deadline); another cost, or a debt, does not"
        );
    }
}
