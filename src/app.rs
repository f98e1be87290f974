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
    pub metrics: Metrics,
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
    /// Builds the state for `config`.
    pub fn new(config: Config, pipeline: Pipeline) -> Self {
        App(Arc::new(Shared {
            metrics: Metrics::default(),
            rate: RateLimiter::new(config.rate, config.rate_burst),
            cors: Cors::new(&config.allow_origins),
            pipeline,
            shutdown: Shutdown::new(),
            tracker: Tracker::default(),
            rooms: Mutex::new(HashMap::new()),
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

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms_lock().len()
    }
}
