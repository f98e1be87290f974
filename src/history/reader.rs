//! The database reader: one thread with a read-only connection that answers
//! what memory does not hold.
//!
//! Rooms are read from the file when they are first used (not at start,
//! so a large file costs no memory until its rooms are asked for), and
//! when the memory budget has evicted the older messages a read needs: a
//! resume with `Last-Event-ID`, a history page, a replay. Each answer comes
//! back over a one-shot `async-channel`, so the asking task waits without
//! blocking an executor thread. Message frames are encoded here too, off
//! the executor, and charged to the memory budget like any other frame.
//!
//! One thread reads at a time: a Pi's SD card gains nothing from parallel
//! reads, and the queue in front of it bounds what reads cost at once.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};

#[cfg(feature = "redis")]
use super::redis::RedisHistory;
use super::sqlite::{LoadedRoom, ReadOnly, StoreError};
use super::Query;
use crate::event::{encode_in, Event, Frame};
use crate::memory::Memory;
use crate::message::RoomName;
use crate::room::Committed;

/// Most messages one read returns; a read that asks for more returns the
/// rest as a follow-up query ([`Found::next`]). 64 messages are at most a
/// few hundred KiB, so what a resume or a history page holds at once is
/// bounded whatever it asked for.
pub const BATCH: usize = 64;

/// What a store read returns.
#[derive(Debug)]
pub struct Found {
    /// The messages' frames, oldest first.
    pub frames: Vec<Frame>,
    /// The id of the first of them.
    pub first_read: Option<u64>,
    /// The oldest id the file holds for the room.
    pub first_held: Option<u64>,
    /// What is left to read, if the query asked for more than a batch.
    pub next: Option<Query>,
}

enum Job {
    Rooms(async_channel::Sender<Result<Vec<(RoomName, u64)>, StoreError>>),
    Room {
        name: RoomName,
        n: usize,
        reply: async_channel::Sender<Result<Option<LoadedRoom>, StoreError>>,
    },
    Read {
        name: RoomName,
        query: Query,
        reply: async_channel::Sender<Result<Found, StoreError>>,
    },
}

/// Handle on the reader thread, or on Redis (`--redis`), which answers the
/// same reads.
#[derive(Debug)]
pub struct Reader {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(mpsc::Sender<Job>),
    #[cfg(feature = "redis")]
    Redis(Arc<RedisHistory>, Arc<Memory>),
}

impl Reader {
    /// Starts the reader thread for the file at `path` (which the writer
    /// has created), charging the frames it makes to `memory`.
    pub fn start(path: PathBuf, memory: Arc<Memory>) -> std::io::Result<Reader> {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("smolchat-read".into())
            .spawn(move || run(path, rx, memory))?;
        Ok(Reader {
            backend: Backend::Sqlite(jobs),
        })
    }

    /// Reads from Redis instead, charging frames to `memory`.
    #[cfg(feature = "redis")]
    pub fn redis(redis: Arc<RedisHistory>, memory: Arc<Memory>) -> Reader {
        Reader {
            backend: Backend::Redis(redis, memory),
        }
    }

    /// Every room in the file with its last id.
    pub async fn rooms(&self) -> Result<Vec<(RoomName, u64)>, StoreError> {
        #[cfg(feature = "redis")]
        if let Backend::Redis(r, _) = &self.backend {
            return r.rooms().await;
        }
        let (tx, rx) = async_channel::bounded(1);
        self.ask(Job::Rooms(tx), rx).await
    }

    /// A room's last id and its newest `n` messages, if the file has it.
    pub async fn room(&self, name: &RoomName, n: usize) -> Result<Option<LoadedRoom>, StoreError> {
        #[cfg(feature = "redis")]
        if let Backend::Redis(r, _) = &self.backend {
            return Ok(r.room(name, n).await?.map(|(room, _)| room));
        }
        let (reply, rx) = async_channel::bounded(1);
        let job = Job::Room {
            name: name.clone(),
            n,
            reply,
        };
        self.ask(job, rx).await
    }

    /// The messages `query` finds in room `name`.
    pub async fn read(&self, name: &RoomName, query: Query) -> Result<Found, StoreError> {
        #[cfg(feature = "redis")]
        if let Backend::Redis(r, memory) = &self.backend {
            let b = r.read(name, &query, BATCH).await?;
            return Ok(Found {
                first_read: b.messages.first().map(Committed::id),
                frames: b.messages.iter().map(|m| frame(m, memory)).collect(),
                first_held: b.first_held,
                next: b.next,
            });
        }
        let (reply, rx) = async_channel::bounded(1);
        let job = Job::Read {
            name: name.clone(),
            query,
            reply,
        };
        self.ask(job, rx).await
    }

    async fn ask<T>(
        &self,
        job: Job,
        rx: async_channel::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let gone = || StoreError("the database reader stopped".into());
        #[allow(irrefutable_let_patterns)] // without the redis feature
        let Backend::Sqlite(jobs) = &self.backend
        else {
            return Err(gone());
        };
        jobs.send(job).map_err(|_| gone())?;
        rx.recv().await.map_err(|_| gone())?
    }
}

/// The frame of a stored message or delete event.
pub fn frame(stored: &Committed, memory: &Arc<Memory>) -> Frame {
    match stored {
        Committed::Message(m) => encode_in(&Event::Message(m), memory),
        Committed::Delete { id, target, .. } => encode_in(
            &Event::Delete {
                id: *id,
                target: *target,
            },
            memory,
        ),
    }
}

fn run(path: PathBuf, jobs: mpsc::Receiver<Job>, memory: Arc<Memory>) {
    let mut conn: Option<ReadOnly> = None;
    while let Ok(job) = jobs.recv() {
        // Opened on first use, and again after a failure: the file may
        // have been unreadable for a moment (a full disk, a busy lock).
        let db = match &conn {
            Some(db) => Ok(db),
            None => ReadOnly::open(&path).map(|db| &*conn.insert(db)),
        };
        let failed = match job {
            Job::Rooms(reply) => {
                let r = db.and_then(ReadOnly::rooms);
                let failed = r.is_err();
                let _ = reply.try_send(r);
                failed
            }
            Job::Room { name, n, reply } => {
                let r = db.and_then(|db| db.room(&name, n));
                let failed = r.is_err();
                let _ = reply.try_send(r);
                failed
            }
            Job::Read { name, query, reply } => {
                let r = db
                    .and_then(|db| db.read(&name, &query, BATCH))
                    .map(|b| Found {
                        first_read: b.messages.first().map(Committed::id),
                        frames: b.messages.iter().map(|m| frame(m, &memory)).collect(),
                        first_held: b.first_held,
                        next: b.next,
                    });
                let failed = r.is_err();
                let _ = reply.try_send(r);
                failed
            }
        };
        if failed {
            conn = None;
        }
    }
}
