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

use crate::history::{Entry, MemoryHistory};
use crate::http::sse::{encode, Event, Frame};
use crate::message::{Message, RoomName, Span, Timestamp, UserName};

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

/// The room's queue stayed full until the deadline: the message was
/// neither stored nor delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Congested;

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
                history: MemoryHistory::new(history),
                online: 0,
                users: BTreeMap::new(),
            }),
            space: Notify::new(),
        }
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

    /// Stores and queues a message for every current subscriber, waiting
    /// until `deadline` while the queue is full.
    pub async fn publish(
        &self,
        new: NewMessage,
        time: Timestamp,
        deadline: Instant,
    ) -> Result<Arc<Message>, Congested> {
        let mut msg = Message {
            id: 0,
            room: self.name.clone(),
            user: new.user,
            text: new.text,
            time,
            spans: new.spans,
        };
        let mut listener = None;
        loop {
            {
                let mut st = self.lock();
                // Checked under the lock, so the encoding below is not wasted
                // on every retry while the queue stays full.
                if !self.tx.is_full() {
                    msg.id = st.next_id;
                    let frame = encode(&Event::Message(&msg));
                    match self.tx.try_broadcast(frame.clone()) {
                        Ok(_) | Err(TrySendError::Inactive(_)) => {
                            st.next_id += 1;
                            let msg = Arc::new(msg);
                            st.history.push(Entry {
                                msg: msg.clone(),
                                frame,
                            });
                            return Ok(msg);
                        }
                        Err(TrySendError::Full(_)) => {}
                        // We hold an inactive receiver, so the channel stays open.
                        Err(TrySendError::Closed(_)) => return Err(Congested),
                    }
                }
            }
            match listener.take() {
                // Register interest, then look again: a subscriber may have
                // made space between our check and `listen`.
                None => listener = Some(self.space.listen()),
                Some(l) => {
                    let woke = async {
                        l.await;
                        true
                    }
                    .or(async {
                        smol::Timer::at(deadline).await;
                        false
                    })
                    .await;
                    if !woke {
                        return Err(Congested);
                    }
                }
            }
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
                // Sent before our receiver exists, so we do not get our own
                // join. Presence is best effort: never waits on a full queue.
                let _ = self.tx.try_broadcast(encode(&Event::Join {
                    user: u,
                    online: st.online,
                }));
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
                    let _ = self.room.tx.try_broadcast(encode(&Event::Leave {
                        user: u,
                        online: st.online,
                    }));
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

    fn text(frame: &Frame) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    #[test]
    fn a_post_to_an_empty_room_does_not_wait() {
        let room = Room::new(RoomName::lobby(), 2, 10);
        for i in 1..=5 {
            let m = smol::block_on(room.publish(new_message("x"), Timestamp(0), soon())).unwrap();
            assert_eq!(m.id, i);
        }
        assert_eq!(room.info().last_id, 5);
    }

    #[test]
    fn a_full_queue_times_out_without_using_an_id() {
        let room = Arc::new(Room::new(RoomName::lobby(), 2, 10));
        let (sub, _) = room.subscribe(None, 0, None);
        for _ in 0..2 {
            smol::block_on(room.publish(new_message("x"), Timestamp(0), soon())).unwrap();
        }
        assert_eq!(
            smol::block_on(room.publish(new_message("late"), Timestamp(0), soon())),
            Err(Congested)
        );
        assert_eq!(room.info().last_id, 2);
        drop(sub);
        let m = smol::block_on(room.publish(new_message("after"), Timestamp(0), soon())).unwrap();
        assert_eq!(m.id, 3);
    }

    #[test]
    fn a_waiting_post_goes_through_when_the_subscriber_catches_up() {
        let room = Arc::new(Room::new(RoomName::lobby(), 1, 10));
        let (mut sub, _) = room.subscribe(None, 0, None);
        smol::block_on(room.publish(new_message("1"), Timestamp(0), soon())).unwrap();
        let r2 = room.clone();
        let waiter = std::thread::spawn(move || {
            smol::block_on(r2.publish(
                new_message("2"),
                Timestamp(0),
                Instant::now() + Duration::from_secs(30),
            ))
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
            smol::block_on(room.publish(new_message(&i.to_string()), Timestamp(0), soon()))
                .unwrap();
        }
        let (mut sub, frames) = room.subscribe(Some(2), 50, None);
        let replayed: Vec<String> = frames.iter().map(text).collect();
        assert!(replayed[0].starts_with("event: hello"));
        assert!(replayed[1].contains("id: 3\n") && replayed[2].contains("id: 4\n"));
        assert_eq!(replayed.len(), 3);
        smol::block_on(room.publish(new_message("live"), Timestamp(0), soon())).unwrap();
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
