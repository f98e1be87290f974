//! Room history: the messages a room keeps, newest last, with their encoded
//! SSE frames so a replay costs no encoding.
//!
//! Ids in a room are consecutive, so the ring is indexed by `id - first_id`
//! and every lookup is O(1). This in-memory window is what replays and
//! `GET /rooms/{room}/messages` read; a durable store (`--db`) would sit
//! behind it and refill it at start.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::Frame;
use crate::message::{Message, Timestamp};

pub mod sqlite;
pub mod writer;

pub use writer::Writer;

/// Where history lives beyond the in-memory window.
#[derive(Debug)]
pub enum Store {
    /// Nowhere: `--db :memory:`, history is lost on exit.
    Memory,
    /// A SQLite file, written by a dedicated thread with group commit.
    Sqlite(Writer),
}

/// A stored message and its SSE encoding.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The message.
    pub msg: Arc<Message>,
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

/// The last `cap` messages of one room.
#[derive(Debug)]
pub struct MemoryHistory {
    cap: usize,
    entries: VecDeque<Entry>,
}

impl MemoryHistory {
    /// An empty history keeping at most `cap` messages.
    pub fn new(cap: usize) -> Self {
        MemoryHistory {
            cap: cap.max(1),
            entries: VecDeque::new(),
        }
    }

    /// Appends the next message; its id must follow the last one.
    pub fn push(&mut self, entry: Entry) {
        debug_assert!(self.last_id().is_none_or(|last| entry.msg.id == last + 1));
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Drops messages older than `cutoff` from the front.
    pub fn prune_older_than(&mut self, cutoff: Timestamp) {
        while self.entries.front().is_some_and(|e| e.msg.time < cutoff) {
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
        self.entries.front().map(|e| e.msg.id)
    }

    /// Id of the newest message held.
    pub fn last_id(&self) -> Option<u64> {
        self.entries.back().map(|e| e.msg.id)
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

    /// Entries from index `start` on, oldest first.
    pub fn from_index(&self, start: usize) -> impl Iterator<Item = &Entry> {
        self.entries.range(start.min(self.entries.len())..)
    }

    /// The newest `n` entries, oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = &Entry> {
        self.from_index(self.entries.len().saturating_sub(n))
    }

    /// Up to `limit` messages with ids after `since` (oldest first), or the
    /// newest `limit` when `since` is `None`.
    pub fn page(&self, since: Option<u64>, limit: usize) -> Vec<Arc<Message>> {
        let start = match (since, self.first_id()) {
            (None, _) => self.entries.len().saturating_sub(limit),
            (Some(s), Some(first)) if s >= first => {
                usize::try_from(s - first + 1).unwrap_or(usize::MAX)
            }
            (Some(_), _) => 0,
        };
        self.from_index(start)
            .take(limit)
            .map(|e| e.msg.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode, Event};
    use crate::message::{RoomName, Timestamp, UserName};

    fn filled(cap: usize, ids: std::ops::RangeInclusive<u64>) -> MemoryHistory {
        let mut h = MemoryHistory::new(cap);
        for id in ids {
            let msg = Arc::new(Message {
                id,
                room: RoomName::lobby(),
                user: UserName::anonymous(),
                text: format!("m{id}"),
                time: Timestamp(0),
                spans: None,
            });
            let frame = encode(&Event::Message(&msg));
            h.push(Entry { msg, frame });
        }
        h
    }

    fn ids(h: &MemoryHistory, r: Resume) -> Vec<u64> {
        h.from_index(r.start).map(|e| e.msg.id).collect()
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
                .map(|m| m.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(page(None, 3), [6, 7, 8]);
        assert_eq!(page(Some(2), 3), [3, 4, 5]);
        assert_eq!(page(Some(7), 3), [8]);
        assert_eq!(page(Some(8), 3), Vec::<u64>::new());
        assert_eq!(page(Some(0), 2), [1, 2]);
    }
}
