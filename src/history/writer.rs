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
use std::time::Duration;

use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;

use super::sqlite::{Db, Retention, StoreError, SyncMode};
use crate::message::{Message, Timestamp};
use crate::metrics::Metrics;
use crate::room::{NewMessage, Room};

/// Most posts committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// How often an idle writer applies `--max-age` to the whole file.
const AGE_SWEEP: Duration = Duration::from_secs(600);

/// The answer to one post: the stored message, or why it was not stored.
pub type Reply = Result<Arc<Message>, StoreError>;

struct Job {
    room: Arc<Room>,
    new: NewMessage,
    time: Timestamp,
    reply: Sender<Reply>,
}

/// Handle on the writer thread.
#[derive(Debug)]
pub struct Writer {
    jobs: Sender<Job>,
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
        let (jobs, rx) = async_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("smolchat-db".into())
            .spawn(move || run(Some(db), rx, config, metrics))?;
        Ok(Writer {
            jobs,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a post whose room has reserved a slot for it; the returned
    /// channel yields the answer once the commit is done.
    pub(crate) fn submit(
        &self,
        room: Arc<Room>,
        new: NewMessage,
        time: Timestamp,
    ) -> Receiver<Reply> {
        let (reply, answer) = async_channel::bounded(1);
        if let Err(e) = self.jobs.try_send(Job {
            room,
            new,
            time,
            reply,
        }) {
            // Only after `close`: give the slot back and say so.
            let job = e.into_inner();
            job.room.release();
            let _ = job
                .reply
                .try_send(Err(StoreError("the server is shutting down".into())));
        }
        answer
    }

    /// Commits what is queued, checkpoints, and stops the thread.
    pub fn close(&self) {
        self.jobs.close();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(mut db: Option<Db>, jobs: Receiver<Job>, config: WriterConfig, metrics: Arc<Metrics>) {
    loop {
        let first = smol::block_on(async { Some(jobs.recv().await) }.or(async {
            smol::Timer::after(AGE_SWEEP).await;
            None
        }));
        let first = match first {
            Some(Ok(job)) => job,
            Some(Err(_)) => break, // closed and drained
            None => {
                if let (Some(db), Some(cutoff)) = (db.as_mut(), cutoff(&config)) {
                    match db.prune_older_than(cutoff) {
                        Ok(n) if n > 0 => log::info!("deleted {n} messages older than --max-age"),
                        Ok(_) => {}
                        Err(e) => log::warn!("{e}"),
                    }
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if db.is_none() {
            db = reopen(&config);
        }
        commit(&mut db, batch, &config, &metrics);
    }
    if let Some(db) = db {
        if let Err(e) = db.checkpoint() {
            log::warn!("{e}");
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
    // Number each room's messages from its next id, in arrival order.
    let mut next: Vec<(*const Room, u64)> = Vec::new();
    let messages: Vec<Message> = batch
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
            Message {
                id,
                room: job.room.name().clone(),
                user: job.new.user.clone(),
                text: job.new.text.clone(),
                time: job.time,
                spans: job.new.spans.clone(),
            }
        })
        .collect();
    let cutoff = cutoff(config);
    let result = match db.as_mut() {
        Some(db) => db.write(
            &messages.iter().collect::<Vec<_>>(),
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
                .fetch_add(messages.len() as u64, Relaxed);
            for (job, msg) in batch.into_iter().zip(messages) {
                let msg = job.room.deliver_committed(msg);
                if let Some(cutoff) = cutoff {
                    job.room.prune_older_than(cutoff);
                }
                let _ = job.reply.try_send(Ok(msg));
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
