//! Room history: the messages a room keeps, newest last, each as its
//! encoded SSE frame (the only copy), so a replay costs no encoding.
//!
//! Ids in a room are consecutive, so the in-memory window is indexed by
//! `id - first_id` and every lookup is O(1). The window holds the newest
//! messages, as many as `--history` and the memory budget allow. Without a
//! database it is all the history there is; with one (`--db`, SQLite) the
//! file holds `--history` messages per room, and reads that reach past the
//! window become a [`Query`] for the [`Reader`] thread. The [`Writer`]
//! thread commits every post before it enters the window.

use std::collections::VecDeque;

use crate::event::Frame;
use crate::message::Timestamp;

pub mod reader;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sqlite;
pub mod writer;

pub use reader::Reader;
pub use writer::Writer;

/// What a post, a failed post or a read answers when the shared store
/// (`--redis`) cannot be reached; the HTTP layer turns it into `503`.
pub const UNAVAILABLE: &str = "history store unavailable";

/// Why `--redis` is refused by a build without the `redis` feature.
pub const NO_REDIS: &str = "this smolchat was built without Redis support (the ARM builds leave it out to stay small): build it with cargo build --release --features redis";

/// Where history lives beyond the in-memory window.
#[derive(Debug)]
pub enum Store {
    /// Nowhere: `--db :memory:`, history is lost on exit.
    Memory,
    /// A SQLite file, written by a dedicated thread with group commit.
    Sqlite(Writer),
    /// Redis (`--redis`), shared with other instances.
    #[cfg(feature = "redis")]
    Redis(std::sync::Arc<redis::RedisHistory>),
}

/// A stored message: its `event: message` frame, the only copy of it the
/// server holds (the JSON in its `data:` line is the message; see
/// [`crate::event::message_json`]), with the two fields history needs.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The message id.
    pub id: u64,
    /// When it was posted (for `--max-age`).
    pub time: Timestamp,
    /// `event: message` bytes for it.
    pub frame: Frame,
}

/// What a stream resuming after some id gets from history.
#[derive(Debug, PartialEq, Eq)]
pub struct Resume {
    /// Some messages after the requested id are no longer held.
    pub gap: bool,
    /// Index in the ring of the first entry to replay.
    pub start: usize,
}

/// A read that memory cannot answer, for the store (`--db`) to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Messages with ids from `after + 1` to `upto`, oldest first, at most
    /// `limit` of them.
    After {
        /// The last id the reader has.
        after: u64,
        /// The newest id to include.
        upto: u64,
        /// Most messages to return.
        limit: usize,
    },
    /// The newest `n` messages with ids up to `upto`, oldest first.
    Newest {
        /// The newest id to include.
        upto: u64,
        /// How many.
        n: usize,
    },
}

/// The `gap` a stream resuming after `since` gets, given what a store read
/// found: `first_read`, the first id it returned, and `first_held`, the
/// oldest id the store holds for the room. The same rule as
/// [`MemoryHistory::resume`], for reads that went to the store.
///
/// # Examples
///
/// ```
/// use smolchat::history::store_gap;
///
/// // Resuming after 10 in a room whose next id is 21, history from 5: no gap.
/// assert_eq!(store_gap(Some(10), 21, Some(11), Some(5)), None);
/// // History now starts at 15: messages 11..=14 are gone.
/// assert_eq!(store_gap(Some(10), 21, Some(15), Some(15)), Some(Some(15)));
/// // A client ahead of the room (a restart without a database).
/// assert_eq!(store_gap(Some(30), 21, Some(19), Some(5)), Some(Some(5)));
/// ```
///
/// Returns `None` for no gap, or `Some(first)` for a gap whose `first` is
/// the oldest id held (if any).
pub fn store_gap(
    since: Option<u64>,
    next_id: u64,
    first_read: Option<u64>,
    first_held: Option<u64>,
) -> Option<Option<u64>> {
    let since = since?;
    let gap = if since >= next_id {
        since > 0
    } else {
        match first_read {
            Some(first) => first > since + 1,
            None => since + 1 < next_id,
        }
    };
    gap.then_some(first_held)
}

/// The newest messages of one room: at most `cap` (`--history`), fewer
/// when the memory budget evicted the oldest.
#[derive(Debug)]
pub struct MemoryHistory {
    cap: usize,
    entries: VecDeque<Entry>,
    /// Whether this window holds every message the room still has. True
    /// without a store (memory is all there is) and for a room whose
    /// messages all arrived while it was in memory; false once older
    /// messages were left in (or evicted to) the store: reads that reach
    /// past the window then go to the store.
    complete: bool,
}

impl MemoryHistory {
    /// An empty history keeping at most `cap` messages.
    pub fn new(cap: usize) -> Self {
        MemoryHistory {
            cap: cap.max(1),
            entries: VecDeque::new(),
            complete: true,
        }
    }

    /// Whether the window holds every message the room still has.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Marks older messages as held by the store only.
    pub fn set_incomplete(&mut self) {
        self.complete = false;
    }

    /// Drops up to `n` of the oldest messages (the memory budget); returns
    /// how many went. With a store they are still there, so the window
    /// becomes incomplete; without one they are gone, and a resume past
    /// them gets a gap.
    ///
    /// Stops at a message whose frame is still queued for a subscriber (or
    /// about to be written): dropping it here would free nothing, and
    /// without a store it would lose a message for nothing.
    pub fn evict_oldest(&mut self, n: usize, store: bool) -> usize {
        let mut gone = 0;
        while gone < n && self.entries.front().is_some_and(|e| !e.frame.is_shared()) {
            self.entries.pop_front();
            gone += 1;
        }
        if gone > 0 && store {
            self.complete = false;
        }
        // A window that once held --history messages keeps its buffer;
        // give most of it back (each slot is part of what a message costs).
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        gone
    }

    /// When the oldest message held was posted.
    pub fn oldest_time(&self) -> Option<Timestamp> {
        self.entries.front().map(|e| e.time)
    }

    /// Whether every message after `since` (up to `next_id - 1`) is here,
    /// or known to be gone.
    pub fn covers_after(&self, since: u64, next_id: u64) -> bool {
        self.complete
            || since + 1 >= next_id
            || self.first_id().is_some_and(|first| first <= since + 1)
    }

    /// Whether the newest `n` messages are here (or all there are).
    pub fn covers_newest(&self, n: usize) -> bool {
        self.complete || self.entries.len() >= n
    }

    /// Appends the next message; its id must follow the last one.
    pub fn push(&mut self, entry: Entry) {
        debug_assert!(self.last_id().is_none_or(|last| entry.id == last + 1));
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Drops messages older than `cutoff` from the front.
    pub fn prune_older_than(&mut self, cutoff: Timestamp) {
        while self.entries.front().is_some_and(|e| e.time < cutoff) {
            self.entries.pop_front();
        }
    }

    /// Number of messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Id of the oldest message held.
    pub fn first_id(&self) -> Option<u64> {
        self.entries.front().map(|e| e.id)
    }

    /// Id of the newest message held.
    pub fn last_id(&self) -> Option<u64> {
        self.entries.back().map(|e| e.id)
    }

    /// Where replay starts for a client that has seen everything up to
    /// `since`, given that the room's next id is `next_id`.
    ///
    /// A client ahead of the room (`since >= next_id`, as after a restart
    /// without a database) gets a gap and the last `fallback` messages.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::history::{MemoryHistory, Resume};
    ///
    /// let h = MemoryHistory::new(10); // empty, next id 1
    /// assert_eq!(h.resume(0, 1, 50), Resume { gap: false, start: 0 });
    /// assert_eq!(h.resume(7, 1, 50), Resume { gap: true, start: 0 });
    /// ```
    pub fn resume(&self, since: u64, next_id: u64, fallback: usize) -> Resume {
        if since >= next_id {
            return Resume {
                gap: since > 0,
                start: self.entries.len().saturating_sub(fallback),
            };
        }
        match self.first_id() {
            // Everything after `since` is here.
            Some(first) if first <= since + 1 => Resume {
                gap: false,
                start: usize::try_from(since + 1 - first).unwrap_or(usize::MAX),
            },
            // Messages since+1 .. first-1 are gone.
            Some(_) => Resume {
                gap: true,
                start: 0,
            },
            // Nothing held, but ids were used after `since`.
            None => Resume {
                gap: since + 1 < next_id,
                start: 0,
            },
        }
    }

    /// The entry with id `id`, if the window holds it.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        let first = self.first_id()?;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        self.entries.get(i)
    }

    /// Replaces the frame of entry `id`, if the window holds it.
    pub fn replace(&mut self, id: u64, frame: Frame) {
        let Some(first) = self.first_id() else { return };
        if let Some(i) = id.checked_sub(first).and_then(|i| usize::try_from(i).ok()) {
            if let Some(e) = self.entries.get_mut(i) {
                e.frame = frame;
            }
        }
    }

    /// Entries from index `start` on, oldest first.
    pub fn from_index(&self, start: usize) -> impl Iterator<Item = &Entry> {
        self.entries.range(start.min(self.entries.len())..)
    }

    /// The newest `n` entries, oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = &Entry> {
        self.from_index(self.entries.len().saturating_sub(n))
    }

    /// Up to `limit` messages with ids after `since` (oldest first), or the
    /// newest `limit` when `since` is `None`, as their frames.
    pub fn page(&self, since: Option<u64>, limit: usize) -> Vec<Frame> {
        let start = match (since, self.first_id()) {
            (None, _) => self.entries.len().saturating_sub(limit),
            (Some(s), Some(first)) if s >= first => {
                usize::try_from(s - first + 1).unwrap_or(usize::MAX)
            }
            (Some(_), _) => 0,
        };
        self.from_index(start)
            .take(limit)
            .map(|e| e.frame.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode, Event};
    use crate::message::{Message, RoomName, Timestamp, UserName};

    fn filled(cap: usize, ids: std::ops::RangeInclusive<u64>) -> MemoryHistory {
        let mut h = MemoryHistory::new(cap);
        for id in ids {
            let msg = Message {
                id,
                room: RoomName::lobby(),
                user: UserName::anonymous(),
                text: format!("m{id}"),
                time: Timestamp(0),
                spans: None,
                guest: false,
                deleted: false,
            };
            let frame = encode(&Event::Message(&msg));
            h.push(Entry {
                id,
                time: msg.time,
                frame,
            });
        }
        h
    }

    fn frame_id(f: &Frame) -> u64 {
        let json: serde_json::Value =
            serde_json::from_slice(crate::event::message_json(f)).unwrap();
        json["id"].as_u64().unwrap()
    }

    fn ids(h: &MemoryHistory, r: Resume) -> Vec<u64> {
        h.from_index(r.start).map(|e| e.id).collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_cap_messages() {
        let h = filled(3, 1..=5);
        assert_eq!((h.first_id(), h.last_id(), h.len()), (Some(3), Some(5), 3));
    }

    #[test]
    fn resume_replays_exactly_what_follows_since() {
        let h = filled(3, 1..=5); // holds 3, 4, 5; next id 6
        let cases = [
            (5, false, vec![]),
            (4, false, vec![5]),
            (2, false, vec![3, 4, 5]),
            (1, true, vec![3, 4, 5]),
            (0, true, vec![3, 4, 5]),
            (9, true, vec![4, 5]), // ahead of the room: gap, then the last `fallback` (2)
        ];
        for (since, gap, want) in cases {
            let r = h.resume(since, 6, 2);
            assert_eq!(r.gap, gap, "since {since}");
            assert_eq!(ids(&h, r), want, "since {since}");
        }
    }

    #[test]
    fn resume_on_an_empty_room() {
        let h = MemoryHistory::new(3);
        assert_eq!(
            h.resume(0, 1, 5),
            Resume {
                gap: false,
                start: 0
            }
        );
        assert_eq!(
            h.resume(0, 4, 5),
            Resume {
                gap: true,
                start: 0
            }
        );
        assert_eq!(
            h.resume(3, 4, 5),
            Resume {
                gap: false,
                start: 0
            }
        );
    }

    #[test]
    fn pages_go_forward_from_since_or_back_from_the_end() {
        let h = filled(10, 1..=8);
        let page = |since, limit| {
            h.page(since, limit)
                .iter()
                .map(frame_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(page(None, 3), [6, 7, 8]);
        assert_eq!(page(Some(2), 3), [3, 4, 5]);
        assert_eq!(page(Some(7), 3), [8]);
        assert_eq!(page(Some(8), 3), Vec::<u64>::new());
        assert_eq!(page(Some(0), 2), [1, 2]);
    }
}
