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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_broadcast::{InactiveReceiver, Receiver, Sender, TrySendError};
use event_listener::Event as Notify;
use futures_lite::FutureExt;

use crate::history::{Entry, MemoryHistory, Store};
use crate::http::sse::{encode, Event, Frame};
use crate::message::{Message, RoomName, Span, Timestamp, UserName};
use crate::shutdown::Shutdown;

/// One chat room.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    tx: Sender<Frame>,
    /// Keeps the channel open while nobody listens; holds no messages.
    _keep_open: InactiveReceiver<Frame>,
    state: Mutex<State>,
    space: Notify,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    /// Queue slots held for messages being committed to the database.
    reserved: usize,
    history: MemoryHistory,
    online: usize,
    /// Named subscribers and how many streams each has open.
    users: BTreeMap<UserName, usize>,
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
}

/// A public summary of a room, for `GET /rooms`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RoomInfo {
    /// The room name.
    pub room: RoomName,
    /// Open streams.
    pub online: usize,
    /// Id of the newest message, 0 when none was posted.
    pub last_id: u64,
}

impl Room {
    /// A new, empty room with a queue of `buffer` messages and `history`
    /// kept messages.
    pub fn new(name: RoomName, buffer: usize, history: usize) -> Self {
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
                history: MemoryHistory::new(history),
                online: 0,
                users: BTreeMap::new(),
            }),
            space: Notify::new(),
        }
    }

    /// A room restored from the database: ids continue after `last_id`,
    /// and `messages` (consecutive ids ending at `last_id`) fill history.
    pub fn restore(
        name: RoomName,
        buffer: usize,
        history: usize,
        last_id: u64,
        messages: Vec<Message>,
    ) -> Self {
        let room = Room::new(name, buffer, history);
        {
            let mut st = room.lock();
            st.next_id = last_id + 1;
            for msg in messages {
                let frame = encode(&Event::Message(&msg));
                st.history.push(Entry {
                    msg: Arc::new(msg),
                    frame,
                });
            }
        }
        room
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
    /// Waits until `deadline` for a free queue slot (or until `stop` fires),
    /// then either delivers at once (`:memory:`) or hands the message to the
    /// database writer, which commits it before delivering it. The slot is
    /// reserved while the commit is in flight, so a committed message always
    /// fits in the queue; once handed over, a message is never abandoned.
    pub async fn publish(
        self: &Arc<Self>,
        new: NewMessage,
        time: Timestamp,
        deadline: Instant,
        store: &Store,
        stop: &Shutdown,
    ) -> Result<Arc<Message>, PublishError> {
        match store {
            Store::Memory => {
                let mut new = Some(new);
                self.when_slot_free(deadline, stop, |room, st| {
                    let new = new.take().expect("a slot is taken once");
                    room.deliver(
                        st,
                        Message::from_new(new, room.name.clone(), st.next_id, time),
                    )
                })
                .await
            }
            Store::Sqlite(writer) => {
                self.when_slot_free(deadline, stop, |_, st| st.reserved += 1)
                    .await?;
                // No await between reserving and handing over: a dropped
                // request cannot leak the reservation.
                let reply = writer.submit(self.clone(), new, time);
                match reply.recv().await {
                    Ok(Ok(msg)) => Ok(msg),
                    Ok(Err(e)) => Err(PublishError::Storage(e.0)),
                    Err(_) => Err(PublishError::Storage("the database writer stopped".into())),
                }
            }
        }
    }

    /// Runs `take` under the state lock once the queue has a slot that is
    /// neither used nor reserved, waiting until `deadline`.
    async fn when_slot_free<T>(
        &self,
        deadline: Instant,
        stop: &Shutdown,
        mut take: impl FnMut(&Room, &mut State) -> T,
    ) -> Result<T, PublishError> {
        let mut listener = None;
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
                        Late,
                        Stop,
                    }
                    let woke = async {
                        l.await;
                        Woke::Space
                    }
                    .or(async {
                        smol::Timer::at(deadline).await;
                        Woke::Late
                    })
                    .or(async {
                        stop.wait().await;
                        Woke::Stop
                    })
                    .await;
                    match woke {
                        Woke::Space => {}
                        Woke::Late => return Err(PublishError::Congested),
                        Woke::Stop => return Err(PublishError::Stopping),
                    }
                }
            }
        }
    }

    /// Queues and stores a message whose id is `st.next_id`; the caller
    /// made sure a slot is free.
    fn deliver(&self, st: &mut State, msg: Message) -> Arc<Message> {
        debug_assert_eq!(msg.id, st.next_id);
        let frame = encode(&Event::Message(&msg));
        match self.tx.try_broadcast(frame.clone()) {
            Ok(_) | Err(TrySendError::Inactive(_)) => {}
            // Cannot happen: a slot was free or reserved under this lock, and
            // we hold an inactive receiver so the channel stays open. If it
            // ever did, wait rather than lose the message for subscribers.
            Err(TrySendError::Full(f)) | Err(TrySendError::Closed(f)) => {
                log::error!("room {} queue unexpectedly full; waiting", self.name);
                let _ = self.tx.broadcast_blocking(f);
            }
        }
        st.next_id = msg.id + 1;
        let msg = Arc::new(msg);
        st.history.push(Entry {
            msg: msg.clone(),
            frame,
        });
        msg
    }

    /// The next id to hand out; the database writer numbers a batch from it.
    pub(crate) fn next_id(&self) -> u64 {
        self.lock().next_id
    }

    /// Delivers a committed message into its reserved slot.
    pub(crate) fn deliver_committed(&self, msg: Message) -> Arc<Message> {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(1);
        self.deliver(&mut st, msg)
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

    /// Queues a presence event unless that would take a slot a message may
    /// need: presence is best effort and never makes a post wait.
    fn announce(&self, st: &State, event: &Event<'_>) {
        if self.tx.len() + st.reserved + 1 < self.tx.capacity() {
            let _ = self.tx.try_broadcast(encode(event));
        }
    }

    /// Opens a stream on the room: returns the subscription and the frames
    /// to send first (`hello`, maybe `gap`, then the replay).
    ///
    /// `since` is the last id the client has seen (`Last-Event-ID` or
    /// `?since=`); without it the last `replay` messages are replayed.
    pub fn subscribe(
        self: &Arc<Self>,
        since: Option<u64>,
        replay: usize,
        user: Option<UserName>,
    ) -> (Subscription, Vec<Frame>) {
        let mut st = self.lock();
        st.online += 1;
        if let Some(u) = &user {
            let n = st.users.entry(u.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                // Sent before our receiver exists, so we do not get our own join.
                self.announce(
                    &st,
                    &Event::Join {
                        user: u,
                        online: st.online,
                    },
                );
            }
        }
        let rx = self.tx.new_receiver();
        let users: Vec<UserName> = st.users.keys().cloned().collect();
        let mut frames = vec![encode(&Event::Hello {
            room: self.name.as_str(),
            online: st.online,
            users: &users,
        })];
        let start = match since {
            None => st.history.len().saturating_sub(replay),
            Some(since) => {
                let r = st.history.resume(since, st.next_id, replay);
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
        drop(st);
        (
            Subscription {
                room: self.clone(),
                rx: Some(rx),
                user,
            },
            frames,
        )
    }

    /// Up to `limit` messages after `since`, or the newest `limit`.
    pub fn page(&self, since: Option<u64>, limit: usize) -> Vec<Arc<Message>> {
        self.lock().history.page(since, limit)
    }

    /// Online count and newest id.
    pub fn info(&self) -> RoomInfo {
        let st = self.lock();
        RoomInfo {
            room: self.name.clone(),
            online: st.online,
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
    user: Option<UserName>,
}

impl Subscription {
    /// The receiver of live frames.
    pub fn receiver(&mut self) -> &mut Receiver<Frame> {
        self.rx.as_mut().expect("receiver is only taken on drop")
    }

    /// Tells waiting publishers that this subscriber took messages, which
    /// may have freed queue slots.
    pub fn taken(&self) {
        self.room.space.notify(usize::MAX);
    }

    /// The room.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
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
                    self.room.announce(
                        &st,
                        &Event::Leave {
                            user: u,
                            online: st.online,
                        },
                    );
                }
            }
        }
        drop(st);
        self.room.space.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn new_message(text: &str) -> NewMessage {
        NewMessage {
            user: UserName::anonymous(),
            text: text.into(),
            spans: None,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    fn publish(
        room: &Arc<Room>,
        new: NewMessage,
        deadline: Instant,
    ) -> Result<Arc<Message>, PublishError> {
        smol::block_on(room.publish(
            new,
            Timestamp(0),
            deadline,
            &Store::Memory,
            &Shutdown::new(),
        ))
    }

    fn text(frame: &Frame) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    #[test]
    fn a_post_to_an_empty_room_does_not_wait() {
        let room = Arc::new(Room::new(RoomName::lobby(), 2, 10));
        for i in 1..=5 {
            let m = publish(&room, new_message("x"), soon()).unwrap();
            assert_eq!(m.id, i);
        }
        assert_eq!(room.info().last_id, 5);
    }

    #[test]
    fn a_full_queue_times_out_without_using_an_id() {
        let room = Arc::new(Room::new(RoomName::lobby(), 2, 10));
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
        assert_eq!(m.id, 3);
    }

    #[test]
    fn a_waiting_post_goes_through_when_the_subscriber_catches_up() {
        let room = Arc::new(Room::new(RoomName::lobby(), 1, 10));
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
        sub.taken();
        assert_eq!(waiter.join().unwrap().unwrap().id, 2);
        let second = smol::block_on(sub.receiver().recv()).unwrap();
        assert!(text(&second).contains("\"text\":\"2\""));
    }

    #[test]
    fn subscribe_splits_history_and_live_without_gap_or_duplicate() {
        let room = Arc::new(Room::new(RoomName::lobby(), 8, 10));
        for i in 0..4 {
            publish(&room, new_message(&i.to_string()), soon()).unwrap();
        }
        let (mut sub, frames) = room.subscribe(Some(2), 50, None);
        let replayed: Vec<String> = frames.iter().map(text).collect();
        assert!(replayed[0].starts_with("event: hello"));
        assert!(replayed[1].contains("id: 3\n") && replayed[2].contains("id: 4\n"));
        assert_eq!(replayed.len(), 3);
        publish(&room, new_message("live"), soon()).unwrap();
        assert!(text(&sub.receiver().try_recv().unwrap()).contains("id: 5\n"));
        assert!(sub.receiver().try_recv().is_err());
    }

    #[test]
    fn presence_counts_streams_and_announces_first_and_last() {
        let room = Arc::new(Room::new(RoomName::lobby(), 8, 10));
        let (mut watcher, _) = room.subscribe(None, 0, None);
        let ana = UserName::parse("ana").unwrap();
        let (a1, hello) = room.subscribe(None, 0, Some(ana.clone()));
        assert!(text(&hello[0]).contains("\"online\":2,\"users\":[\"ana\"]"));
        let (a2, _) = room.subscribe(None, 0, Some(ana));
        assert_eq!(room.info().online, 3);
        assert!(text(&watcher.receiver().try_recv().unwrap())
            .starts_with("event: join\ndata: {\"user\":\"ana\",\"online\":2}"));
        drop(a1);
        assert!(
            watcher.receiver().try_recv().is_err(),
            "ana still has a stream"
        );
        drop(a2);
        assert!(text(&watcher.receiver().try_recv().unwrap())
            .starts_with("event: leave\ndata: {\"user\":\"ana\",\"online\":1}"));
    }
}
