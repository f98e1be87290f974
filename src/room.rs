//! A room: its broadcast channel, history, presence, and the two operations
//! everything else is built on, [`Room::publish`] and [`Room::subscribe`].
//!
//! Fan-out goes through one `async-broadcast` channel of capacity `--buffer`
//! with overflow off: a message leaves the queue only when the slowest
//! subscriber has taken it, so a full queue holds publishers back. That is
//! the backpressure the SPEC promises, and it reaches the HTTP client because
//! a POST is answered only once its message is in the queue.
//!
//! Two rules keep delivery exact:
//!
//! - A message gets its id, enters the queue and enters history in one step
//!   under the room's state lock (`try_broadcast` never waits). A publisher
//!   that finds the queue full releases the lock and waits for a "space"
//!   notification or its deadline. On timeout nothing happened: no id was
//!   used, nobody got the message, so ids stay consecutive.
//! - A subscriber takes its receiver and its history snapshot under that same
//!   lock, so every message is either in the snapshot or in the receiver,
//!   never both or neither.
//!
//! async-broadcast has no "space available" signal, so subscribers ring the
//! room's `space` event after taking messages and when they leave. Its
//! `notify` is a single atomic load when nobody waits.
//!
//! Presence (who is on the room) does not travel through the message queue:
//! a slot it took could make a post wait, and a presence event dropped for
//! want of a slot would leave every page's count wrong. Instead the room
//! keeps an immutable [`Presence`] snapshot, replaced on every change and
//! numbered, and rings its `presence_changed` event. Each stream remembers
//! the snapshot it last sent and, when woken, sends what changed since
//! (`join`/`leave` events, then one `presence` event with the whole state).
//! Changes that happen faster than a stream sends are coalesced, never lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_broadcast::{InactiveReceiver, Receiver, Sender, TrySendError};
use event_listener::Event as Notify;
use futures_lite::FutureExt;

use crate::event::{encode, encode_in, Event, Frame};
use crate::history::{Entry, MemoryHistory, Query, Store};
use crate::memory::Memory;
use crate::message::{Message, RoomName, Span, Timestamp, UserName};

/// How often a post still waiting past the stall budget tells the
/// laggards again.
const LAGGARDS_AGAIN: Duration = Duration::from_millis(250);

/// One chat room.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    tx: Sender<Frame>,
    /// Keeps the channel open while nobody listens; holds no messages.
    _keep_open: InactiveReceiver<Frame>,
    state: Mutex<State>,
    space: Notify,
    /// The `seq` of the current presence snapshot, readable without the lock.
    presence_seq: AtomicU64,
    /// Rung after every presence change.
    presence_changed: Notify,
    /// The budget message frames are charged to.
    memory: Arc<Memory>,
    /// When the room was last used, in the owner's ticks (least recently
    /// used rooms lose their messages from memory first).
    last_used: AtomicU64,
    /// `--stall-budget` in milliseconds (0: off): how long a post may wait
    /// for the queue before the subscribers holding it full are cut.
    stall_budget_ms: AtomicU64,
    /// Rung while a post has waited past the stall budget: the streams
    /// that hold the queue full end themselves ([`Subscription::held_back_too_long`]).
    laggards: Notify,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    /// Queue slots held for messages being committed to the database.
    reserved: usize,
    /// Frames ever queued on `tx`: a subscription's backlog is this less
    /// what it found here when it subscribed and what it has taken since.
    queued: u64,
    history: MemoryHistory,
    online: usize,
    /// Named subscribers and how many streams each has open.
    users: BTreeMap<UserName, usize>,
    /// Streams other instances have open on the room (`--redis`).
    remote_online: usize,
    /// Named subscribers on other instances.
    remote_users: BTreeMap<UserName, usize>,
    /// Who is on the room, as streams are told.
    presence: Arc<Presence>,
}

/// Who is on a room at one moment. Immutable: a change makes a new one with
/// the next `seq`, which streams compare with the one they last sent.
#[derive(Debug)]
pub struct Presence {
    seq: u64,
    online: usize,
    users: Vec<UserName>,
    /// What a stream that sent the previous snapshot sends to catch up
    /// with this one: computed once per change, shared by every stream.
    step: Frame,
}

impl Presence {
    fn empty() -> Self {
        Presence {
            seq: 0,
            online: 0,
            users: Vec::new(),
            step: Frame::new(Vec::new()),
        }
    }

    /// The next snapshot after `self`, with `online` streams and `users`
    /// (sorted).
    fn next(&self, online: usize, users: Vec<UserName>) -> Self {
        let step = transition(&self.users, online, &users);
        Presence {
            seq: self.seq + 1,
            online,
            users,
            step,
        }
    }

    /// Open streams.
    pub fn online(&self) -> usize {
        self.online
    }

    /// Named users, sorted.
    pub fn users(&self) -> &[UserName] {
        &self.users
    }
}

/// The events that take a stream from knowing `old` users to the present:
/// a `leave` for each user gone, a `join` for each user new (both with the
/// current count), then the whole state in one `presence` event.
fn transition(old: &[UserName], online: usize, new: &[UserName]) -> Frame {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.is_none_or(|b| a < b) => {
                out.extend_from_slice(&encode(&Event::Leave { user: a, online }));
                i += 1;
            }
            (_, Some(b)) => {
                out.extend_from_slice(&encode(&Event::Join { user: b, online }));
                j += 1;
            }
            (Some(_), None) | (None, None) => unreachable!("handled above"),
        }
    }
    out.extend_from_slice(&encode(&Event::Presence { online, users: new }));
    Frame::new(out)
}

/// What a new message carries before it gets an id and a time.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Who posts.
    pub user: UserName,
    /// The text after transforms.
    pub text: String,
    /// Code spans from the `code` transform.
    pub spans: Option<Vec<Span>>,
    /// Posted without an account where accounts exist.
    pub guest: bool,
}

impl Message {
    fn from_new(new: NewMessage, room: RoomName, id: u64, time: Timestamp) -> Message {
        Message {
            id,
            room,
            user: new.user,
            text: new.text,
            time,
            spans: new.spans,
            guest: new.guest,
            deleted: false,
        }
    }
}

/// A change to a room's history; each takes the room's next id.
#[derive(Clone, Debug)]
pub enum Change {
    /// A new message.
    Post(NewMessage),
    /// Message `target` is deleted by `by`: its text goes, and an
    /// `event: delete` tells every stream.
    Delete {
        /// The message to delete.
        target: u64,
        /// Who deletes it.
        by: UserName,
    },
}

/// A change with its id and time, as it is stored and delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// A message.
    Message(Message),
    /// A delete event.
    Delete {
        /// Its id.
        id: u64,
        /// When.
        time: Timestamp,
        /// The deleted message.
        target: u64,
        /// Who deleted it.
        by: UserName,
    },
}

impl Committed {
    /// Its id.
    pub fn id(&self) -> u64 {
        match self {
            Committed::Message(m) => m.id,
            Committed::Delete { id, .. } => *id,
        }
    }
}

/// Why a message was not published. In every case it was neither stored
/// nor delivered, and no id was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The queue stayed full until the deadline.
    Congested,
    /// The server is shutting down.
    Stopping,
    /// The database could not store it.
    Storage(String),
    /// Redis could not be reached (or did not answer in time): the message
    /// may or may not be stored, but it was not acknowledged.
    Unavailable(String),
    /// A delete of a message another delete got to first.
    AlreadyDeleted,
}

/// What [`Room::offer`] did with a numbered change from the shared store.
#[derive(Debug)]
pub enum Offer {
    /// Queued and in history.
    Delivered(Entry),
    /// Its id was delivered already.
    Old,
    /// Changes before it are missing: the room expects `next`.
    Ahead {
        /// The id the room expects.
        next: u64,
    },
    /// The queue is full; offer it again when there is space.
    Full,
}

/// A public summary of a room, for `GET /rooms`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RoomInfo {
    /// The room name.
    pub room: RoomName,
    /// Open streams.
    pub online: usize,
    /// Named users with a stream open, sorted.
    pub users: Vec<UserName>,
    /// Id of the newest message, 0 when none was posted.
    pub last_id: u64,
}

/// What a new stream sends before live events.
#[derive(Debug)]
pub struct Opening {
    /// The `hello` event: the room and who is on it.
    pub hello: Frame,
    /// The messages to replay, and where they are.
    pub replay: Replay,
}

/// The replay of a new stream.
#[derive(Debug)]
pub enum Replay {
    /// In memory: a `gap` if one is due, then the messages, oldest first.
    Here(Vec<Frame>),
    /// Older than memory holds: `query` the store, then work out the gap
    /// with [`crate::history::store_gap`] from `since` and `next_id`.
    Store {
        /// The last id the client has seen.
        since: Option<u64>,
        /// The room's next id when the stream opened.
        next_id: u64,
        /// What to read.
        query: Query,
    },
}

impl Room {
    /// A new, empty room with a queue of `buffer` messages and `history`
    /// kept messages, whose messages count against `memory`.
    pub fn new(name: RoomName, buffer: usize, history: usize, memory: Arc<Memory>) -> Self {
        let (mut tx, rx) = async_broadcast::broadcast(buffer.max(1));
        tx.set_overflow(false);
        // With await_active (the default) and no subscribers, `broadcast`
        // would hang forever; we only use try_broadcast, but be explicit.
        tx.set_await_active(false);
        Room {
            name,
            tx,
            _keep_open: rx.deactivate(),
            state: Mutex::new(State {
                next_id: 1,
                reserved: 0,
                queued: 0,
                history: MemoryHistory::new(history),
                online: 0,
                users: BTreeMap::new(),
                remote_online: 0,
                remote_users: BTreeMap::new(),
                presence: Arc::new(Presence::empty()),
            }),
            space: Notify::new(),
            presence_seq: AtomicU64::new(0),
            presence_changed: Notify::new(),
            memory,
            last_used: AtomicU64::new(0),
            stall_budget_ms: AtomicU64::new(0),
            laggards: Notify::new(),
        }
    }

    /// Sets `--stall-budget`: a post that has waited this long for a full
    /// queue has the streams holding it full cut (they resume from
    /// history). Zero turns it off: only `--slow-timeout` cuts.
    pub fn set_stall_budget(&self, budget: Duration) {
        self.stall_budget_ms
            .store(budget.as_millis() as u64, Ordering::Relaxed);
    }

    /// A room loaded from the database: ids continue after `last_id`, and
    /// `recent` (consecutive ids ending at `last_id`) fill the memory
    /// window. `complete` says whether they are all the store holds.
    pub fn restore(
        name: RoomName,
        buffer: usize,
        history: usize,
        memory: Arc<Memory>,
        last_id: u64,
        recent: Vec<Committed>,
        complete: bool,
    ) -> Self {
        let room = Room::new(name, buffer, history, memory);
        {
            let mut st = room.lock();
            st.next_id = last_id + 1;
            if !complete {
                st.history.set_incomplete();
            }
            for stored in recent {
                let time = match &stored {
                    Committed::Message(m) => m.time,
                    Committed::Delete { time, .. } => *time,
                };
                st.history.push(Entry {
                    id: stored.id(),
                    time,
                    frame: crate::history::reader::frame(&stored, &room.memory),
                });
            }
        }
        room
    }

    /// Records a use of the room at `tick` (any increasing number).
    pub fn touch(&self, tick: u64) {
        self.last_used.store(tick, Ordering::Relaxed);
    }

    /// The tick of the room's last use.
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// When the oldest message in memory was posted.
    pub fn oldest_time(&self) -> Option<Timestamp> {
        self.lock().history.oldest_time()
    }

    /// Drops up to `n` of the oldest messages from memory; returns how many
    /// went. `store` says whether the database still has them.
    pub fn evict_oldest(&self, n: usize, store: bool) -> usize {
        self.lock().history.evict_oldest(n, store)
    }

    /// Messages held in memory.
    pub fn held(&self) -> usize {
        self.lock().history.len()
    }

    /// Whether nothing uses the room: no stream, no post in flight.
    /// `holders` is how many references the caller itself has.
    pub fn is_idle(self: &Arc<Self>, holders: usize) -> bool {
        Arc::strong_count(self) <= holders
    }

    /// The room name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state
        // is still consistent (every update is a single push or counter).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores and queues a message for every current subscriber.
    ///
    /// Waits until `deadline` for a free queue slot (or until `stop`
    /// resolves: the server is stopping),
    /// then either delivers at once (`:memory:`) or hands the message to the
    /// database writer, which commits it before delivering it. The slot is
    /// reserved while the commit is in flight, so a committed message always
    /// fits in the queue; once handed over, a message is never abandoned.
    pub async fn publish(
        self: &Arc<Self>,
        change: Change,
        time: Timestamp,
        deadline: Instant,
        store: &Store,
        stop: impl Future<Output = ()>,
    ) -> Result<Entry, PublishError> {
        match store {
            Store::Memory => {
                let mut change = Some(change);
                self.when_slot_free(deadline, stop, |room, st| {
                    let change = change.take().expect("a slot is taken once");
                    let id = st.next_id;
                    room.deliver(st, room.committed(id, time, change))
                })
                .await
            }
            Store::Sqlite(writer) => {
                self.when_slot_free(deadline, stop, |_, st| st.reserved += 1)
                    .await?;
                // No await between reserving and handing over: a dropped
                // request cannot leak the reservation.
                let reply = writer.submit(self.clone(), change, time);
                match reply.recv().await {
                    Ok(Ok(entry)) => Ok(entry),
                    Ok(Err(e)) => Err(PublishError::Storage(e.0)),
                    Err(_) => Err(PublishError::Storage("the database writer stopped".into())),
                }
            }
            #[cfg(feature = "redis")]
            Store::Redis(redis) => {
                // The local queue bounds the room as without Redis: a post
                // waits while it is full. Redis numbers the change and
                // publishes it; every instance (this one too) queues it in
                // id order ([`Room::offer`]).
                self.when_slot_free(deadline, stop, |_, _| ()).await?;
                let (id, _epoch) = redis
                    .post(&self.name, &change, time)
                    .await
                    .map_err(|e| PublishError::Unavailable(e.0))?;
                if id == 0 {
                    return Err(PublishError::AlreadyDeleted);
                }
                let committed = self.committed(id, time, change);
                Ok(self.own(committed))
            }
        }
    }

    /// Queues a change numbered by the shared store if it is the one the
    /// room expects next and the queue has a slot; otherwise says why not.
    pub fn offer(&self, change: Committed) -> Offer {
        let mut st = self.lock();
        let id = change.id();
        if id < st.next_id {
            return Offer::Old;
        }
        if id > st.next_id {
            return Offer::Ahead { next: st.next_id };
        }
        if self.tx.len() + st.reserved >= self.tx.capacity() {
            return Offer::Full;
        }
        Offer::Delivered(self.deliver(&mut st, change))
    }

    /// This instance's own post, numbered by the shared store: queued now
    /// if it is next (the usual case), else left to the feed that delivers
    /// in id order; either way its entry, for the `201`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn own(&self, change: Committed) -> Entry {
        let id = change.id();
        let time = match &change {
            Committed::Message(m) => m.time,
            Committed::Delete { time, .. } => *time,
        };
        let frame = match &change {
            Committed::Message(m) => encode_in(&Event::Message(m), &self.memory),
            Committed::Delete { id, target, .. } => encode_in(
                &Event::Delete {
                    id: *id,
                    target: *target,
                },
                &self.memory,
            ),
        };
        match self.offer(change) {
            Offer::Delivered(entry) => entry,
            Offer::Old | Offer::Ahead { .. } | Offer::Full => Entry { id, time, frame },
        }
    }

    /// Resolves when a subscriber may have freed a queue slot.
    pub async fn space_freed(&self) {
        let mut listener = self.space.listen();
        {
            let st = self.lock();
            if self.tx.len() + st.reserved < self.tx.capacity() {
                return;
            }
        }
        // Messages from other instances wait here as local posts do in
        // `when_slot_free`, and tell the laggards past the stall budget.
        let budget = self.stall_budget_ms.load(Ordering::Relaxed);
        if budget == 0 {
            listener.await;
            return;
        }
        let mut tell_at = Instant::now() + Duration::from_millis(budget);
        loop {
            let freed = async {
                (&mut listener).await;
                true
            }
            .or(async {
                smol::Timer::at(tell_at).await;
                false
            })
            .await;
            if freed {
                return;
            }
            self.laggards.notify(usize::MAX);
            tell_at = Instant::now() + LAGGARDS_AGAIN;
        }
    }

    /// Runs `take` under the state lock once the queue has a slot that is
    /// neither used nor reserved, waiting until `deadline`.
    async fn when_slot_free<T>(
        &self,
        deadline: Instant,
        stop: impl Future<Output = ()>,
        mut take: impl FnMut(&Room, &mut State) -> T,
    ) -> Result<T, PublishError> {
        let mut stop = pin!(stop);
        let mut listener = None;
        // Past the stall budget the laggards are told, then again every
        // LAGGARDS_AGAIN while the post still waits (a stream between two
        // writes when first told finds itself stuck in the next one).
        let budget = self.stall_budget_ms.load(Ordering::Relaxed);
        let mut tell_at = (budget > 0).then(|| Instant::now() + Duration::from_millis(budget));
        loop {
            {
                let mut st = self.lock();
                if self.tx.len() + st.reserved < self.tx.capacity() {
                    return Ok(take(self, &mut st));
                }
            }
            match listener.take() {
                // Register interest, then look again: a subscriber may have
                // made space between our check and `listen`.
                None => listener = Some(self.space.listen()),
                Some(l) => {
                    enum Woke {
                        Space,
                        Budget,
                        Late,
                        Stop,
                    }
                    let woke = async {
                        l.await;
                        Woke::Space
                    }
                    .or(async {
                        match tell_at {
                            Some(t) if t < deadline => {
                                smol::Timer::at(t).await;
                                Woke::Budget
                            }
                            _ => std::future::pending().await,
                        }
                    })
                    .or(async {
                        smol::Timer::at(deadline).await;
                        Woke::Late
                    })
                    .or(async {
                        stop.as_mut().await;
                        Woke::Stop
                    })
                    .await;
                    match woke {
                        Woke::Space => {}
                        Woke::Budget => {
                            self.laggards.notify(usize::MAX);
                            tell_at = Some(Instant::now() + LAGGARDS_AGAIN);
                            // The listener was consumed by the race: listen again.
                        }
                        Woke::Late => return Err(PublishError::Congested),
                        Woke::Stop => return Err(PublishError::Stopping),
                    }
                }
            }
        }
    }

    /// A change as it is stored once numbered: a message, or a delete event.
    pub(crate) fn committed(&self, id: u64, time: Timestamp, change: Change) -> Committed {
        match change {
            Change::Post(new) => {
                Committed::Message(Message::from_new(new, self.name.clone(), id, time))
            }
            Change::Delete { target, by } => Committed::Delete {
                id,
                time,
                target,
                by,
            },
        }
    }

    /// Queues and stores a change whose id is `st.next_id`; the caller
    /// made sure a slot is free. Returns its entry; for a message, the
    /// frame's `data:` is also the body of the `201`: one JSON encoding per
    /// message, not two.
    fn deliver(&self, st: &mut State, change: Committed) -> Entry {
        let (id, time, frame) = match &change {
            Committed::Message(msg) => (
                msg.id,
                msg.time,
                encode_in(&Event::Message(msg), &self.memory),
            ),
            Committed::Delete {
                id, time, target, ..
            } => {
                // The message itself, where memory holds it, loses its text.
                if let Some(gone) = st.history.get(*target).and_then(|e| self.deleted(e)) {
                    st.history.replace(*target, gone);
                }
                (
                    *id,
                    *time,
                    encode_in(
                        &Event::Delete {
                            id: *id,
                            target: *target,
                        },
                        &self.memory,
                    ),
                )
            }
        };
        debug_assert_eq!(id, st.next_id);
        match self.tx.try_broadcast(frame.clone()) {
            Ok(_) => st.queued += 1,
            // Nobody listens: nothing is queued.
            Err(TrySendError::Inactive(_)) => {}
            // Cannot happen: a slot was free or reserved under this lock, and
            // we hold an inactive receiver so the channel stays open. If it
            // ever did, wait rather than lose the message for subscribers.
            Err(TrySendError::Full(f)) | Err(TrySendError::Closed(f)) => {
                log::error!("room {} queue unexpectedly full; waiting", self.name);
                if self.tx.broadcast_blocking(f).is_ok() {
                    st.queued += 1;
                }
            }
        }
        st.next_id = id + 1;
        let entry = Entry { id, time, frame };
        st.history.push(entry.clone());
        entry
    }

    /// The frame of message entry `e` once deleted: the same message with
    /// no text and no spans, marked `deleted` (what the database gives for
    /// it too). `None` if `e` is not a message.
    fn deleted(&self, e: &Entry) -> Option<Frame> {
        #[derive(serde::Deserialize)]
        struct Stored {
            user: String,
            #[serde(default)]
            guest: bool,
        }
        if !e.frame.starts_with(b"event: message\n") {
            return None;
        }
        let old: Stored = serde_json::from_slice(crate::event::message_json(&e.frame)).ok()?;
        let msg = Message {
            id: e.id,
            room: self.name.clone(),
            user: UserName::parse(&old.user).unwrap_or_else(|_| UserName::anonymous()),
            text: String::new(),
            time: e.time,
            spans: None,
            guest: old.guest,
            deleted: true,
        };
        Some(encode_in(&Event::Message(&msg), &self.memory))
    }

    /// The frame of entry `id`: from memory, or the store query that finds
    /// it.
    pub fn find(&self, id: u64) -> Result<Option<Frame>, Query> {
        let st = self.lock();
        if id == 0 || id >= st.next_id {
            return Ok(None);
        }
        match st.history.get(id) {
            Some(e) => Ok(Some(e.frame.clone())),
            None if st.history.covers_after(id - 1, st.next_id) => Ok(None),
            None => Err(Query::After {
                after: id - 1,
                upto: id,
                limit: 1,
            }),
        }
    }

    /// The next id to hand out; the database writer numbers a batch from it.
    pub fn next_id(&self) -> u64 {
        self.lock().next_id
    }

    /// This instance's own streams on the room: how many, and the named
    /// users with their stream counts (what other instances are told).
    pub fn local_presence(&self) -> (usize, BTreeMap<UserName, usize>) {
        let st = self.lock();
        (st.online, st.users.clone())
    }

    /// Sets what other instances have open on the room; the snapshot
    /// streams see is the sum. Returns whether anything changed.
    pub fn set_remote_presence(&self, online: usize, users: BTreeMap<UserName, usize>) -> bool {
        {
            let mut st = self.lock();
            if st.remote_online == online && st.remote_users == users {
                return false;
            }
            st.remote_online = online;
            st.remote_users = users;
            self.presence_changed(&mut st);
        }
        self.presence_changed.notify(usize::MAX);
        true
    }

    /// Delivers a committed change into its reserved slot.
    pub(crate) fn deliver_committed(&self, change: Committed) -> Entry {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(1);
        self.deliver(&mut st, change)
    }

    /// Gives back a reservation whose message was not committed.
    pub(crate) fn release(&self) {
        {
            let mut st = self.lock();
            st.reserved = st.reserved.saturating_sub(1);
        }
        self.space.notify(usize::MAX);
    }

    /// Drops history older than `cutoff` (for `--max-age`).
    pub fn prune_older_than(&self, cutoff: Timestamp) {
        self.lock().history.prune_older_than(cutoff);
    }

    /// Publishes a new presence snapshot after `online` or `users` changed.
    /// The caller rings `presence_changed` once the lock is released.
    fn presence_changed(&self, st: &mut State) {
        let mut users: Vec<UserName> = st.users.keys().cloned().collect();
        if !st.remote_users.is_empty() {
            users.extend(st.remote_users.keys().cloned());
            users.sort();
            users.dedup();
        }
        let online = st.online + st.remote_online;
        st.presence = Arc::new(st.presence.next(online, users));
        self.presence_seq.store(st.presence.seq, Ordering::Release);
    }

    /// Resolves once the presence snapshot is no longer number `seen`.
    pub async fn presence_after(&self, seen: u64) {
        loop {
            if self.presence_seq.load(Ordering::Acquire) != seen {
                return;
            }
            let listener = self.presence_changed.listen();
            if self.presence_seq.load(Ordering::Acquire) != seen {
                return;
            }
            listener.await;
        }
    }

    /// Who is on the room now.
    pub fn presence(&self) -> Arc<Presence> {
        self.lock().presence.clone()
    }

    /// Opens a stream on the room: returns the subscription and what to
    /// send first (`hello`, then the replay, which may start with a `gap`).
    ///
    /// `since` is the last id the client has seen (`Last-Event-ID` or
    /// `?since=`); without it the last `replay` messages are replayed. The
    /// receiver and the replay are taken under one lock, so every message
    /// is in exactly one of them; a replay that reaches past memory is a
    /// store read up to the newest id at that moment.
    pub fn subscribe(
        self: &Arc<Self>,
        since: Option<u64>,
        replay: usize,
        user: Option<UserName>,
    ) -> (Subscription, Opening) {
        let mut st = self.lock();
        st.online += 1;
        if let Some(u) = &user {
            *st.users.entry(u.clone()).or_insert(0) += 1;
        }
        self.presence_changed(&mut st);
        let rx = self.tx.new_receiver();
        let start = st.queued;
        let seen = st.presence.clone();
        let hello = encode(&Event::Hello {
            room: self.name.as_str(),
            online: seen.online,
            users: &seen.users,
        });
        let (next_id, upto) = (st.next_id, st.next_id - 1);
        let ahead = since.is_some_and(|s| s >= next_id);
        let here = match since {
            Some(s) if !ahead => st.history.covers_after(s, next_id),
            // A client ahead of the room is told where history starts:
            // only a complete window knows.
            Some(_) => st.history.is_complete() && st.history.covers_newest(replay),
            None => st.history.covers_newest(replay),
        };
        let replay = if here {
            let mut frames = Vec::new();
            let start = match since {
                None => st.history.len().saturating_sub(replay),
                Some(since) => {
                    let r = st.history.resume(since, next_id, replay);
                    if r.gap {
                        frames.push(encode(&Event::Gap {
                            since,
                            first: st.history.first_id(),
                        }));
                    }
                    r.start
                }
            };
            frames.extend(st.history.from_index(start).map(|e| e.frame.clone()));
            Replay::Here(frames)
        } else {
            let query = match since {
                Some(after) if !ahead => Query::After {
                    after,
                    upto,
                    limit: usize::MAX,
                },
                _ => Query::Newest { upto, n: replay },
            };
            Replay::Store {
                since,
                next_id,
                query,
            }
        };
        drop(st);
        self.presence_changed.notify(usize::MAX);
        (
            Subscription {
                room: self.clone(),
                rx: Some(rx),
                received: start,
                user,
                seen,
            },
            Opening { hello, replay },
        )
    }

    /// Up to `limit` messages after `since`, or the newest `limit`, as
    /// their frames; or, when memory does not hold them, the store query
    /// that finds them.
    pub fn page(&self, since: Option<u64>, limit: usize) -> Result<Vec<Frame>, Query> {
        let st = self.lock();
        let upto = st.next_id - 1;
        match since {
            Some(after) if !st.history.covers_after(after, st.next_id) => {
                Err(Query::After { after, upto, limit })
            }
            None if !st.history.covers_newest(limit) => Err(Query::Newest { upto, n: limit }),
            _ => Ok(st.history.page(since, limit)),
        }
    }

    /// Online count and newest id.
    pub fn info(&self) -> RoomInfo {
        let st = self.lock();
        RoomInfo {
            room: self.name.clone(),
            online: st.presence.online,
            users: st.presence.users.clone(),
            last_id: st.next_id - 1,
        }
    }

    /// Closes the channel: every subscriber's next receive says so.
    pub fn close(&self) {
        self.tx.close();
    }
}

/// An open stream on a room. Dropping it leaves the room.
#[derive(Debug)]
pub struct Subscription {
    room: Arc<Room>,
    rx: Option<Receiver<Frame>>,
    /// The room's `queued` count up to the frames this stream has taken:
    /// the difference is its own backlog.
    received: u64,
    user: Option<UserName>,
    /// The presence snapshot this stream last sent.
    seen: Arc<Presence>,
}

impl Subscription {
    /// The receiver of live frames.
    pub fn receiver(&mut self) -> &mut Receiver<Frame> {
        self.rx.as_mut().expect("receiver is only taken on drop")
    }

    /// Counts `frames` taken from the receiver, and tells waiting
    /// publishers if that freed queue slots.
    ///
    /// A slot frees only when the last subscriber takes its message, so a
    /// queue still full after our take has nothing to offer; notifying
    /// anyway would wake every waiting publisher once per subscriber per
    /// message, to find the queue full and wait again.
    pub fn taken(&mut self, frames: usize) {
        self.received += frames as u64;
        if !self.room.tx.is_full() {
            self.room.space.notify(usize::MAX);
        }
    }

    /// The room.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Resolves once a post has waited past the room's stall budget while
    /// this stream is one of those holding the queue full: it should end,
    /// and its client resume from history. Meant to race a write.
    pub async fn held_back_too_long(&self) {
        loop {
            self.room.laggards.listen().await;
            if self.holds_oldest() {
                return;
            }
        }
    }

    /// Whether the queue is full and this stream has not taken its oldest
    /// frame yet: one of those whose slowness holds posts back. (The
    /// receiver's own `len` cannot tell: it is the whole queue's length,
    /// the same for every receiver.) Once such a stream is cut the queue
    /// is no longer full, so a stream that was merely behind it is not
    /// cut in the same breath.
    fn holds_oldest(&self) -> bool {
        let st = self.room.lock();
        let len = self.room.tx.len();
        let full = len + st.reserved >= self.room.tx.capacity();
        let backlog = st.queued.saturating_sub(self.received);
        full && backlog > 0 && backlog >= len as u64
    }

    /// The number of the presence snapshot this stream last sent.
    pub fn presence_seen(&self) -> u64 {
        self.seen.seq
    }

    /// The events that bring this stream's presence up to date, if it
    /// changed since it last sent one. Taking them counts as sent.
    pub fn presence_update(&mut self) -> Option<Frame> {
        let now = self.room.presence();
        if now.seq == self.seen.seq {
            return None;
        }
        let frames = if now.seq == self.seen.seq + 1 {
            now.step.clone()
        } else {
            // Several changes since: one coalesced step.
            transition(&self.seen.users, now.online, &now.users)
        };
        self.seen = now;
        Some(frames)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Dropping the receiver releases every slot it still held.
        drop(self.rx.take());
        let mut st = self.room.lock();
        st.online = st.online.saturating_sub(1);
        if let Some(u) = &self.user {
            if let Some(n) = st.users.get_mut(u) {
                *n -= 1;
                if *n == 0 {
                    st.users.remove(u);
                }
            }
        }
        self.room.presence_changed(&mut st);
        drop(st);
        self.room.space.notify(usize::MAX);
        self.room.presence_changed.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn room(buffer: usize, history: usize) -> Room {
        Room::new(
            RoomName::lobby(),
            buffer,
            history,
            Arc::new(Memory::new(usize::MAX)),
        )
    }

    fn new_message(text: &str) -> NewMessage {
        NewMessage {
            user: UserName::anonymous(),
            text: text.into(),
            spans: None,
            guest: false,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    fn publish(room: &Arc<Room>, new: NewMessage, deadline: Instant) -> Result<u64, PublishError> {
        smol::block_on(room.publish(
            Change::Post(new),
            Timestamp(0),
            deadline,
            &Store::Memory,
            std::future::pending(),
        ))
        .map(|e| e.id)
    }

    fn text(frame: &Frame) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    #[test]
    fn a_post_to_an_empty_room_does_not_wait() {
        let room = Arc::new(room(2, 10));
        for i in 1..=5 {
            let m = publish(&room, new_message("x"), soon()).unwrap();
            assert_eq!(m, i);
        }
        assert_eq!(room.info().last_id, 5);
    }

    #[test]
    fn a_full_queue_times_out_without_using_an_id() {
        let room = Arc::new(room(2, 10));
        let (sub, _) = room.subscribe(None, 0, None);
        for _ in 0..2 {
            publish(&room, new_message("x"), soon()).unwrap();
        }
        assert_eq!(
            publish(&room, new_message("late"), soon()),
            Err(PublishError::Congested)
        );
        assert_eq!(room.info().last_id, 2);
        drop(sub);
        let m = publish(&room, new_message("after"), soon()).unwrap();
        assert_eq!(m, 3);
    }

    #[test]
    fn a_waiting_post_goes_through_when_the_subscriber_catches_up() {
        let room = Arc::new(room(1, 10));
        let (mut sub, _) = room.subscribe(None, 0, None);
        publish(&room, new_message("1"), soon()).unwrap();
        let r2 = room.clone();
        let waiter = std::thread::spawn(move || {
            publish(
                &r2,
                new_message("2"),
                Instant::now() + Duration::from_secs(30),
            )
        });
        let first = smol::block_on(sub.receiver().recv()).unwrap();
        assert!(text(&first).contains("\"text\":\"1\""));
        sub.taken(1);
        assert_eq!(waiter.join().unwrap().unwrap(), 2);
        let second = smol::block_on(sub.receiver().recv()).unwrap();
        assert!(text(&second).contains("\"text\":\"2\""));
    }

    /// Takes every frame queued for `sub` now, as a stream's batch does.
    fn take_all(sub: &mut Subscription) -> usize {
        let mut n = 0;
        while sub.receiver().try_recv().is_ok() {
            n += 1;
        }
        sub.taken(n);
        n
    }

    #[test]
    fn only_the_streams_that_have_not_taken_the_oldest_frame_of_a_full_queue_hold_it() {
        let room = Arc::new(room(4, 10));
        let (mut reader, _) = room.subscribe(None, 0, None);
        let (mut stalled, _) = room.subscribe(None, 0, None);
        assert!(
            !reader.holds_oldest() && !stalled.holds_oldest(),
            "empty queue"
        );
        for i in 0..4 {
            publish(&room, new_message(&i.to_string()), soon()).unwrap();
        }
        assert_eq!(take_all(&mut reader), 4);
        // The queue is full (4 of 4) and only `stalled` holds it.
        assert!(!reader.holds_oldest());
        assert!(stalled.holds_oldest());

        // `stalled` takes one: a slot frees, it still holds the oldest.
        assert!(stalled.receiver().try_recv().is_ok());
        stalled.taken(1);
        publish(&room, new_message("4"), soon()).unwrap();
        assert!(!reader.holds_oldest(), "one frame behind, not the oldest");
        assert!(stalled.holds_oldest());

        // A stream that joins a full queue holds nothing yet.
        let (late, _) = room.subscribe(None, 0, None);
        assert!(!late.holds_oldest());

        // Once `stalled` catches up the queue is not full: nobody holds
        // it, though `reader` is one behind (a stream cut for holding the
        // queue must not take the next one with it).
        assert_eq!(take_all(&mut stalled), 4);
        assert!(!stalled.holds_oldest() && !reader.holds_oldest() && !late.holds_oldest());
        // Full again: now `reader` holds the oldest frame.
        for i in 5..8 {
            publish(&room, new_message(&i.to_string()), soon()).unwrap();
        }
        assert!(reader.holds_oldest());
        assert!(!stalled.holds_oldest() && !late.holds_oldest());
    }

    #[test]
    fn subscribe_splits_history_and_live_without_gap_or_duplicate() {
        let room = Arc::new(room(8, 10));
        for i in 0..4 {
            publish(&room, new_message(&i.to_string()), soon()).unwrap();
        }
        let (mut sub, opening) = room.subscribe(Some(2), 50, None);
        let Replay::Here(frames) = opening.replay else {
            panic!("all in memory")
        };
        let replayed: Vec<String> = std::iter::once(&opening.hello)
            .chain(&frames)
            .map(text)
            .collect();
        assert!(replayed[0].starts_with("event: hello"));
        assert!(replayed[1].contains("id: 3\n") && replayed[2].contains("id: 4\n"));
        assert_eq!(replayed.len(), 3);
        publish(&room, new_message("live"), soon()).unwrap();
        assert!(text(&sub.receiver().try_recv().unwrap()).contains("id: 5\n"));
        assert!(sub.receiver().try_recv().is_err());
    }

    #[test]
    fn presence_counts_streams_and_tells_each_stream_what_changed() {
        let room = Arc::new(room(8, 10));
        let (mut watcher, _) = room.subscribe(None, 0, None);
        assert!(watcher.presence_update().is_none(), "nothing changed yet");
        let ana = UserName::parse("ana").unwrap();
        let (a1, hello) = room.subscribe(None, 0, Some(ana.clone()));
        assert!(text(&hello.hello).contains("\"online\":2,\"users\":[\"ana\"]"));
        let (a2, _) = room.subscribe(None, 0, Some(ana));
        assert_eq!(room.info().online, 3);
        // Two changes since the watcher last sent: coalesced into one step.
        assert_eq!(
            text(&watcher.presence_update().unwrap()),
            "event: join\ndata: {\"user\":\"ana\",\"online\":3}\n\n\
             event: presence\ndata: {\"online\":3,\"users\":[\"ana\"]}\n\n"
        );
        drop(a1);
        assert_eq!(
            text(&watcher.presence_update().unwrap()),
            "event: presence\ndata: {\"online\":2,\"users\":[\"ana\"]}\n\n",
            "ana still has a stream"
        );
        drop(a2);
        assert_eq!(
            text(&watcher.presence_update().unwrap()),
            "event: leave\ndata: {\"user\":\"ana\",\"online\":1}\n\n\
             event: presence\ndata: {\"online\":1,\"users\":[]}\n\n"
        );
        assert!(watcher.presence_update().is_none());
        assert!(
            watcher.receiver().try_recv().is_err(),
            "presence never takes a queue slot"
        );
    }

    #[test]
    fn presence_changes_while_the_queue_is_full_still_reach_every_stream() {
        let room = Arc::new(room(2, 10));
        let (mut reader, _) = room.subscribe(None, 0, None);
        for _ in 0..2 {
            publish(&room, new_message("x"), soon()).unwrap();
        }
        let bob = UserName::parse("bob").unwrap();
        let (_b, _) = room.subscribe(None, 0, Some(bob));
        let update = text(&reader.presence_update().unwrap());
        assert!(update.ends_with("event: presence\ndata: {\"online\":2,\"users\":[\"bob\"]}\n\n"));
        assert_eq!(
            room.info().users,
            ["bob"].map(|u| UserName::parse(u).unwrap())
        );
    }

    #[test]
    fn transitions_list_leaves_and_joins_in_name_order() {
        let names = |v: &[&str]| -> Vec<UserName> {
            v.iter().map(|u| UserName::parse(u).unwrap()).collect()
        };
        let f = transition(
            &names(&["ana", "cy", "eve"]),
            4,
            &names(&["bob", "cy", "dan"]),
        );
        let events: Vec<&str> = std::str::from_utf8(&f)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .collect();
        assert_eq!(
            events,
            [
                "event: leave\ndata: {\"user\":\"ana\",\"online\":4}",
                "event: join\ndata: {\"user\":\"bob\",\"online\":4}",
                "event: join\ndata: {\"user\":\"dan\",\"online\":4}",
                "event: leave\ndata: {\"user\":\"eve\",\"online\":4}",
                "event: presence\ndata: {\"online\":4,\"users\":[\"bob\",\"cy\",\"dan\"]}",
            ]
        );
    }
}
