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

/// Where decisions are queued.
#[derive(Clone)]
pub(crate) struct Sender(mpsc::Sender<Job>);

impl Sender {
    /// Queues one decision (`args` as the script reads them: cost, rate keys, quota keys,
    /// time, debt, then the windows' and quotas' arguments) and waits for its `len` values.
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
pub(crate) fn spawn(conn: ConnectionManager, script: Script) -> Sender {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(rx, conn, script));
    Sender(tx)
}

async fn run(mut rx: mpsc::Receiver<Job>, mut conn: ConnectionManager, script: Script) {
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
        let result: Result<Vec<i64>, redis::RedisError> = call.invoke_async(&mut conn).await;
        answer(jobs.drain(..), result);
    }
}

/// Hands each job its part of the reply (or the error).
fn answer(jobs: impl ExactSizeIterator<Item = Job>, result: Result<Vec<i64>, redis::RedisError>) {
    match result {
        Ok(values) => {
            let mut rest = values.as_slice();
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
