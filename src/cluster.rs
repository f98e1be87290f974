//! Several instances on one Redis (`--redis`): how each instance's rooms
//! stay one room.
//!
//! Redis numbers every message with one script ([`crate::history::redis`])
//! and publishes it on the room's channel. Each instance keeps a room in
//! memory as it does with SQLite, and while a room is in memory:
//!
//! - it is subscribed to the room's channel (before the room is read, so
//!   nothing published after the read is missed);
//! - a feed task queues what arrives into the local room strictly in id
//!   order. A message that arrives after a hole (a lost pub/sub message, a
//!   reconnect to Redis, a mailbox that overflowed while the local queue
//!   was full) makes the feed read the hole from the room's stream first:
//!   no loss, no duplicate, in order. If Redis trimmed the hole already, or
//!   the room's counter started over (a new epoch: Redis lost its data),
//!   the room is dropped from memory: its streams end and their clients
//!   resume, getting `gap` like any resume past history.
//!
//! Presence: every half second each instance writes, for each room in
//! memory whose streams changed, who it has online into the room's
//! presence hash, marks itself alive, and reads the other live instances'
//! entries into the room's snapshot. An instance gone without a word stops
//! counting 15 s after its last mark.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event as Notify;
use futures_lite::{FutureExt, StreamExt};

use crate::app::App;
use crate::history::redis::{self, RedisHistory};
use crate::history::Query;
use crate::message::{RoomName, UserName};
use crate::room::{Committed, Offer, Room};

/// Published messages a room's mailbox keeps while its feed is behind;
/// beyond that they are read back from the stream.
const MAILBOX: usize = 256;
/// Messages one hole-filling read takes.
const FILL_BATCH: usize = 64;
/// How often presence is written and read.
const PRESENCE_EVERY: Duration = Duration::from_millis(500);
/// An instance whose last mark is older than this no longer counts.
const ALIVE_FOR: Duration = Duration::from_secs(15);
/// Pause before reconnecting the pub/sub connection.
const RECONNECT: Duration = Duration::from_millis(500);

/// Every instance's last mark, by instance id.
const INSTANCES_KEY: &str = "smolchat:instances";

fn presence_key(room: &RoomName) -> String {
    format!("smolchat:presence:{room}")
}

/// The cluster side of an instance.
#[derive(Debug)]
pub struct Cluster {
    redis: Arc<RedisHistory>,
    /// This instance, in presence entries.
    instance: String,
    feeds: Mutex<HashMap<RoomName, Arc<Feed>>>,
    /// The pub/sub connection's command side, while it is up.
    sink: async_lock::Mutex<Option<::redis::aio::PubSubSink>>,
}

/// One room's feed.
#[derive(Debug)]
struct Feed {
    room: Arc<Room>,
    /// The epoch of the room's counter when it was read (empty for a room
    /// not in Redis yet: its first post sets it).
    epoch: Mutex<String>,
    /// Published changes not yet queued, in id order.
    mailbox: Mutex<VecDeque<Committed>>,
    /// The highest id known to exist.
    target: AtomicU64,
    wake: Notify,
    stopped: AtomicBool,
    /// What this instance last wrote as its presence on the room.
    written: Mutex<Option<(usize, BTreeMap<UserName, usize>)>>,
}

impl Feed {
    /// Whether `epoch` is the room's, adopting it if the room had none.
    fn same_epoch(&self, epoch: &str) -> bool {
        let mut mine = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if mine.is_empty() {
            *mine = epoch.to_string();
        }
        *mine == epoch
    }

    fn raise(&self, id: u64) {
        self.target.fetch_max(id, Ordering::AcqRel);
        self.wake.notify(usize::MAX);
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify(usize::MAX);
    }
}

impl Cluster {
    /// The cluster side for `redis`; nothing runs until [`App::start_cluster`].
    pub fn new(redis: Arc<RedisHistory>) -> Cluster {
        Cluster {
            redis,
            instance: format!("{:016x}", fastrand::u64(..)),
            feeds: Mutex::new(HashMap::new()),
            sink: async_lock::Mutex::new(None),
        }
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the room's channel (if the pub/sub connection is up;
    /// if not, its reconnect subscribes every room in memory).
    pub async fn subscribe(&self, room: &RoomName) {
        let mut sink = self.sink.lock().await;
        if let Some(s) = sink.as_mut() {
            if let Err(e) = s.subscribe(redis::channel(room)).await {
                log::warn!("redis: subscribing to {room}: {e}");
                *sink = None;
            }
        }
    }

    /// Stops the room's feed and unsubscribes.
    pub fn detach(&self, room: &RoomName) {
        if let Some(feed) = self.feeds().remove(room) {
            feed.stop();
            let redis = self.redis.clone();
            let (instance, name) = (self.instance.clone(), room.clone());
            smol::spawn(async move {
                let _ = redis
                    .query::<()>(::redis::cmd("HDEL").arg(presence_key(&name)).arg(&instance))
                    .await;
            })
            .detach();
        }
    }

    /// Whether Redis answered the last command.
    pub fn is_up(&self) -> bool {
        self.redis.is_up()
    }
}

impl App {
    fn cluster(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .expect("cluster functions run with --redis only")
    }

    /// Starts the pub/sub and presence tasks (with `--redis`).
    pub fn start_cluster(&self) {
        if self.cluster.is_none() {
            return;
        }
        let app = self.clone();
        smol::spawn(async move { app.pubsub_loop().or(app.shutdown.wait()).await }).detach();
        let app = self.clone();
        smol::spawn(async move { app.presence_loop().or(app.shutdown.wait()).await }).detach();
    }

    /// Takes this instance out of every room's presence (at shutdown).
    pub async fn leave_cluster(&self) {
        let Some(c) = &self.cluster else {
            return;
        };
        let rooms: Vec<RoomName> = c.feeds().keys().cloned().collect();
        let mut pipe = ::redis::pipe();
        for room in &rooms {
            pipe.cmd("HDEL")
                .arg(presence_key(room))
                .arg(&c.instance)
                .ignore();
        }
        pipe.cmd("ZREM")
            .arg(INSTANCES_KEY)
            .arg(&c.instance)
            .ignore();
        let _ = c
            .redis
            .pipe::<()>(&pipe)
            .or(async {
                smol::Timer::after(Duration::from_secs(1)).await;
                Ok(())
            })
            .await;
    }

    /// Starts feeding a room just made from Redis at `epoch`.
    pub(crate) fn attach(&self, room: &Arc<Room>, epoch: String) {
        let c = self.cluster();
        let feed = Arc::new(Feed {
            room: room.clone(),
            epoch: Mutex::new(epoch),
            mailbox: Mutex::new(VecDeque::new()),
            target: AtomicU64::new(room.next_id().saturating_sub(1)),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            written: Mutex::new(None),
        });
        if let Some(old) = c.feeds().insert(room.name().clone(), feed.clone()) {
            old.stop();
        }
        let app = self.clone();
        smol::spawn(async move {
            // What was published between the read and now is not in the
            // mailbox: ask for the counter once.
            app.catch_up(&feed).await;
            app.feed(feed).await
        })
        .detach();
    }

    /// Reads the room's counter into its feed's target.
    async fn catch_up(&self, feed: &Feed) {
        let c = self.cluster();
        match c.redis.head(feed.room.name()).await {
            Ok(Some((id, epoch))) if feed.same_epoch(&epoch) => feed.raise(id),
            Ok(Some(_)) => self.lost(feed, "its counter started over"),
            Ok(None) if feed.room.next_id() > 1 => self.lost(feed, "Redis no longer has it"),
            Ok(None) => {}
            Err(_) => {}
        }
    }

    /// Drops a room whose history this instance can no longer follow: its
    /// streams end, and their clients resume from the store.
    fn lost(&self, feed: &Feed, why: &str) {
        if feed.stopped.load(Ordering::Acquire) {
            return;
        }
        log::warn!(
            "redis: room {}: {why}; its streams resume",
            feed.room.name()
        );
        feed.stop();
        self.forget_room(feed.room.name());
    }

    /// Queues what the room is missing, in id order, until stopped.
    async fn feed(&self, feed: Arc<Feed>) {
        let c = self.cluster();
        loop {
            if feed.stopped.load(Ordering::Acquire) || self.shutdown.is_triggered() {
                return;
            }
            let listener = feed.wake.listen();
            let next = feed.room.next_id();
            if next > feed.target.load(Ordering::Acquire) {
                listener.or(self.shutdown.wait()).await;
                continue;
            }
            drop(listener);
            // From the mailbox if it has the next one, else from the stream.
            let from_mailbox = {
                let mut mb = feed.mailbox.lock().unwrap_or_else(|e| e.into_inner());
                while mb.front().is_some_and(|m| m.id() < next) {
                    mb.pop_front();
                }
                if mb.front().is_some_and(|m| m.id() == next) {
                    mb.drain(..).collect::<Vec<_>>()
                } else {
                    Vec::new()
                }
            };
            let batch = if !from_mailbox.is_empty() {
                from_mailbox
            } else {
                let upto = feed.target.load(Ordering::Acquire);
                let query = Query::After {
                    after: next - 1,
                    upto,
                    limit: FILL_BATCH,
                };
                match c.redis.read(feed.room.name(), &query, FILL_BATCH).await {
                    Ok(b) => {
                        if b.messages.first().map(Committed::id) != Some(next) {
                            self.lost(&feed, "messages it missed are no longer in Redis");
                            return;
                        }
                        b.messages
                    }
                    Err(_) => {
                        // Redis is away: try again shortly.
                        let pause = async {
                            smol::Timer::after(RECONNECT).await;
                        };
                        pause.or(self.shutdown.wait()).await;
                        continue;
                    }
                }
            };
            for change in batch {
                loop {
                    match feed.room.offer(change.clone()) {
                        Offer::Delivered(_) | Offer::Old => break,
                        // A gap in a mailbox batch: back to the top, which
                        // reads it from the stream.
                        Offer::Ahead { .. } => break,
                        Offer::Full => {
                            if feed.stopped.load(Ordering::Acquire) {
                                return;
                            }
                            feed.room
                                .space_freed()
                                .or(async {
                                    feed.wake.listen().await;
                                })
                                .or(self.shutdown.wait())
                                .await;
                            if self.shutdown.is_triggered() {
                                return;
                            }
                        }
                    }
                }
            }
            // Remote messages take memory like local ones.
            self.reclaim();
        }
    }

    /// Routes a published message to its room's feed.
    fn published(&self, channel: &str, payload: &[u8]) {
        let Some(room) = redis::room_of_channel(channel) else {
            return;
        };
        let Some(feed) = self.cluster().feeds().get(&room).cloned() else {
            return;
        };
        let Some(p) = redis::parse_published(&room, payload) else {
            log::warn!("redis: unreadable message on {channel}");
            return;
        };
        if !feed.same_epoch(&p.epoch) {
            self.lost(&feed, "its counter started over");
            return;
        }
        let id = p.change.id();
        {
            let mut mb = feed.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            if mb.len() < MAILBOX && mb.back().is_none_or(|m| m.id() < id) {
                mb.push_back(p.change);
            }
        }
        feed.raise(id);
    }

    /// Keeps a pub/sub connection up: subscribes every room in memory,
    /// has each feed check its counter (what was published while the
    /// connection was down), and routes what arrives.
    async fn pubsub_loop(&self) {
        let c = self.cluster();
        loop {
            match c.redis.client().get_async_pubsub().await {
                Ok(pubsub) => {
                    let (mut sink, mut stream) = pubsub.split();
                    let rooms: Vec<RoomName> = c.feeds().keys().cloned().collect();
                    let mut ok = true;
                    for room in &rooms {
                        if sink.subscribe(redis::channel(room)).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        *c.sink.lock().await = Some(sink);
                        let feeds: Vec<Arc<Feed>> = c.feeds().values().cloned().collect();
                        for feed in feeds {
                            self.catch_up(&feed).await;
                        }
                        while let Some(msg) = stream.next().await {
                            self.published(msg.get_channel_name(), msg.get_payload_bytes());
                        }
                        *c.sink.lock().await = None;
                        log::warn!("redis: the pub/sub connection closed; reconnecting");
                    }
                }
                Err(e) => log::debug!("redis: pub/sub connect: {e}"),
            }
            smol::Timer::after(RECONNECT).await;
        }
    }

    /// Writes this instance's presence and reads the others', every
    /// [`PRESENCE_EVERY`].
    async fn presence_loop(&self) {
        let c = self.cluster();
        let mut heartbeat = Instant::now();
        loop {
            smol::Timer::after(PRESENCE_EVERY).await;
            let feeds: Vec<(RoomName, Arc<Feed>)> = c
                .feeds()
                .iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut pipe = ::redis::pipe();
            pipe.cmd("ZADD")
                .arg(INSTANCES_KEY)
                .arg(now_ms)
                .arg(&c.instance)
                .ignore();
            // Everyone every few seconds (a restarted Redis forgets), else
            // only what changed.
            let all = heartbeat.elapsed() > Duration::from_secs(5);
            if all {
                heartbeat = Instant::now();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(INSTANCES_KEY)
                    .arg("-inf")
                    .arg(now_ms.saturating_sub(4 * ALIVE_FOR.as_millis() as u64))
                    .ignore();
            }
            let mut writes = Vec::new();
            for (name, feed) in &feeds {
                let local = feed.room.local_presence();
                let mut written = feed.written.lock().unwrap_or_else(|e| e.into_inner());
                if !all && written.as_ref() == Some(&local) {
                    continue;
                }
                if local.0 == 0 {
                    pipe.cmd("HDEL")
                        .arg(presence_key(name))
                        .arg(&c.instance)
                        .ignore();
                } else {
                    let entry = serde_json::json!({ "online": local.0, "users": local.1 });
                    pipe.cmd("HSET")
                        .arg(presence_key(name))
                        .arg(&c.instance)
                        .arg(entry.to_string())
                        .ignore();
                    // Listed on every instance, even before its first post.
                    pipe.cmd("ZADD")
                        .arg(redis::ROOMS_KEY)
                        .arg("NX")
                        .arg(0)
                        .arg(name.as_str())
                        .ignore();
                }
                *written = Some(local.clone());
                writes.push((feed.clone(), local));
            }
            pipe.cmd("ZRANGEBYSCORE")
                .arg(INSTANCES_KEY)
                .arg(now_ms.saturating_sub(ALIVE_FOR.as_millis() as u64))
                .arg("+inf");
            for (name, _) in &feeds {
                pipe.cmd("HGETALL").arg(presence_key(name));
            }
            let reply: Result<Vec<::redis::Value>, _> = c.redis.pipe(&pipe).await;
            let Ok(values) = reply else {
                // Not written: write again next time.
                for (feed, _) in writes {
                    *feed.written.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                continue;
            };
            let mut values = values.into_iter();
            let Some(Ok(live)) = values.next().map(::redis::from_redis_value::<Vec<String>>) else {
                continue;
            };
            let tables: Vec<HashMap<String, String>> = values
                .map(|v| ::redis::from_redis_value(v).unwrap_or_default())
                .collect();
            for ((_, feed), table) in feeds.iter().zip(tables) {
                let (online, users) = others(&table, &live, &c.instance);
                feed.room.set_remote_presence(online, users);
            }
        }
    }

    /// Online counts and users of `rooms` across the cluster (live
    /// instances only), for `GET /rooms`.
    pub(crate) async fn cluster_presence(
        &self,
        rooms: &[RoomName],
    ) -> HashMap<RoomName, (usize, Vec<UserName>)> {
        let c = self.cluster();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZRANGEBYSCORE")
            .arg(INSTANCES_KEY)
            .arg(now_ms.saturating_sub(ALIVE_FOR.as_millis() as u64))
            .arg("+inf");
        for room in rooms {
            pipe.cmd("HGETALL").arg(presence_key(room));
        }
        let Ok(values) = c.redis.pipe::<Vec<::redis::Value>>(&pipe).await else {
            return HashMap::new();
        };
        let mut values = values.into_iter();
        let live: Vec<String> = values
            .next()
            .and_then(|v| ::redis::from_redis_value(v).ok())
            .unwrap_or_default();
        rooms
            .iter()
            .zip(values)
            .map(|(room, v)| {
                let table: HashMap<String, String> =
                    ::redis::from_redis_value(v).unwrap_or_default();
                let (online, users) = others(&table, &live, "");
                (room.clone(), (online, users.into_keys().collect()))
            })
            .collect()
    }
}

/// The sum of the live instances' entries in a room's presence table,
/// leaving out `me`.
fn others(
    table: &HashMap<String, String>,
    live: &[String],
    me: &str,
) -> (usize, BTreeMap<UserName, usize>) {
    #[derive(serde::Deserialize)]
    struct Entry {
        online: usize,
        #[serde(default)]
        users: BTreeMap<String, usize>,
    }
    let mut online = 0;
    let mut users = BTreeMap::new();
    for (instance, json) in table {
        if instance == me || !live.iter().any(|l| l == instance) {
            continue;
        }
        let Ok(e) = serde_json::from_str::<Entry>(json) else {
            continue;
        };
        online += e.online;
        for (name, n) in e.users {
            if let Ok(name) = UserName::parse(&name) {
                *users.entry(name).or_insert(0) += n;
            }
        }
    }
    (online, users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_sums_live_instances_but_not_this_one() {
        let table: HashMap<String, String> = [
            ("a", r#"{"online":2,"users":{"ana":1}}"#),
            ("b", r#"{"online":3,"users":{"ana":1,"bo":2}}"#),
            ("dead", r#"{"online":5,"users":{"zed":5}}"#),
            ("me", r#"{"online":1,"users":{"me":1}}"#),
            ("bad", "not json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let live = ["a", "b", "me", "bad"].map(String::from);
        let (online, users) = others(&table, &live, "me");
        assert_eq!(online, 5);
        let users: Vec<(String, usize)> =
            users.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(users, [("ana".to_string(), 2), ("bo".to_string(), 2)]);
    }
}
