//! Target `sse`: every event smolchat sends, read back by a WHATWG
//! event-stream parser ([`crate::event_stream`]).
//!
//! Input: a byte that picks the event (and whether the message carries code
//! spans), two little-endian `u64`s, then `room NUL user NUL users NUL
//! text`, where `users` is a list of names separated by LF. Names go
//! through [`RoomName::parse`] and [`UserName::parse`] as at the HTTP edge
//! (an invalid one becomes `lobby` / `anonymous`), whose rules are checked
//! on the way. For every event:
//!
//! - the frame is UTF-8 and reads as exactly one event, of the event's
//!   name, with no `lastEventId` but a message's id, no `retry` but the
//!   shutdown's, whose `data` is the JSON of the event; a message's JSON is
//!   the message (id, room, user, text, time, spans, guest, deleted) and is what
//!   [`message_json`] cuts out of the frame;
//! - in a stream (the `retry:` preamble, a keep-alive comment, the event
//!   twice), in HTTP chunks decoded by the chunked decoder, the events
//!   come out the same, in order.

use serde_json::{json, Value};
use smolchat::event::{encode, message_json, Event};
use smolchat::http::{chunked, sse};
use smolchat::message::{Message, NameError, RoomName, Span, Timestamp, UserName};
use smolchat::transform::Draft;

use crate::event_stream::{self, Stream};
use crate::input::{fields, header};

/// Checks one input.
pub fn check(data: &[u8]) {
    let (head, rest) = header::<17>(data);
    let a = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(head[9..17].try_into().expect("8 bytes"));
    let parts = fields(rest, 4);
    let part = |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or_default());
    let room = room_name(&part(0));
    let user = user_name(&part(1));
    let users: Vec<UserName> = part(2)
        .split('\n')
        .filter_map(|u| UserName::parse(u).ok())
        .collect();
    let text = part(3).into_owned();
    let online = a as usize;

    let (event, kind, want) = match head[0] % 8 {
        0 | 1 => {
            let spans = if head[0] % 8 == 1 {
                crate::code_pipeline()
                    .apply(Draft::new(text.clone()))
                    .expect("code never refuses")
                    .spans
            } else {
                None
            };
            check_message(&Message {
                id: a,
                room,
                user,
                text,
                time: Timestamp(b as i64),
                spans,
                guest: a & 1 == 1,
                deleted: a & 2 == 2,
            });
            return;
        }
        2 => (
            Event::Hello {
                room: room.as_str(),
                online,
                users: &users,
            },
            "hello",
            json!({"room": room.as_str(), "online": online, "users": names(&users)}),
        ),
        3 => (
            Event::Join {
                user: &user,
                online,
            },
            "join",
            json!({"user": user.as_str(), "online": online}),
        ),
        4 => (
            Event::Leave {
                user: &user,
                online,
            },
            "leave",
            json!({"user": user.as_str(), "online": online}),
        ),
        5 => (
            Event::Presence {
                online,
                users: &users,
            },
            "presence",
            json!({"online": online, "users": names(&users)}),
        ),
        6 => {
            let first = (b != 0).then_some(b);
            (
                Event::Gap { since: a, first },
                "gap",
                json!({"since": a, "first": first}),
            )
        }
        _ => (
            Event::Shutdown { retry_ms: a },
            "shutdown",
            json!({"retry": a}),
        ),
    };
    let frame = encode(&event);
    let read = read_one(&frame);
    let got = &read.events[0];
    assert_eq!((got.kind.as_str(), got.last_event_id.as_str()), (kind, ""));
    let retry = matches!(event, Event::Shutdown { .. }).then_some(a);
    assert_eq!(read.retry, retry);
    assert_eq!(json_of(&got.data), want);
    check_in_a_stream(&frame);
}

fn check_message(msg: &Message) {
    let frame = encode(&Event::Message(msg));
    let read = read_one(&frame);
    let got = &read.events[0];
    assert_eq!(got.kind, "message");
    assert_eq!(got.last_event_id, msg.id.to_string());
    assert_eq!(read.retry, None);
    let v = json_of(&got.data);
    assert_eq!(v["id"].as_u64(), Some(msg.id));
    assert_eq!(v["room"].as_str(), Some(msg.room.as_str()));
    assert_eq!(v["user"].as_str(), Some(msg.user.as_str()));
    assert_eq!(v["text"].as_str(), Some(msg.text.as_str()));
    assert_eq!(v["time"].as_str(), Some(msg.time.to_string().as_str()));
    match &msg.spans {
        None => assert!(v.get("spans").is_none()),
        Some(spans) => {
            let back: Vec<Span> =
                serde_json::from_value(v["spans"].clone()).expect("spans read back");
            assert_eq!(&back, spans);
        }
    }
    assert_eq!(v.get("guest").is_some(), msg.guest);
    assert_eq!(v.get("deleted").is_some(), msg.deleted);
    if msg.guest {
        assert_eq!(v["guest"].as_bool(), Some(true));
    }
    if msg.deleted {
        assert_eq!(v["deleted"].as_bool(), Some(true));
    }
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(5 + msg.spans.is_some() as usize + msg.guest as usize + msg.deleted as usize)
    );
    assert_eq!(
        message_json(&frame),
        serde_json::to_vec(msg).expect("a message serializes")
    );
    check_in_a_stream(&frame);
}

/// Reads `frame` as a whole stream: exactly one event.
fn read_one(frame: &[u8]) -> Stream {
    let text = std::str::from_utf8(frame).expect("a frame is utf-8");
    let read = event_stream::parse(frame);
    assert_eq!(read.events.len(), 1, "{text:?}");
    read
}

fn json_of(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data:?}"))
}

/// The frame as a stream sends it: after the `retry:` preamble, beside a
/// keep-alive, in HTTP chunks.
fn check_in_a_stream(frame: &[u8]) {
    let alone = event_stream::parse(frame);
    let mut plain = sse::retry(2000);
    plain.extend_from_slice(frame);
    plain.extend_from_slice(sse::PING);
    plain.extend_from_slice(frame);
    let mut chunks = Vec::new();
    sse::chunk(&sse::retry(2000), &mut chunks);
    sse::chunk(frame, &mut chunks);
    sse::chunk(sse::PING, &mut chunks);
    sse::chunk(frame, &mut chunks);
    chunks.extend_from_slice(sse::LAST_CHUNK);
    let (body, used) = chunked::decode(&chunks, usize::MAX)
        .expect("valid chunks")
        .expect("complete chunks");
    assert_eq!((body.as_slice(), used), (plain.as_slice(), chunks.len()));

    let read = event_stream::parse(&body);
    let twice = [alone.events.clone(), alone.events].concat();
    assert_eq!(read.events, twice);
    assert_eq!(read.retry, alone.retry.or(Some(2000)));
}

fn names(users: &[UserName]) -> Vec<&str> {
    users.iter().map(UserName::as_str).collect()
}

/// [`RoomName::parse`], checked against its rule: 1 to 64 bytes of
/// `[A-Za-z0-9_.-]`. An invalid name becomes `lobby`.
fn room_name(s: &str) -> RoomName {
    let valid = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    match RoomName::parse(s) {
        Ok(r) => {
            assert!(valid && r.as_str() == s, "{s:?}");
            r
        }
        Err(_) => {
            assert!(!valid, "{s:?}");
            RoomName::lobby()
        }
    }
}

/// [`UserName::parse`], checked against its rule: trimmed, 1 to 32
/// characters, no control character; beyond that the input policy may
/// refuse a name only for characters that show nothing or turn the text's
/// direction, or for stacked accents (never kept in an accepted name). An
/// invalid name becomes `anonymous`.
fn user_name(s: &str) -> UserName {
    let t = s.trim();
    let valid = (1..=32).contains(&t.chars().count()) && !t.chars().any(char::is_control);
    let hidden = |c: char| {
        matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
    };
    match UserName::parse(s) {
        Ok(u) => {
            assert!(valid && u.as_str() == t, "{s:?}");
            assert!(!u.as_str().chars().any(hidden), "{s:?}");
            u
        }
        Err(e) => {
            assert!(
                !valid || matches!(e, NameError::UserInvisible | NameError::UserMarks),
                "{s:?}: {e:?}"
            );
            UserName::anonymous()
        }
    }
}
