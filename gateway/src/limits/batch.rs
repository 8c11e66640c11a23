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
pub(crate) type Args = SmallVec<[String; 16]>;

struct Job {
    keys: Keys,
    args: Args,
    /// Values of this decision in the script's reply.
    len: usize,
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

    /// Queues one decision (`args` as the script reads them: cost, rate keys, quota keys,
    /// time, debt, deadline, then the windows' and quotas' arguments) and waits for its `len` values.
    pub(crate) async fn decide(&self, keys: Keys, args: Args, len: usize) -> Result<Vec<i64>, CounterError> {
        let (reply, answer) = oneshot::channel();
        self.0.try_send(Job { keys, args, len, reply }).map_err(|e| match e {
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
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        jobs.retain(|job: &Job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let mut call = script.prepare_invoke();
        call.arg(jobs.len());
        for job in &jobs {
            for key in &job.keys {
                call.key(key);
            }
            for arg in &job.args {
                call.arg(arg);
            }
        }
        let sent = clock.local_us();
        let result: Result<Vec<i64>, redis::RedisError> = call.invoke_async(&mut conn).await;
        // The reply starts with Redis's TIME when the script ran.
        let result = result.map(|values| match values.split_first() {
            Some((&server_us, _)) => {
                clock.measure(sent, server_us);
                values
            }
            None => values,
        });
        answer(jobs.drain(..), result);
    }
}

/// Hands each job its part of the reply (or the error).
fn answer(jobs: impl ExactSizeIterator<Item = Job>, result: Result<Vec<i64>, redis::RedisError>) {
    match result {
        Ok(values) => {
            let mut rest = values.get(1..).unwrap_or_default();
            for job in jobs {
                let part = match rest.split_at_checked(job.len) {
                    Some((mine, after)) => {
                        rest = after;
                        Ok(mine.to_vec())
                    }
                    None => Err(CounterError::Reply(rest.len(), job.len)),
                };
                let _ = job.reply.send(part);
            }
        }
        Err(e) => {
            let text = e.to_string();
            for job in jobs {
                let _ = job.reply.send(Err(CounterError::Batch(text.clone())));
            }
        }
    }
}
