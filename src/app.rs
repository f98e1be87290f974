//! `App`: the shared state every connection works on, behind a cheap
//! `Clone` handle.
//!
//! It owns the validated config, the rooms in memory, the memory budget,
//! the metrics, the rate limiter, the transform pipeline and the shutdown
//! signal.
//!
//! Rooms come into memory on first use: created, or, with a database, read
//! from it (the reader thread; nothing is read at start, so a large file
//! costs nothing until its rooms are asked for). What stays in memory is
//! bounded twice: `--max-rooms` rooms, and `--memory-limit` bytes of
//! messages ([`crate::memory`]). When the budget is exceeded, [`App::reclaim`]
//! evicts messages:
//!
//! - with a database, the oldest in-memory messages of the least recently
//!   used rooms go first (they are still in the file, and reads that need
//!   them are served from it), and rooms with no stream and no post in
//!   flight leave memory as a whole;
//! - without one (`--db :memory:`), the oldest messages across all rooms
//!   go (a resume past them gets `gap`); rooms stay, or their ids would
//!   start over.
//!
//! What cannot be evicted is a message still queued for a slow subscriber;
//! if the budget is full of those, new posts are refused until the
//! subscriber catches up or is cut ([`App::admit`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::accounts::Accounts;
use crate::config::Config;
#[cfg(feature = "redis")]
use crate::history::redis::RedisHistory;
use crate::history::sqlite::{Db, LoadedRoom, StoreError};
use crate::history::writer::WriterConfig;
use crate::history::{Reader, Store, Writer};
use crate::http::reply::{ApiError, Cors};
use crate::memory::Memory;
use crate::message::RoomName;
use crate::metrics::Metrics;
use crate::rate::RateLimiter;
use crate::room::{Room, RoomInfo};
use crate::shutdown::{PerAddress, Shutdown, Tracker};
use crate::transform::Pipeline;

/// What a room in memory costs besides its messages: its state and
/// presence, and its queue, whose `buffer` slots (16 bytes each) are
/// allocated up front. Charged to the budget while the room is in memory.
pub fn room_overhead(buffer: usize) -> usize {
    1536 + 16 * buffer
}

/// An eviction pass brings memory down to this share of the budget, so the
/// next posts do not each start a pass.
const RECLAIM_TO_PERCENT: usize = 90;

/// A handle on the server's shared state.
#[derive(Clone, Debug)]
pub struct App(Arc<Shared>);

/// The server's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where history is kept beyond memory.
    pub store: Store,
    /// Reads what memory does not hold (with a database).
    pub reader: Option<Reader>,
    /// Users, tokens, access rules and sessions.
    pub accounts: Arc<Accounts>,
    /// The memory budget messages are charged to.
    pub memory: Arc<Memory>,
    /// Post rate limit.
    pub rate: RateLimiter,
    /// Answers remembered for `Idempotency-Key` (without `--redis`).
    pub idempotency: Arc<crate::http::idempotency::Keys>,
    /// Message transforms.
    pub pipeline: Pipeline,
    /// Fired on SIGINT/SIGTERM.
    pub shutdown: Shutdown,
    /// Open connections.
    pub tracker: Tracker,
    /// Open connections (or, behind a trusted proxy, streams) per client.
    pub peers: PerAddress,
    /// CORS policy.
    pub cors: Cors,
    /// With `--redis`: the other instances' messages and presence.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Rooms in memory by name; the lock is never held across an `.await`.
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
    /// Ticks for "least recently used".
    clock: AtomicU64,
    /// Rooms that left memory so far: a load that started before one left
    /// may have read a state that is no longer the newest.
    departures: AtomicU64,
    /// One eviction pass at a time.
    reclaiming: Mutex<()>,
}

impl Deref for App {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl App {
    /// Opens the history store `config` names and builds the state. Fails
    /// (exit code 1 in `main`) if the database cannot be opened or written.
    /// Reads no room: they are loaded on first use.
    pub fn open(config: Config, pipeline: Pipeline) -> Result<Self, StoreError> {
        let metrics = Arc::new(Metrics::default());
        let memory = Arc::new(Memory::new(config.memory_limit));
        #[cfg(not(feature = "redis"))]
        if config.redis.is_some() {
            return Err(StoreError(crate::history::NO_REDIS.into()));
        }
        #[cfg(feature = "redis")]
        if let Some(url) = &config.redis {
            let redis = Arc::new(RedisHistory::open(url, config.history).map_err(StoreError)?);
            let accounts =
                Arc::new(Accounts::open_redis(url, config.default_access).map_err(StoreError)?);
            accounts
                .watch()
                .map_err(|e| StoreError(format!("cannot start a thread: {e}")))?;
            let reader = Reader::redis(redis.clone(), memory.clone());
            let mut app = Self::new(
                config,
                pipeline,
                (metrics, memory, accounts),
                Store::Redis(redis.clone()),
                Some(reader),
            );
            Arc::get_mut(&mut app.0).expect("not shared yet").cluster =
                Some(crate::cluster::Cluster::new(redis));
            return Ok(app);
        }
        if config.db == ":memory:" {
            let accounts =
                Arc::new(Accounts::open(None, config.default_access).map_err(StoreError)?);
            return Ok(Self::new(
                config,
                pipeline,
                (metrics, memory, accounts),
                Store::Memory,
                None,
            ));
        }
        let path = std::path::PathBuf::from(&config.db);
        let db = Db::open(&path, config.sync)?;
        let writer_config = WriterConfig {
            path: path.clone(),
            sync: config.sync,
            keep: config.history,
            max_age: config.max_age,
        };
        let thread = |e: std::io::Error| StoreError(format!("cannot start a database thread: {e}"));
        let writer = Writer::start(db, writer_config, metrics.clone()).map_err(thread)?;
        let reader = Reader::start(path.clone(), memory.clone()).map_err(thread)?;
        let accounts = Arc::new(
            Accounts::open(Some(path), config.default_access)
                .map_err(|e| StoreError(format!("database {}: {e}", config.db)))?,
        );
        accounts.watch().map_err(thread)?;
        Ok(Self::new(
            config,
            pipeline,
            (metrics, memory, accounts),
            Store::Sqlite(writer),
            Some(reader),
        ))
    }

    /// State with history in memory only.
    pub fn in_memory(config: Config, pipeline: Pipeline) -> Self {
        let memory = Arc::new(Memory::new(config.memory_limit));
        let accounts = Arc::new(
            Accounts::open(None, config.default_access).expect("no file, nothing to fail"),
        );
        Self::new(
            config,
            pipeline,
            (Arc::new(Metrics::default()), memory, accounts),
            Store::Memory,
            None,
        )
    }

    fn new(
        config: Config,
        pipeline: Pipeline,
        (metrics, memory, accounts): (Arc<Metrics>, Arc<Memory>, Arc<Accounts>),
        store: Store,
        reader: Option<Reader>,
    ) -> Self {
        App(Arc::new(Shared {
            metrics,
            store,
            reader,
            memory,
            accounts,
            rate: RateLimiter::new(config.rate, config.rate_burst),
            idempotency: Arc::default(),
            cors: Cors::new(&config.allow_origins),
            pipeline,
            shutdown: Shutdown::new(),
            tracker: Tracker::default(),
            peers: PerAddress::default(),
            cluster: None,
            rooms: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            departures: AtomicU64::new(0),
            reclaiming: Mutex::new(()),
            config,
        }))
    }

    fn rooms_lock(&self) -> MutexGuard<'_, HashMap<RoomName, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, room: &Room) {
        room.touch(self.clock.fetch_add(1, Relaxed));
    }

    /// The room if it is in memory.
    pub fn room(&self, name: &RoomName) -> Option<Arc<Room>> {
        let room = self.rooms_lock().get(name).cloned()?;
        self.touch(&room);
        Some(room)
    }

    /// The room: from memory, else from the database, else a new one if
    /// `create` (otherwise `None`). Creating or loading one more room than
    /// `--max-rooms` first evicts an idle room (with a database), else
    /// fails.
    pub async fn room_for(
        &self,
        name: &RoomName,
        create: bool,
    ) -> Result<Option<Arc<Room>>, ApiError> {
        loop {
            if let Some(room) = self.room(name) {
                return Ok(Some(room));
            }
            let departures = self.departures.load(Relaxed);
            #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
            let mut epoch = None;
            let loaded = match (&self.cluster, &self.store, &self.reader) {
                #[cfg(feature = "redis")]
                (Some(cluster), Store::Redis(redis), _) => {
                    // Subscribed before the read: whatever is published
                    // after it reaches the room's feed.
                    cluster.subscribe(name).await;
                    let found = redis
                        .room(name, self.config.replay)
                        .await
                        .map_err(|_| ApiError::StoreUnavailable)?;
                    found.map(|(room, e)| {
                        epoch = Some(e);
                        room
                    })
                }
                (_, _, Some(reader)) => reader
                    .room(name, self.config.replay)
                    .await
                    .map_err(|e| ApiError::StoreRead(e.0))?,
                _ => None,
            };
            if loaded.is_none() && !create {
                return Ok(None);
            }
            let mut rooms = self.rooms_lock();
            if let Some(room) = rooms.get(name) {
                // Loaded by someone else meanwhile.
                let room = room.clone();
                drop(rooms);
                self.touch(&room);
                return Ok(Some(room));
            }
            if self.departures.load(Relaxed) != departures {
                // A room left memory while we read: ours may be it, as it
                // was before its last posts. Read again.
                continue;
            }
            if rooms.len() >= self.config.max_rooms && !self.evict_idle_room(&mut rooms) {
                return Err(ApiError::TooManyRooms);
            }
            let room = Arc::new(self.make_room(name, loaded));
            self.memory.charge(room_overhead(self.config.buffer));
            rooms.insert(name.clone(), room.clone());
            drop(rooms);
            if self.cluster.is_some() {
                // A new room's counter starts with its first post; until
                // then any epoch is the one that post will create.
                self.attach(&room, epoch.unwrap_or_default());
            }
            self.touch(&room);
            return Ok(Some(room));
        }
    }

    fn make_room(&self, name: &RoomName, loaded: Option<LoadedRoom>) -> Room {
        let c = &self.config;
        let room = match loaded {
            Some(l) => Room::restore(
                l.name,
                c.buffer,
                c.history,
                self.memory.clone(),
                l.last_id,
                l.messages,
                l.complete,
            ),
            None => Room::new(name.clone(), c.buffer, c.history, self.memory.clone()),
        };
        room.set_stall_budget(c.stall_budget);
        room
    }

    /// Removes the least recently used room that nothing uses, if rooms can
    /// leave memory (with a database); whether one left.
    fn evict_idle_room(&self, rooms: &mut HashMap<RoomName, Arc<Room>>) -> bool {
        if self.reader.is_none() {
            return false;
        }
        // Only the map holds it, and taking it from the map needs the lock
        // we hold: no stream, no post in flight, nobody about to start one.
        // With Redis, the room's feed holds it too.
        let holders = if self.cluster.is_some() { 2 } else { 1 };
        let victim = rooms
            .iter()
            .filter(|(_, r)| r.is_idle(holders))
            .min_by_key(|(_, r)| r.last_used())
            .map(|(name, _)| name.clone());
        match victim {
            Some(name) => {
                rooms.remove(&name);
                self.departures.fetch_add(1, Relaxed);
                self.memory.release(room_overhead(self.config.buffer));
                if let Some(c) = &self.cluster {
                    c.detach(&name);
                }
                true
            }
            None => false,
        }
    }

    /// Drops a room from memory whatever uses it (with `--redis`, when this
    /// instance can no longer follow its history): its streams end, and
    /// the next use reads it again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn forget_room(&self, name: &RoomName) {
        let room = self.rooms_lock().remove(name);
        if let Some(room) = room {
            self.departures.fetch_add(1, Relaxed);
            self.memory.release(room_overhead(self.config.buffer));
            room.close();
        }
        if let Some(c) = &self.cluster {
            c.detach(name);
        }
    }

    /// Refuses a new post when the memory budget is full and nothing can
    /// be evicted (everything left is queued for slow subscribers).
    pub fn admit(&self) -> Result<(), ApiError> {
        if self.memory.over() {
            self.reclaim();
            if self.memory.over() {
                return Err(ApiError::MemoryFull);
            }
        }
        Ok(())
    }

    /// Evicts messages (and, with a database, idle rooms) until memory is
    /// at [`RECLAIM_TO_PERCENT`] % of the budget, or nothing more can go.
    pub fn reclaim(&self) {
        if !self.memory.over() {
            return;
        }
        let _one_pass = self.reclaiming.lock().unwrap_or_else(|e| e.into_inner());
        if !self.memory.over() {
            return;
        }
        let done = || !self.memory.above(RECLAIM_TO_PERCENT);
        let rooms: Vec<Arc<Room>> = self.rooms_lock().values().cloned().collect();
        if self.reader.is_some() {
            let mut rooms = rooms;
            rooms.sort_by_key(|r| r.last_used());
            for room in &rooms {
                while !done() && room.evict_oldest(32, true) > 0 {}
                if done() {
                    return;
                }
            }
            drop(rooms);
            // Still over: rooms with nothing left in memory, and idle, go.
            let mut map = self.rooms_lock();
            while !done() && self.evict_idle_room(&mut map) {}
        } else {
            // The oldest messages across rooms first.
            let mut oldest: BinaryHeap<_> = rooms
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some(Reverse((r.oldest_time()?, i))))
                .collect();
            while !done() {
                let Some(Reverse((_, i))) = oldest.pop() else {
                    break;
                };
                // A room whose oldest message is still queued has nothing
                // to give (see MemoryHistory::evict_oldest): it drops out.
                if rooms[i].evict_oldest(8, false) > 0 {
                    if let Some(t) = rooms[i].oldest_time() {
                        oldest.push(Reverse((t, i)));
                    }
                }
            }
        }
    }

    /// Every room's summary, sorted by name: the rooms in memory, and with
    /// a database the rooms only the file holds (nobody online).
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ApiError> {
        let loaded: Vec<Arc<Room>> = self.rooms_lock().values().cloned().collect();
        let mut infos: BTreeMap<RoomName, RoomInfo> = loaded
            .iter()
            .map(|r| (r.name().clone(), r.info()))
            .collect();
        if let Some(reader) = &self.reader {
            let stored = reader.rooms().await.map_err(|e| ApiError::StoreRead(e.0))?;
            let mut elsewhere = Vec::new();
            for (name, last_id) in stored {
                infos.entry(name.clone()).or_insert_with(|| {
                    elsewhere.push(name.clone());
                    RoomInfo {
                        room: name,
                        online: 0,
                        users: Vec::new(),
                        last_id,
                    }
                });
            }
            // Rooms this instance does not hold may be busy on others.
            if self.cluster.is_some() && !elsewhere.is_empty() {
                for (name, (online, users)) in self.cluster_presence(&elsewhere).await {
                    if let Some(info) = infos.get_mut(&name) {
                        info.online = online;
                        info.users = users;
                    }
                }
            }
        }
        Ok(infos.into_values().collect())
    }

    /// Commits what the database writer holds and stops it.
    pub fn close_store(&self) {
        if let Store::Sqlite(w) = &self.store {
            w.close();
        }
    }

    /// Applies `--max-age` to every room's in-memory window.
    pub fn prune_expired(&self, now: crate::message::Timestamp) {
        if let Some(age) = self.config.max_age {
            let cutoff =
                crate::message::Timestamp(now.0 - i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            let rooms: Vec<Arc<Room>> = self.rooms_lock().values().cloned().collect();
            for room in rooms {
                room.prune_older_than(cutoff);
            }
        }
    }

    /// Rooms in memory.
    pub fn room_count(&self) -> usize {
        self.rooms_lock().len()
    }
}
