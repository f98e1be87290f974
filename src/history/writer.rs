//! The database writer: one thread that owns the SQLite connection and
//! commits posts in groups.
//!
//! Posts arrive over an `async-channel` after their room has reserved a
//! queue slot for them. The thread takes everything queued (up to
//! [`MAX_BATCH`]), numbers the messages, writes them and the retention
//! deletes in one transaction, commits, and only then delivers each message
//! into its reserved slot and answers its poster. Messages that arrive while
//! a commit (and its fsync) is in flight wait for the next transaction, so
//! under load one fsync covers many messages: group commit.
//!
//! The thread is the only one that gives out ids while a database is in
//! use, so it numbers a batch from each room's next id and moves the room
//! forward only after the commit: a failed commit uses no id, and the posts
//! in it get `503`. After a failure the connection is reopened before the
//! next batch, so the store recovers when the disk does.
//!
//! No async executor thread ever touches the database.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use async_channel::{Receiver, Sender};

use super::sqlite::{Db, Retention, StoreError, SyncMode};
use crate::message::Timestamp;
use crate::metrics::Metrics;
use crate::room::{Change, Committed, Room};

/// Most posts committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// How often the writer applies `--max-age` to the whole file (rooms that
/// get posts are also pruned in every commit).
const AGE_SWEEP: Duration = Duration::from_secs(600);
/// Longest a busy writer waits to grow a batch (see [`gather`]).
const COMMIT_DELAY: Duration = Duration::from_micros(300);

/// The answer to one post: the stored message and its frame, or why it
/// was not stored.
pub type Reply = Result<super::Entry, StoreError>;

/// What the writer thread receives.
enum Msg {
    Job(Job),
    /// Commit what is queued and stop.
    Close,
}

struct Job {
    room: Arc<Room>,
    change: Change,
    time: Timestamp,
    reply: Sender<Reply>,
}

/// Handle on the writer thread.
#[derive(Debug)]
pub struct Writer {
    jobs: mpsc::Sender<Msg>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("room", self.room.name())
            .finish()
    }
}

/// What the writer needs to know besides the database.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Where the file is, to reopen it after a failure.
    pub path: std::path::PathBuf,
    /// `--sync`.
    pub sync: SyncMode,
    /// `--history`.
    pub keep: usize,
    /// `--max-age`.
    pub max_age: Option<Duration>,
}

impl Writer {
    /// Starts the writer thread on an open database.
    pub fn start(db: Db, config: WriterConfig, metrics: Arc<Metrics>) -> std::io::Result<Writer> {
        // A std channel rather than async-channel: the writer is a plain
        // thread, and `recv_timeout` waits on a futex, where a timed async
        // receive would wake the async-io reactor thread on every batch
        // (measured: ~10 % of the server's CPU under durable load).
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("smolchat-db".into())
            .spawn(move || run(Some(db), rx, config, metrics))?;
        Ok(Writer {
            jobs,
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a post whose room has reserved a slot for it; the returned
    /// channel yields the answer once the commit is done.
    pub(crate) fn submit(
        &self,
        room: Arc<Room>,
        change: Change,
        time: Timestamp,
    ) -> Receiver<Reply> {
        let (reply, answer) = async_channel::bounded(1);
        let job = Job {
            room,
            change,
            time,
            reply,
        };
        let refused = if self.closed.load(Relaxed) {
            Some(job)
        } else {
            self.jobs.send(Msg::Job(job)).err().and_then(|e| match e.0 {
                Msg::Job(job) => Some(job),
                Msg::Close => None,
            })
        };
        if let Some(job) = refused {
            // Only after `close`: give the slot back and say so.
            job.room.release();
            let _ = job
                .reply
                .try_send(Err(StoreError("the server is shutting down".into())));
        }
        answer
    }

    /// Commits what is queued, checkpoints, and stops the thread.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        let _ = self.jobs.send(Msg::Close);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(mut db: Option<Db>, jobs: mpsc::Receiver<Msg>, config: WriterConfig, metrics: Arc<Metrics>) {
    let mut last_sweep = Instant::now();
    let mut last_batch = 0;
    let mut closing = false;
    while !closing {
        let first = match jobs.recv() {
            Ok(Msg::Job(job)) => job,
            Ok(Msg::Close) | Err(_) => break,
        };
        let mut batch = vec![first];
        closing = gather(&jobs, &mut batch, last_batch);
        last_batch = batch.len();
        if db.is_none() {
            db = reopen(&config);
        }
        commit(&mut db, batch, &config, &metrics);
        if last_sweep.elapsed() >= AGE_SWEEP {
            last_sweep = Instant::now();
            sweep(db.as_mut(), &config);
        }
    }
    // Posts that raced with the close are committed too.
    let stragglers: Vec<Job> = jobs
        .try_iter()
        .filter_map(|m| match m {
            Msg::Job(job) => Some(job),
            Msg::Close => None,
        })
        .collect();
    if !stragglers.is_empty() {
        commit(&mut db, stragglers, &config, &metrics);
    }
    if let Some(db) = db {
        if let Err(e) = db.checkpoint() {
            log::warn!("{e}");
        }
    }
}

/// Adds every queued job to `batch`, then, while it holds fewer than the
/// last batch did (`expect`), waits up to [`COMMIT_DELAY`] for more: the
/// clients answered by the last commit are usually a network round trip
/// away from their next post, and one fsync for all of them beats one each.
/// A lone poster (last batch of one) never waits. Returns true once the
/// writer is asked to close.
fn gather(jobs: &mpsc::Receiver<Msg>, batch: &mut Vec<Job>, expect: usize) -> bool {
    let deadline = Instant::now() + COMMIT_DELAY;
    let take = |m: Msg, batch: &mut Vec<Job>| match m {
        Msg::Job(job) => {
            batch.push(job);
            false
        }
        Msg::Close => true,
    };
    loop {
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(m) => {
                    if take(m, batch) {
                        return true;
                    }
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        if batch.len() >= expect.min(MAX_BATCH) || now >= deadline {
            return false;
        }
        match jobs.recv_timeout(deadline - now) {
            Ok(m) => {
                if take(m, batch) {
                    return true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return false,
            Err(mpsc::RecvTimeoutError::Disconnected) => return true,
        }
    }
}

/// Applies `--max-age` to the whole file.
fn sweep(db: Option<&mut Db>, config: &WriterConfig) {
    if let (Some(db), Some(cutoff)) = (db, cutoff(config)) {
        match db.prune_older_than(cutoff) {
            Ok(n) if n > 0 => log::info!("deleted {n} messages older than --max-age"),
            Ok(_) => {}
            Err(e) => log::warn!("{e}"),
        }
    }
}

fn cutoff(config: &WriterConfig) -> Option<Timestamp> {
    config
        .max_age
        .map(|age| Timestamp(Timestamp::now().0 - i64::try_from(age.as_secs()).unwrap_or(i64::MAX)))
}

fn reopen(config: &WriterConfig) -> Option<Db> {
    match Db::open(&config.path, config.sync) {
        Ok(db) => {
            log::info!("database {}: reopened", config.path.display());
            Some(db)
        }
        Err(e) => {
            log::error!("{e}");
            None
        }
    }
}

/// Numbers, writes and commits one batch, then delivers or refuses it.
fn commit(db: &mut Option<Db>, batch: Vec<Job>, config: &WriterConfig, metrics: &Metrics) {
    // Number each room's changes from its next id, in arrival order.
    let mut next: Vec<(*const Room, u64)> = Vec::new();
    let changes: Vec<Committed> = batch
        .iter()
        .map(|job| {
            let key = Arc::as_ptr(&job.room);
            let id = match next.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    let n = job.room.next_id();
                    next.push((key, n));
                    n
                }
            };
            job.room.committed(id, job.time, job.change.clone())
        })
        .collect();
    let cutoff = cutoff(config);
    let result = match db.as_mut() {
        Some(db) => db.write(
            &batch
                .iter()
                .zip(&changes)
                .map(|(job, c)| (job.room.name(), c))
                .collect::<Vec<_>>(),
            Retention {
                keep: config.keep,
                cutoff,
            },
        ),
        None => Err(StoreError(format!(
            "database {}: not open",
            config.path.display()
        ))),
    };
    match result {
        Ok(()) => {
            metrics.store_commits.fetch_add(1, Relaxed);
            metrics
                .store_messages
                .fetch_add(changes.len() as u64, Relaxed);
            for (job, change) in batch.into_iter().zip(changes) {
                let entry = job.room.deliver_committed(change);
                if let Some(cutoff) = cutoff {
                    job.room.prune_older_than(cutoff);
                }
                let _ = job.reply.try_send(Ok(entry));
            }
        }
        Err(e) => {
            metrics.store_errors.fetch_add(1, Relaxed);
            log::error!("could not store {} messages: {e}", batch.len());
            for job in batch {
                job.room.release();
                let _ = job.reply.try_send(Err(e.clone()));
            }
            // A fresh connection for the next batch: it recovers once the
            // disk does, whatever state this one was left in.
            *db = None;
            *db = reopen(config);
        }
    }
}
