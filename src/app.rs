//! `App`: the shared state every connection works on, behind a cheap
//! `Clone` handle.
//!
//! It owns the validated config, the rooms, the metrics, the rate limiter,
//! the transform pipeline and the shutdown signal. Rooms appear on first use
//! (a post or a stream) and are bounded by `--max-rooms`.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::history::sqlite::{Db, LoadedRoom, StoreError};
use crate::history::writer::WriterConfig;
use crate::history::{Store, Writer};
use crate::http::reply::{ApiError, Cors};
use crate::message::RoomName;
use crate::metrics::Metrics;
use crate::rate::RateLimiter;
use crate::room::{Room, RoomInfo};
use crate::shutdown::{Shutdown, Tracker};
use crate::transform::Pipeline;

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
    /// Post rate limit.
    pub rate: RateLimiter,
    /// Message transforms.
    pub pipeline: Pipeline,
    /// Fired on SIGINT/SIGTERM.
    pub shutdown: Shutdown,
    /// Open connections.
    pub tracker: Tracker,
    /// CORS policy.
    pub cors: Cors,
    /// Rooms by name; the lock is never held across an `.await`.
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
}

impl Deref for App {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl App {
    /// Opens the history store `config` names, restores its rooms, and
    /// builds the state. Fails (exit code 1 in `main`) if the database
    /// cannot be opened, read or written.
    pub fn open(config: Config, pipeline: Pipeline) -> Result<Self, StoreError> {
        let metrics = Arc::new(Metrics::default());
        if config.db == ":memory:" {
            return Ok(Self::new(
                config,
                pipeline,
                metrics,
                Store::Memory,
                Vec::new(),
            ));
        }
        let path = std::path::PathBuf::from(&config.db);
        let db = Db::open(&path, config.sync)?;
        let loaded = db.load(config.history)?;
        let writer_config = WriterConfig {
            path,
            sync: config.sync,
            keep: config.history,
            max_age: config.max_age,
        };
        let writer = Writer::start(db, writer_config, metrics.clone())
            .map_err(|e| StoreError(format!("cannot start the database thread: {e}")))?;
        Ok(Self::new(
            config,
            pipeline,
            metrics,
            Store::Sqlite(writer),
            loaded,
        ))
    }

    /// State with history in memory only.
    pub fn in_memory(config: Config, pipeline: Pipeline) -> Self {
        Self::new(
            config,
            pipeline,
            Arc::new(Metrics::default()),
            Store::Memory,
            Vec::new(),
        )
    }

    fn new(
        config: Config,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        store: Store,
        loaded: Vec<LoadedRoom>,
    ) -> Self {
        let rooms = loaded
            .into_iter()
            .map(|r| {
                let room = Room::restore(
                    r.name.clone(),
                    config.buffer,
                    config.history,
                    r.last_id,
                    r.messages,
                );
                (r.name, Arc::new(room))
            })
            .collect();
        App(Arc::new(Shared {
            metrics,
            store,
            rate: RateLimiter::new(config.rate, config.rate_burst),
            cors: Cors::new(&config.allow_origins),
            pipeline,
            shutdown: Shutdown::new(),
            tracker: Tracker::default(),
            rooms: Mutex::new(rooms),
            config,
        }))
    }

    fn rooms_lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room, if it exists.
    pub fn room(&self, name: &RoomName) -> Option<Arc<Room>> {
        self.rooms_lock().get(name).cloned()
    }

    /// The room, created if needed and `--max-rooms` allows.
    pub fn room_or_create(&self, name: &RoomName) -> Result<Arc<Room>, ApiError> {
        let mut rooms = self.rooms_lock();
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if rooms.len() >= self.config.max_rooms {
            return Err(ApiError::TooManyRooms);
        }
        let room = Arc::new(Room::new(
            name.clone(),
            self.config.buffer,
            self.config.history,
        ));
        rooms.insert(name.clone(), room.clone());
        Ok(room)
    }

    /// Every room's summary, sorted by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self.rooms_lock().values().cloned().collect();
        let mut infos: Vec<RoomInfo> = rooms.iter().map(|r| r.info()).collect();
        infos.sort_by(|a, b| a.room.cmp(&b.room));
        infos
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

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms_lock().len()
    }
}
