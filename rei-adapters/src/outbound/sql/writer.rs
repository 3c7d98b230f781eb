//! Group commit: how every write of the store reaches the database.
//!
//! A write is one atomic domain operation (a hold, a job step, a dialogue save…),
//! written as a closure over an open transaction. [`Writer::Batched`] queues it for the
//! *lane*, one task that owns one write transaction at a time: the lane takes every write
//! that is waiting (up to [`MAX_BATCH`]), runs each inside a savepoint of one
//! transaction, commits once, and only then answers each caller with its own result.
//! Writes that arrive while a commit is in flight wait for the next one, so under load
//! one fsync carries many writes; a lone write is committed at once (no batch window).
//!
//! - One write's refusal (an overdraft, a replayed key with other content, a stale
//!   version) rolls back to its savepoint and refuses that write alone.
//! - A failed commit fails every write of the batch with the commit's error (none of
//!   them is in the database), and callers retry as they retry any transient failure.
//! - Until the commit, nothing of a batch is visible to other connections, so a reply
//!   never reports what a crash could undo.
//!
//! SQLite batches (its write lock admits one writer anyway; queueing in-process also
//! replaces the busy handler's sleep-and-poll). PostgreSQL keeps a pool of writers
//! ([`Writer::Direct`]): the server already shares WAL flushes between concurrent
//! commits, and the measurements in `docs/benchmarks.md` favour it. There is one lane,
//! never several: two open batches on PostgreSQL each hold the row locks of all their
//! writes until their commit, so they deadlock on shared users (measured: 50× slower).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use rei_core::ports::StoreError;
use tokio::sync::{mpsc, oneshot};

use super::TxError;
use super::store::Tx;

/// The most writes one transaction carries.
pub(crate) const MAX_BATCH: usize = 256;

/// How many writes may wait for a lane before callers wait to enqueue (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// A write: a closure over the open transaction.
pub(crate) type Work<T> =
    Box<dyn for<'t> FnOnce(&'t mut Tx<'static>) -> BoxFuture<'t, Result<T, TxError>> + Send>;

/// A queued write with its caller's reply channel, type-erased for the queue.
pub(crate) trait Op: Send {
    /// Runs the write in the open transaction; `true` when it succeeded.
    fn run<'t>(&'t mut self, tx: &'t mut Tx<'static>) -> BoxFuture<'t, bool>;
    /// Answers the caller: its own result if the batch was committed, the commit's
    /// error otherwise.
    fn answer(self: Box<Self>, commit: Result<(), Arc<sqlx::Error>>);
}

struct Pending<T> {
    work: Option<Work<T>>,
    result: Option<Result<T, TxError>>,
    reply: oneshot::Sender<Result<T, TxError>>,
}

impl<T: Send + 'static> Op for Pending<T> {
    fn run<'t>(&'t mut self, tx: &'t mut Tx<'static>) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else {
                return false;
            };
            let result = work(tx).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn answer(self: Box<Self>, commit: Result<(), Arc<sqlx::Error>>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(TxError::Commit(e)),
            (Ok(()), None) => Err(TxError::Store(StoreError::Unavailable(
                "the write was not run".into(),
            ))),
        };
        // A caller that stopped waiting (its future was dropped) leaves the write as
        // it ended: committed or not, it is one whole operation either way.
        if self.reply.send(result).is_err() {
            tracing::debug!("a batched write finished after its caller left");
        }
    }
}

/// What the writer has committed since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes they carried.
    pub writes: u64,
    /// The most writes one commit carried.
    pub largest: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    largest: AtomicU64,
}

impl Counters {
    fn committed(&self, writes: usize) {
        let writes = u64::try_from(writes).unwrap_or(u64::MAX);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.largest.fetch_max(writes, Ordering::Relaxed);
        metrics::histogram!("rei_db_writes_per_commit")
            .record(f64::from(u32::try_from(writes).unwrap_or(u32::MAX)));
    }

    fn get(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
        }
    }
}

/// How writes reach the database.
pub(crate) enum Writer {
    /// One transaction per write, on a pooled connection (concurrent writers each
    /// hold one).
    Direct {
        pool: sqlx::AnyPool,
        begin: &'static str,
        counters: Arc<Counters>,
    },
    /// Group commit through the lane (see the module comment).
    Batched {
        queue: mpsc::Sender<Box<dyn Op>>,
        counters: Arc<Counters>,
    },
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Direct { .. } => f.write_str("Writer::Direct"),
            Self::Batched { .. } => f.write_str("Writer::Batched"),
        }
    }
}

impl Writer {
    /// One transaction per write.
    pub(crate) fn direct(pool: sqlx::AnyPool, begin: &'static str) -> Self {
        Self::Direct {
            pool,
            begin,
            counters: Arc::default(),
        }
    }

    /// What has been committed so far.
    pub(crate) fn stats(&self) -> WriteStats {
        match self {
            Self::Direct { counters, .. } | Self::Batched { counters, .. } => counters.get(),
        }
    }

    /// Group commit through one lane, spawned on the current runtime. It stops when
    /// the last handle of the store is dropped.
    pub(crate) fn batched(pool: &sqlx::AnyPool, begin: &'static str) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let counters = Arc::<Counters>::default();
        tokio::spawn(lane(pool.clone(), begin, receiver, counters.clone()));
        Self::Batched { queue, counters }
    }

    /// Runs `work` as one atomic write and answers once it is committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, TxError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<'static>) -> BoxFuture<'t, Result<T, TxError>>
            + Send
            + 'static,
    {
        match self {
            Self::Direct {
                pool,
                begin,
                counters,
            } => {
                let mut tx = pool.begin_with(*begin).await?;
                let value = work(&mut tx).await?;
                tx.commit().await?;
                counters.committed(1);
                Ok(value)
            }
            Self::Batched { queue, .. } => {
                let (reply, answer) = oneshot::channel();
                let op: Box<dyn Op> = Box::new(Pending {
                    work: Some(Box::new(work) as Work<T>),
                    result: None,
                    reply,
                });
                queue.send(op).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
        }
    }
}

fn stopped() -> TxError {
    TxError::Store(StoreError::Unavailable(
        "the database writer has stopped".into(),
    ))
}

/// The lane: takes what is waiting, writes it in one transaction, answers, repeats.
async fn lane(
    pool: sqlx::AnyPool,
    begin: &'static str,
    mut queue: mpsc::Receiver<Box<dyn Op>>,
    counters: Arc<Counters>,
) {
    // Writes the last transaction did not get to go first into the next.
    let mut carried: Vec<Box<dyn Op>> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            let Some(first) = queue.recv().await else {
                tracing::debug!("the database writer stopped");
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }
        carried = write_batch(&pool, begin, batch, &counters).await;
    }
}

/// Writes a batch in one transaction; returns the writes it did not get to (after a
/// refusal of the first write, which has no savepoint, or a broken connection), to be
/// written by the next transaction.
async fn write_batch(
    pool: &sqlx::AnyPool,
    begin: &'static str,
    batch: Vec<Box<dyn Op>>,
    counters: &Counters,
) -> Vec<Box<dyn Op>> {
    let size = batch.len();
    let mut tx = match pool.begin_with(begin).await {
        Ok(tx) => tx,
        Err(e) => {
            let e = Arc::new(e);
            for op in batch {
                op.answer(Err(e.clone()));
            }
            return Vec::new();
        }
    };
    let mut ops = batch.into_iter();
    let mut done: Vec<Box<dyn Op>> = Vec::with_capacity(size);
    let mut broken: Option<sqlx::Error> = None;
    // The first write runs without a savepoint: alone in the batch (the common case
    // at low load) it costs what a plain transaction costs.
    if let Some(mut first) = ops.next() {
        if !first.run(&mut tx).await {
            // Nothing else is in the transaction: roll it back, answer the refusal,
            // and write the rest in a fresh one.
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %e, "rollback after a refused write failed");
            }
            first.answer(Ok(()));
            return ops.collect();
        }
        done.push(first);
    }
    let mut rest = Vec::new();
    for mut op in ops.by_ref() {
        if let Err(e) = savepoint(&mut tx, "SAVEPOINT w").await {
            broken = Some(e);
            rest.push(op);
            break;
        }
        let ok = op.run(&mut tx).await;
        let end = if ok {
            "RELEASE SAVEPOINT w"
        } else {
            "ROLLBACK TO SAVEPOINT w"
        };
        let ended = savepoint(&mut tx, end).await;
        done.push(op);
        if let Err(e) = ended {
            broken = Some(e);
            break;
        }
    }
    rest.extend(ops);
    if let Some(e) = broken {
        // The transaction cannot go on (a lost connection): nothing of it stands.
        tracing::warn!(error = %e, writes = done.len(), "a batch of writes was abandoned");
        if let Err(e) = tx.rollback().await {
            tracing::debug!(error = %e, "rollback of an abandoned batch failed");
        }
        let e = Arc::new(e);
        for op in done {
            op.answer(Err(e.clone()));
        }
        return rest;
    }
    let committed = tx.commit().await.map_err(Arc::new);
    if committed.is_ok() {
        counters.committed(done.len());
    }
    for op in done {
        op.answer(committed.clone());
    }
    rest
}

async fn savepoint(tx: &mut Tx<'static>, statement: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(statement).execute(&mut **tx).await.map(|_| ())
}
