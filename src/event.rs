//! Events as a stream carries them, and their one encoding: the bytes of
//! one Server-Sent Event.
//!
//! This is the wire form of a domain event, so it lives below both the
//! rooms (which encode each message once and share the bytes, an `Arc`,
//! with every subscriber and with history) and the HTTP layer (which only
//! adds chunk framing, see `http::sse`).
//!
//! Framing safety comes from types rather than escaping: an event name is one
//! of a closed set of `&'static str`s, an id is a `u64`, and the data is
//! compact JSON from `serde_json`, which escapes every control character, so
//! a message containing `"\n\nevent: x"` stays inside one `data:` line.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::Serialize;

use crate::memory::{Memory, FRAME_OVERHEAD};
use crate::message::{Message, UserName};

/// One encoded SSE event, shared by every subscriber that receives it, by
/// history and by the answer to its post: cloning shares the bytes.
///
/// A message's frame is the only copy of the message the server keeps, and
/// it counts against the memory budget (see [`crate::memory`]) from
/// [`encode_in`] until its last clone is dropped.
#[derive(Clone)]
pub struct Frame(Arc<Bytes>);

struct Bytes {
    data: Box<[u8]>,
    /// The budget this frame's size is charged to, if any.
    memory: Option<Arc<Memory>>,
}

impl Frame {
    /// Bytes not charged to any budget (presence, hello, gap...: events a
    /// stream sends once).
    pub fn new(data: Vec<u8>) -> Frame {
        Frame(Arc::new(Bytes {
            data: data.into_boxed_slice(),
            memory: None,
        }))
    }

    /// Whether another clone of this frame exists (a queue slot, a stream
    /// about to write it): dropping this one would free no memory.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// Bytes charged to `memory` for as long as the frame lives.
    pub fn charged(data: Vec<u8>, memory: &Arc<Memory>) -> Frame {
        let data = data.into_boxed_slice();
        memory.charge_frame(data.len() + FRAME_OVERHEAD);
        Frame(Arc::new(Bytes {
            data,
            memory: Some(memory.clone()),
        }))
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if let Some(m) = &self.memory {
            m.release_frame(self.data.len() + FRAME_OVERHEAD);
        }
    }
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0.data
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:?})", String::from_utf8_lossy(self))
    }
}

/// What the server tells a stream.
#[derive(Debug)]
pub enum Event<'a> {
    /// A chat message; carries `id:` so EventSource can resume.
    Message(&'a Message),
    /// First event of every stream.
    Hello {
        /// The room streamed.
        room: &'a str,
        /// Open streams on the room, this one included.
        online: usize,
        /// Named users on the room, sorted.
        users: &'a [UserName],
    },
    /// A named user opened their first stream on the room.
    Join {
        /// Who.
        user: &'a UserName,
        /// Open streams on the room after the join.
        online: usize,
    },
    /// A named user closed their last stream on the room.
    Leave {
        /// Who.
        user: &'a UserName,
        /// Open streams on the room after the leave.
        online: usize,
    },
    /// Who is on the room now: sent after every change a stream has not
    /// seen yet (after its `join`/`leave` events, if any), so a client that
    /// keeps the last one always knows the exact state.
    Presence {
        /// Open streams on the room.
        online: usize,
        /// Named users on the room, sorted.
        users: &'a [UserName],
    },
    /// Messages after `since` are partly gone from history; replay starts at `first`.
    Gap {
        /// The id the client asked to resume after.
        since: u64,
        /// The oldest id history still holds, if any.
        first: Option<u64>,
    },
    /// Message `target` was deleted. Takes the room's next id (`id`), so a
    /// client that was away and resumes still hears of it.
    Delete {
        /// This event's id in the room.
        id: u64,
        /// The deleted message's id.
        target: u64,
    },
    /// The server is stopping; reconnect after `retry_ms`.
    Shutdown {
        /// Milliseconds the client should wait before reconnecting.
        retry_ms: u64,
    },
}

#[derive(Serialize)]
struct Someone<'a> {
    user: &'a UserName,
    online: usize,
}

#[derive(Serialize)]
struct Everyone<'a> {
    online: usize,
    users: &'a [UserName],
}

#[derive(Serialize)]
struct Hello<'a> {
    room: &'a str,
    online: usize,
    users: &'a [UserName],
}

#[derive(Serialize)]
struct Gap {
    since: u64,
    first: Option<u64>,
}

#[derive(Serialize)]
struct Shutdown {
    retry: u64,
}

/// Encodes one event as SSE bytes.
///
/// # Examples
///
/// ```
/// use smolchat::event::{encode, Event};
///
/// let frame = encode(&Event::Gap { since: 3, first: Some(10) });
/// assert_eq!(&*frame, b"event: gap\ndata: {\"since\":3,\"first\":10}\n\n");
/// ```
pub fn encode(event: &Event<'_>) -> Frame {
    Frame::new(encode_bytes(event))
}

/// Encodes one event into a frame charged to `memory`: how a message
/// enters a room.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use smolchat::event::{encode_in, Event};
/// use smolchat::memory::{Memory, FRAME_OVERHEAD};
///
/// let memory = Arc::new(Memory::new(1 << 20));
/// let frame = encode_in(&Event::Gap { since: 3, first: None }, &memory);
/// assert_eq!(memory.used(), frame.len() + FRAME_OVERHEAD);
/// let shared = frame.clone();
/// drop(frame);
/// assert!(memory.used() > 0, "a clone still holds it");
/// drop(shared);
/// assert_eq!(memory.used(), 0);
/// ```
pub fn encode_in(event: &Event<'_>, memory: &Arc<Memory>) -> Frame {
    Frame::charged(encode_bytes(event), memory)
}

/// The event's bytes, in an allocation of exactly their size.
///
/// Encoded into a reused per-thread buffer first, then copied once: grown
/// in place instead, a 4 KB message's buffer doubled to ~8 KB on its last
/// bytes and was shrunk back, and glibc left a ~4 KB hole beside every
/// frame that the next (growing) frame could not use: 1.67 bytes of
/// resident memory per byte of text, against 1.15 this way (measured by
/// the loadgen's `fill`).
fn encode_bytes(event: &Event<'_>) -> Vec<u8> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(8192));
    }
    SCRATCH.with(|scratch| {
        let mut out = scratch.borrow_mut();
        out.clear();
        encode_into(event, &mut out);
        let exact = out.as_slice().to_vec();
        // A huge event does not keep a huge scratch buffer.
        if out.capacity() > 64 * 1024 {
            *out = Vec::with_capacity(8192);
        }
        exact
    })
}

fn encode_into(event: &Event<'_>, out: &mut Vec<u8>) {
    match event {
        Event::Message(m) => {
            out.extend_from_slice(b"event: message\nid: ");
            push_u64(out, m.id);
            out.extend_from_slice(b"\ndata: ");
            write_message_json(out, m);
            out.extend_from_slice(b"\n\n");
        }
        Event::Hello {
            room,
            online,
            users,
        } => {
            out.extend_from_slice(b"event: hello");
            data(
                out,
                &Hello {
                    room,
                    online: *online,
                    users,
                },
            );
        }
        Event::Join { user, online } => {
            out.extend_from_slice(b"event: join");
            data(
                out,
                &Someone {
                    user,
                    online: *online,
                },
            );
        }
        Event::Leave { user, online } => {
            out.extend_from_slice(b"event: leave");
            data(
                out,
                &Someone {
                    user,
                    online: *online,
                },
            );
        }
        Event::Presence { online, users } => {
            out.extend_from_slice(b"event: presence");
            data(
                out,
                &Everyone {
                    online: *online,
                    users,
                },
            );
        }
        Event::Gap { since, first } => {
            out.extend_from_slice(b"event: gap");
            data(
                out,
                &Gap {
                    since: *since,
                    first: *first,
                },
            );
        }
        Event::Delete { id, target } => {
            out.extend_from_slice(b"event: delete\nid: ");
            out.extend_from_slice(id.to_string().as_bytes());
            data(out, &serde_json::json!({ "id": target }));
        }
        Event::Shutdown { retry_ms } => {
            out.extend_from_slice(b"retry: ");
            out.extend_from_slice(retry_ms.to_string().as_bytes());
            out.extend_from_slice(b"\nevent: shutdown");
            data(out, &Shutdown { retry: *retry_ms });
        }
    }
}

/// The JSON of a `message` frame's `data:` line: the stored message,
/// exactly as `serde_json` encodes it (the `201` body reuses it).
///
/// # Examples
///
/// ```
/// use smolchat::event::{encode, message_json, Event};
/// use smolchat::message::{Message, RoomName, Timestamp, UserName};
///
/// let msg = Message {
///     id: 7,
///     room: RoomName::lobby(),
///     user: UserName::anonymous(),
///     text: "hi".into(),
///     time: Timestamp(0),
///     spans: None,
///     guest: false,
///     deleted: false,
/// };
/// let frame = encode(&Event::Message(&msg));
/// assert_eq!(message_json(&frame), serde_json::to_vec(&msg).unwrap());
/// ```
pub fn message_json(frame: &[u8]) -> &[u8] {
    const DATA: &[u8] = b"\ndata: ";
    let start = frame
        .windows(DATA.len())
        .position(|w| w == DATA)
        .map_or(frame.len(), |i| i + DATA.len());
    let end = frame.len().saturating_sub(2).max(start);
    &frame[start..end]
}

/// `n` in decimal, written into `buf`, without the formatting machinery
/// (a frame's id here, a response's length and status in `http::conn`).
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    std::str::from_utf8(decimal_bytes(n, buf)).unwrap_or("0")
}

/// The digits of `n` in decimal, as bytes: [`decimal`] without the UTF-8
/// check (~60 instructions) where bytes are wanted.
pub(crate) fn decimal_bytes(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal_bytes(n, &mut [0; 20]));
}

/// Appends a message's JSON: what `serde_json` makes of it (a unit test
/// holds the two equal), written field by field, once per post. Through
/// serde each field name was escaped like a value, and each string checked
/// a byte at a time by the escaper; here a string that needs no escape
/// (most do not) is copied as it is.
fn write_message_json(out: &mut Vec<u8>, m: &Message) {
    out.extend_from_slice(b"{\"id\":");
    push_u64(out, m.id);
    out.extend_from_slice(b",\"room\":");
    json_str(out, m.room.as_str());
    out.extend_from_slice(b",\"user\":");
    json_str(out, m.user.as_str());
    out.extend_from_slice(b",\"text\":");
    json_str(out, &m.text);
    out.extend_from_slice(b",\"time\":\"");
    m.time.write_to(out);
    out.push(b'"');
    if let Some(spans) = &m.spans {
        out.extend_from_slice(b",\"spans\":");
        serde_json::to_writer(&mut *out, spans).expect("serializing spans");
    }
    if m.guest {
        out.extend_from_slice(b",\"guest\":true");
    }
    if m.deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    out.push(b'}');
}

/// Appends `s` as a JSON string: as it is, between quotes, when nothing in
/// it needs an escape, else as `serde_json` escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("serializing a string");
    }
}

/// Whether no byte of `s` needs an escape in a JSON string (a control
/// character, `"` or `\`). Eight bytes at a time: for each test, a
/// subtraction that borrows into a byte's top bit exactly when some byte
/// is below the bound (the bit trick "has less", valid for bounds up to
/// 128); a quarter of the instructions of testing byte by byte.
fn needs_no_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const TOPS: u64 = ONES * 0x80;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & TOPS;
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if below(x, 0x20) | below(x ^ (ONES * 0x22), 1) | below(x ^ (ONES * 0x5c), 1) != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Appends `\ndata: <compact JSON>\n\n`.
fn data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"\ndata: ");
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("serializing an event");
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{RoomName, Span, Timestamp};
    use proptest::prelude::*;

    proptest! {
        /// Eight bytes at a time finds what one at a time finds.
        #[test]
        fn words_find_what_needs_an_escape_as_bytes_do(
            bytes in proptest::collection::vec(prop_oneof![
                Just(b'"'), Just(b'\\'), Just(0x1f), Just(0u8), Just(0x20), Just(0x21),
                Just(0x7f), Just(0x80), Just(0xa2), Just(0xdc), Just(0xff), any::<u8>(),
                Just(b'a'),
            ], 0..40),
        ) {
            let each = bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
            prop_assert_eq!(needs_no_escape(&bytes), each);
        }

        /// The message JSON written by hand is serde's, byte for byte.
        #[test]
        fn message_json_is_what_serde_makes(
            id in any::<u64>(),
            room in "[a-z0-9_-]{1,20}",
            user in "\\PC{1,8}|[\"\\\\a]{1,3}",
            text in any::<String>(),
            secs in -100_000_000_000i64..400_000_000_000,
            spans in proptest::option::of(proptest::collection::vec(
                prop_oneof![
                    any::<String>().prop_map(|text| Span::Text { text }),
                    any::<String>().prop_map(|code| Span::Code { code }),
                    (any::<String>(), proptest::option::of("[a-z]{1,5}"))
                        .prop_map(|(block, lang)| Span::Block { block, lang }),
                ],
                0..4,
            )),
            guest in any::<bool>(),
            deleted in any::<bool>(),
        ) {
            let m = Message {
                id,
                room: RoomName::parse(&room).unwrap(),
                user: UserName::parse(&user).unwrap_or_else(|_| UserName::anonymous()),
                text,
                time: Timestamp(secs),
                spans,
                guest,
                deleted,
            };
            let mut ours = Vec::new();
            write_message_json(&mut ours, &m);
            prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&m).unwrap()
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1_000_001, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string());
        }
    }

    fn msg(id: u64, text: &str) -> Message {
        Message {
            id,
            room: RoomName::lobby(),
            user: UserName::parse("ana").unwrap(),
            text: text.into(),
            time: Timestamp(1_795_341_600),
            spans: None,
            guest: false,
            deleted: false,
        }
    }

    /// Splits SSE bytes into events of (field, value) lines, as a browser would.
    fn parse(bytes: &[u8]) -> Vec<Vec<(String, String)>> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.split('\n')
                    .map(|l| {
                        let (k, v) = l.split_once(": ").unwrap_or((l, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_message_is_event_id_and_one_data_line() {
        let f = encode(&Event::Message(&msg(42, "hi 🙂")));
        assert_eq!(
            std::str::from_utf8(&f).unwrap(),
            "event: message\nid: 42\ndata: {\"id\":42,\"room\":\"lobby\",\"user\":\"ana\",\"text\":\"hi 🙂\",\"time\":\"2026-11-22T10:00:00Z\"}\n\n"
        );
    }

    #[test]
    fn text_that_looks_like_sse_stays_inside_one_data_line() {
        for text in [
            "\n\nevent: x\ndata: y",
            "a\rb\r\nc",
            "\u{2028}\u{0}",
            "data: {}\n\nid: 7",
        ] {
            let f = encode(&Event::Message(&msg(1, text)));
            let events = parse(&f);
            assert_eq!(events.len(), 1, "{text:?}");
            let fields: Vec<&str> = events[0].iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(fields, ["event", "id", "data"], "{text:?}");
            let back: serde_json::Value = serde_json::from_str(&events[0][2].1).unwrap();
            assert_eq!(back["text"], text);
            assert!(!f.contains(&b'\r'));
        }
    }

    #[test]
    fn an_empty_text_still_has_a_data_line() {
        let f = encode(&Event::Message(&msg(1, "")));
        assert!(std::str::from_utf8(&f)
            .unwrap()
            .contains("\ndata: {\"id\":1,"));
    }

    #[test]
    fn spans_ride_along_in_the_json() {
        let mut m = msg(2, "see `x`");
        m.spans = Some(vec![
            Span::Text {
                text: "see ".into(),
            },
            Span::Code { code: "x".into() },
        ]);
        let f = encode(&Event::Message(&m));
        assert!(std::str::from_utf8(&f)
            .unwrap()
            .contains(r#""spans":[{"text":"see "},{"code":"x"}]"#));
    }

    #[test]
    fn a_delete_takes_its_own_id_and_names_the_message() {
        assert_eq!(
            &*encode(&Event::Delete { id: 9, target: 4 }),
            b"event: delete\nid: 9\ndata: {\"id\":4}\n\n"
        );
    }

    #[test]
    fn presence_hello_and_shutdown_events() {
        let ana = UserName::parse("ana").unwrap();
        assert_eq!(
            &*encode(&Event::Join {
                user: &ana,
                online: 4
            }),
            b"event: join\ndata: {\"user\":\"ana\",\"online\":4}\n\n"
        );
        assert_eq!(
            &*encode(&Event::Leave {
                user: &ana,
                online: 3
            }),
            b"event: leave\ndata: {\"user\":\"ana\",\"online\":3}\n\n"
        );
        assert_eq!(
            &*encode(&Event::Presence {
                online: 3,
                users: std::slice::from_ref(&ana)
            }),
            b"event: presence\ndata: {\"online\":3,\"users\":[\"ana\"]}\n\n"
        );
        assert_eq!(
            &*encode(&Event::Hello {
                room: "lobby",
                online: 3,
                users: &[ana]
            }),
            b"event: hello\ndata: {\"room\":\"lobby\",\"online\":3,\"users\":[\"ana\"]}\n\n"
        );
        assert_eq!(
            &*encode(&Event::Shutdown { retry_ms: 2500 }),
            b"retry: 2500\nevent: shutdown\ndata: {\"retry\":2500}\n\n"
        );
        assert_eq!(
            &*encode(&Event::Gap {
                since: 1,
                first: None
            }),
            b"event: gap\ndata: {\"since\":1,\"first\":null}\n\n"
        );
    }
}
