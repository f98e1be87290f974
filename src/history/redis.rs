//! History in Redis (`--redis URL`), shared by every instance that names
//! the same Redis: ids, messages, delete events.
//!
//! Per room, three keys and a channel:
//!
//! - `smolchat:room:NAME`, a hash: `id`, the last id given, and `epoch`, a
//!   random word set when the room's counter is created. A counter that
//!   starts over (Redis lost its data) comes with a new epoch, which the
//!   instances notice instead of reusing ids their clients have seen.
//! - `smolchat:log:NAME`, a stream whose entry ids are the message ids
//!   (`7-0` for message 7), trimmed to `--history` entries. Ids are
//!   consecutive, so a stream holds exactly the ids from its first entry
//!   to the counter.
//! - `smolchat:del:NAME`, a hash of deleted message ids (stream entries
//!   cannot change; a read marks them deleted).
//! - `smolchat:ch:NAME`, the channel every new message is published on.
//!
//! and `smolchat:rooms`, a sorted set of room names by last id.
//!
//! One Lua script numbers, appends and publishes a message atomically
//! ([`POST`]), so two instances posting to one room at once get ids 1 and 2,
//! never two 1s, and every instance sees them published in id order. The
//! connection is multiplexed: concurrent posts share it and are pipelined,
//! Redis's version of group commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};

use super::sqlite::{Batch, LoadedRoom, StoreError};
use super::Query;
use crate::message::{Message, RoomName, Span, Timestamp, UserName};
use crate::room::{Change, Committed};

/// How long a command may take before Redis counts as unavailable. The
/// crate's default (500 ms) would fail posts on a loaded Pi.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub use super::UNAVAILABLE;

/// Numbers a change, appends it to the room's stream, marks a deleted
/// message, and publishes it, in one step. Returns `{id, epoch}`; id 0
/// means a delete of a message already deleted (nothing was written).
///
/// KEYS: room hash, log stream, deleted hash, rooms set.
/// ARGV: history length, epoch for a new counter, room name, channel,
/// kind (`m` or `d`), time, then for `m` user, text, spans, guest and for
/// `d` target, by.
const POST: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local kind = ARGV[5]
if kind == 'd' and redis.call('HEXISTS', KEYS[3], ARGV[7]) == 1 then
  return {0, epoch}
end
local id = redis.call('HINCRBY', KEYS[1], 'id', 1)
local sid = string.format('%d-0', id)
if kind == 'd' then
  redis.call('HSET', KEYS[3], ARGV[7], '1')
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], sid, 'k', 'd', 'ts', ARGV[6], 'tg', ARGV[7], 'b', ARGV[8])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], sid, 'k', 'm', 'ts', ARGV[6], 'u', ARGV[7], 'x', ARGV[8], 's', ARGV[9], 'g', ARGV[10])
end
redis.call('ZADD', KEYS[4], id, ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({epoch, string.format('%d', id), kind, ARGV[6], ARGV[7], ARGV[8], ARGV[9] or '', ARGV[10] or ''}))
return {id, epoch}
"#;

/// The key of a room's hash.
pub fn room_key(room: &RoomName) -> String {
    format!("smolchat:room:{room}")
}

/// The key of a room's stream.
pub fn log_key(room: &RoomName) -> String {
    format!("smolchat:log:{room}")
}

/// The key of a room's deleted ids.
pub fn del_key(room: &RoomName) -> String {
    format!("smolchat:del:{room}")
}

/// The channel a room's messages are published on.
pub fn channel(room: &RoomName) -> String {
    format!("smolchat:ch:{room}")
}

/// The room a channel name belongs to.
pub fn room_of_channel(channel: &str) -> Option<RoomName> {
    RoomName::parse(channel.strip_prefix("smolchat:ch:")?).ok()
}

/// Every room by last id.
pub const ROOMS_KEY: &str = "smolchat:rooms";

/// A message as published: the room's epoch and the change.
#[derive(Debug)]
pub struct Published {
    /// The epoch of the room's counter.
    pub epoch: String,
    /// The change, numbered.
    pub change: Committed,
}

/// Parses a published payload (the JSON array the script makes).
pub fn parse_published(room: &RoomName, payload: &[u8]) -> Option<Published> {
    let fields: Vec<String> = serde_json::from_slice(payload).ok()?;
    let [epoch, id, kind, time, a, b, c, d] = <[String; 8]>::try_from(fields).ok()?;
    let id: u64 = id.parse().ok()?;
    let time = Timestamp(time.parse().ok()?);
    let change = match kind.as_str() {
        "d" => Committed::Delete {
            id,
            time,
            target: a.parse().ok()?,
            by: UserName::parse(&b).unwrap_or_else(|_| UserName::anonymous()),
        },
        _ => Committed::Message(message(room, id, time, &a, b, &c, &d, false)),
    };
    Some(Published { epoch, change })
}

#[allow(clippy::too_many_arguments)]
fn message(
    room: &RoomName,
    id: u64,
    time: Timestamp,
    user: &str,
    text: String,
    spans: &str,
    guest: &str,
    deleted: bool,
) -> Message {
    Message {
        id,
        room: room.clone(),
        user: UserName::parse(user).unwrap_or_else(|_| UserName::anonymous()),
        text: if deleted { String::new() } else { text },
        time,
        spans: (!deleted && !spans.is_empty())
            .then(|| serde_json::from_str::<Vec<Span>>(spans).ok())
            .flatten(),
        guest: guest == "1",
        deleted,
    }
}

/// The Redis history: a client, the shared connection, and whether the
/// last command got through.
#[derive(Debug)]
pub struct RedisHistory {
    client: Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Connecting: one attempt at a time.
    connecting: async_lock::Mutex<()>,
    up: AtomicBool,
    script: redis::Script,
    /// `--history`: the stream's length.
    keep: usize,
}

impl RedisHistory {
    /// A handle for `url`; connects on first use, so smolchat starts (and
    /// waits, answering `503`) while Redis is not up yet.
    pub fn open(url: &str, keep: usize) -> Result<RedisHistory, String> {
        let client = Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
        Ok(RedisHistory {
            client,
            conn: Mutex::new(None),
            connecting: async_lock::Mutex::new(()),
            up: AtomicBool::new(false),
            script: redis::Script::new(POST),
            keep,
        })
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the last command reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The shared connection, connecting if there is none.
    pub async fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        // Boxed: connecting takes a future of ~2 KiB, needed only now and
        // then; unboxed, every Redis call's future (and every post's, which
        // awaits one) would carry that size, copied at each `.await`.
        match Box::pin(
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(c) => {
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                if !self.up.swap(true, Ordering::Relaxed) {
                    log::info!("redis: connected");
                }
                Ok(c)
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes a failed command: an I/O error or a timeout drops the
    /// connection (the next command connects again).
    pub fn failed(&self, e: &redis::RedisError) -> StoreError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if self.up.swap(false, Ordering::Relaxed) {
                log::error!("redis: {e}; posts get 503 until it is back");
            }
        }
        StoreError(format!("{UNAVAILABLE}: {e}"))
    }

    /// Runs `cmd`, noting failures.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))
    }

    /// Runs a pipeline, noting failures.
    pub async fn pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))
    }

    /// Numbers, stores and publishes `change`: its id and the room's epoch
    /// (id 0: a delete of a message already deleted). An error means the
    /// change may or may not be in Redis; it never means it is there for
    /// sure, so no `201` is given for it.
    pub async fn post(
        &self,
        room: &RoomName,
        change: &Change,
        time: Timestamp,
    ) -> Result<(u64, String), StoreError> {
        let mut inv = self.script.prepare_invoke();
        inv.key(room_key(room))
            .key(log_key(room))
            .key(del_key(room))
            .key(ROOMS_KEY)
            .arg(self.keep.max(1))
            .arg(format!("{:016x}", fastrand::u64(..)))
            .arg(room.as_str())
            .arg(channel(room));
        match change {
            Change::Post(m) => {
                let spans = m
                    .spans
                    .as_ref()
                    .map(|s| serde_json::to_string(s).unwrap_or_default())
                    .unwrap_or_default();
                inv.arg("m")
                    .arg(time.0)
                    .arg(m.user.as_str())
                    .arg(m.text.as_str())
                    .arg(spans)
                    .arg(if m.guest { "1" } else { "0" });
            }
            Change::Delete { target, by } => {
                inv.arg("d").arg(time.0).arg(*target).arg(by.as_str());
            }
        }
        let mut conn = self.conn().await?;
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))
    }

    /// The room's last id and epoch, if Redis has the room.
    pub async fn head(&self, room: &RoomName) -> Result<Option<(u64, String)>, StoreError> {
        let (id, epoch): (Option<u64>, Option<String>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(room_key(room))
                    .arg("id")
                    .arg("epoch"),
            )
            .await?;
        Ok(id.zip(epoch))
    }

    /// A room's last id, epoch and newest `n` entries, if Redis has it.
    pub async fn room(
        &self,
        name: &RoomName,
        n: usize,
    ) -> Result<Option<(LoadedRoom, String)>, StoreError> {
        let Some((last_id, epoch)) = self.head(name).await? else {
            return Ok(None);
        };
        let mut entries = if n == 0 {
            Vec::new()
        } else {
            let v: Value = self
                .query(
                    redis::cmd("XREVRANGE")
                        .arg(log_key(name))
                        .arg(last_id)
                        .arg("-")
                        .arg("COUNT")
                        .arg(n),
                )
                .await?;
            entries(&v)
        };
        entries.reverse();
        let first_held = self.first_id(name).await?;
        let messages = self.committed(name, entries).await?;
        // Consecutive ids ending at the counter (a stream trimmed under us
        // between the two reads would not be: then keep none).
        let consecutive = messages.last().is_none_or(|m| m.id() == last_id)
            && messages.windows(2).all(|w| w[1].id() == w[0].id() + 1);
        let messages = if consecutive { messages } else { Vec::new() };
        let complete = match (messages.first(), first_held) {
            (Some(m), Some(f)) => m.id() <= f,
            (None, None) => true,
            _ => false,
        };
        Ok(Some((
            LoadedRoom {
                name: name.clone(),
                last_id,
                messages,
                complete,
            },
            epoch,
        )))
    }

    /// The oldest id the room's stream holds.
    pub async fn first_id(&self, name: &RoomName) -> Result<Option<u64>, StoreError> {
        let v: Value = self
            .query(
                redis::cmd("XRANGE")
                    .arg(log_key(name))
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        Ok(entries(&v).first().map(|e| e.0))
    }

    /// What `query` finds, a batch of at most `batch` at a time, as the
    /// SQLite reader answers it.
    pub async fn read(
        &self,
        name: &RoomName,
        query: &Query,
        batch: usize,
    ) -> Result<Batch, StoreError> {
        let first_held = self.first_id(name).await?;
        // Ids are consecutive: the newest n start at upto - n + 1.
        let (after, upto, limit) = match *query {
            Query::After { after, upto, limit } => (after, upto, limit),
            Query::Newest { upto, n } => {
                let start = upto
                    .saturating_sub(n.try_into().unwrap_or(u64::MAX))
                    .max(first_held.unwrap_or(1).saturating_sub(1));
                (start, upto, n)
            }
        };
        let take = limit.min(batch.max(1));
        let v: Value = if after >= upto {
            Value::Array(Vec::new())
        } else {
            self.query(
                redis::cmd("XRANGE")
                    .arg(log_key(name))
                    .arg(after.saturating_add(1))
                    .arg(upto)
                    .arg("COUNT")
                    .arg(take),
            )
            .await?
        };
        let found = entries(&v);
        let next = match found.last() {
            Some(last) if found.len() == take && limit > take && last.0 < upto => {
                Some(Query::After {
                    after: last.0,
                    upto,
                    limit: limit - take,
                })
            }
            _ => None,
        };
        Ok(Batch {
            messages: self.committed(name, found).await?,
            first_held,
            next,
        })
    }

    /// Every room with its last id.
    pub async fn rooms(&self) -> Result<Vec<(RoomName, u64)>, StoreError> {
        let v: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(ROOMS_KEY)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(v.into_iter()
            .filter_map(|(name, id)| Some((RoomName::parse(&name).ok()?, id as u64)))
            .collect())
    }

    /// Stream entries as changes, messages marked deleted where they are.
    async fn committed(
        &self,
        name: &RoomName,
        entries: Vec<Entry>,
    ) -> Result<Vec<Committed>, StoreError> {
        let ids: Vec<u64> = entries
            .iter()
            .filter(|e| e.field("k") != Some("d"))
            .map(|e| e.0)
            .collect();
        let deleted: Vec<Option<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            self.query(redis::cmd("HMGET").arg(del_key(name)).arg(&ids))
                .await?
        };
        let mut deleted = ids
            .iter()
            .zip(deleted)
            .filter(|(_, d)| d.is_some())
            .map(|(id, _)| *id)
            .peekable();
        Ok(entries
            .into_iter()
            .map(|e| {
                let time = Timestamp(e.field("ts").and_then(|t| t.parse().ok()).unwrap_or(0));
                if e.field("k") == Some("d") {
                    Committed::Delete {
                        id: e.0,
                        time,
                        target: e.field("tg").and_then(|t| t.parse().ok()).unwrap_or(0),
                        by: UserName::parse(e.field("b").unwrap_or(""))
                            .unwrap_or_else(|_| UserName::anonymous()),
                    }
                } else {
                    while deleted.next_if(|d| *d < e.0).is_some() {}
                    let gone = deleted.next_if_eq(&e.0).is_some();
                    Committed::Message(message(
                        name,
                        e.0,
                        time,
                        e.field("u").unwrap_or(""),
                        e.field("x").unwrap_or("").to_string(),
                        e.field("s").unwrap_or(""),
                        e.field("g").unwrap_or("0"),
                        gone,
                    ))
                }
            })
            .collect())
    }
}

/// A stream entry: its message id and its fields.
#[derive(Debug)]
struct Entry(u64, Vec<(String, String)>);

impl Entry {
    fn field(&self, name: &str) -> Option<&str> {
        self.1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` reply; malformed ones are left
/// out.
fn entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let [id, Value::Array(fields)] = pair.as_slice() else {
                return None;
            };
            let id = text(id)?;
            let id: u64 = id.split('-').next()?.parse().ok()?;
            let fields = fields
                .chunks(2)
                .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
                .collect();
            Some(Entry(id, fields))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A handle shared by the store and the reader.
pub type Shared = Arc<RedisHistory>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_payloads_parse_into_changes() {
        let room = RoomName::parse("kitchen").unwrap();
        let p = parse_published(
            &room,
            br#"["ab12","7","m","1700000000","ana","hi \u00e9","","1"]"#,
        )
        .unwrap();
        assert_eq!(p.epoch, "ab12");
        let Committed::Message(m) = p.change else {
            panic!("a message")
        };
        assert_eq!(
            (m.id, m.user.as_str(), m.text.as_str(), m.guest),
            (7, "ana", "hi é", true)
        );
        assert_eq!(m.time, Timestamp(1_700_000_000));
        let p =
            parse_published(&room, br#"["ab12","8","d","1700000001","7","ana","",""]"#).unwrap();
        assert!(matches!(
            p.change,
            Committed::Delete {
                id: 8,
                target: 7,
                ..
            }
        ));
        assert!(parse_published(&room, b"garbage").is_none());
        assert!(parse_published(&room, br#"["a","x","m","1","u","t","",""]"#).is_none());
    }

    #[test]
    fn channels_name_their_room() {
        let room = RoomName::parse("kitchen").unwrap();
        assert_eq!(room_of_channel(&channel(&room)), Some(room));
        assert_eq!(room_of_channel("other:ch:kitchen"), None);
    }
}
