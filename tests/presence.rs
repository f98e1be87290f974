//! Presence is exact: after any sequence of connects and disconnects —
//! named, unnamed, the same name on two streams, with the room's message
//! queue full part of the time — every open stream's last-known count and
//! user list converge to the server's (`GET /rooms`), and that is the truth
//! (the streams the test holds open).

mod support;

use std::collections::BTreeSet;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{read_response, Server, Sse, WAIT};

/// Longest a test waits for presence to settle. The server converges in
/// well under a second; this is generous for a loaded machine or qemu.
const SETTLE: Duration = Duration::from_secs(30);

/// What a client knows about who is on the room, from the events it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Known {
    online: u64,
    users: BTreeSet<String>,
}

impl Known {
    /// Folds one event into what the client knows, as the page does.
    fn apply(&mut self, ev: &support::Event) {
        let users = |v: &serde_json::Value| -> BTreeSet<String> {
            v["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
                .collect()
        };
        match ev.event.as_str() {
            "hello" | "presence" => {
                let v = ev.json();
                self.online = v["online"].as_u64().unwrap();
                self.users = users(&v);
            }
            "join" | "leave" => {
                let v = ev.json();
                self.online = v["online"].as_u64().unwrap();
                let user = v["user"].as_str().unwrap().to_string();
                if ev.event == "join" {
                    self.users.insert(user);
                } else {
                    self.users.remove(&user);
                }
            }
            _ => {}
        }
    }
}

/// A stream the test holds open, with the name it gave (if any).
struct Client {
    name: Option<&'static str>,
    sse: Sse,
    known: Known,
}

/// The room's entry in `GET /rooms`, as [`Known`].
fn server_view(s: &Server, room: &str) -> Known {
    let rooms = s.get("/rooms").json();
    let r = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == room)
        .unwrap_or_else(|| panic!("no room {room} in {rooms}"));
    Known {
        online: r["online"].as_u64().unwrap(),
        users: r["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect(),
    }
}

/// A client socket with a tiny receive buffer that opens a stream and reads
/// nothing (until the test hands it to a reader).
fn stalled_subscriber(s: &Server, path: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.connect_timeout(&s.addr.into(), WAIT).unwrap();
    let mut stream: TcpStream = sock.into();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    stream
}

#[test]
fn every_stream_converges_to_the_exact_presence_after_random_churn_with_a_full_queue() {
    let s = Server::start(&[
        "--buffer",
        "4",
        "--publish-timeout",
        "100ms",
        "--slow-timeout",
        "300s",
        "--rate",
        "0",
        "--max-message-bytes",
        "8192",
    ]);
    let room = "churn";
    let path = format!("/rooms/{room}/events");

    // An unnamed stream that reads nothing: posts fill the queue behind it.
    let stalled = stalled_subscriber(&s, &path);
    s.wait_metric("smolchat_subscribers", 1);
    let mut conn = BufReader::new(s.connect());
    let filler = "x".repeat(4000);
    let full_at = Instant::now();
    loop {
        assert!(
            full_at.elapsed() < SETTLE,
            "the queue never filled behind a stalled stream"
        );
        let req = support::post_bytes(
            &format!("/rooms/{room}/messages"),
            &["Content-Type: text/plain"],
            filler.as_bytes(),
        );
        conn.get_mut().write_all(&req).unwrap();
        if read_response(&mut conn).unwrap().status == 503 {
            break;
        }
    }

    // 200 random steps. Each name may be on several streams at once.
    let mut rng = fastrand::Rng::with_seed(0x5eed_0010);
    let names = [Some("ana"), Some("bob"), Some("cy"), None];
    let mut open: Vec<Client> = Vec::new();
    let mut drain = None;
    for step in 0..200 {
        if step == 100 {
            // The stalled stream starts reading: the queue empties.
            let mut sock = stalled.try_clone().unwrap();
            drain = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while matches!(sock.read(&mut buf), Ok(n) if n > 0) {}
            }));
        }
        if open.is_empty() || (open.len() < 40 && rng.bool()) {
            let name = names[rng.usize(..names.len())];
            let url = match name {
                Some(n) => format!("{path}?user={n}"),
                None => path.clone(),
            };
            let sse = s.sse(&url);
            assert_eq!(sse.response.status, 200, "step {step}");
            open.push(Client {
                name,
                sse,
                known: Known::default(),
            });
        } else {
            drop(open.swap_remove(rng.usize(..open.len())));
        }
    }

    // The truth: the streams held open, plus the stalled one.
    let truth = Known {
        online: open.len() as u64 + 1,
        users: open
            .iter()
            .filter_map(|c| c.name.map(str::to_string))
            .collect(),
    };
    let settled = Instant::now() + SETTLE;
    loop {
        let view = server_view(&s, room);
        if view == truth {
            break;
        }
        assert!(
            Instant::now() < settled,
            "GET /rooms says {view:?}, the open streams are {truth:?}"
        );
        std::thread::yield_now();
    }

    // Every stream's own view converges to the same.
    for c in &mut open {
        settle(&mut c.sse, &mut c.known, &truth);
    }
    // Nothing more to come that would change it: a post goes through (the
    // queue has room again) and each stream sees it with no presence change
    // in between.
    let posted = s.say(room, "ana", "settled");
    assert_eq!(posted.status, 201);
    for c in &mut open {
        loop {
            let ev = c.sse.next_event();
            c.known.apply(&ev);
            if ev.event == "message" && ev.json()["text"] == "settled" {
                break;
            }
        }
        assert_eq!(c.known, truth);
    }
    drop(open);
    drop(stalled);
    drop(conn);
    drop(s);
    if let Some(d) = drain {
        d.join().unwrap();
    }
}

/// Reads `sse` until what it knows equals `want`; returns the events read.
fn settle(sse: &mut Sse, known: &mut Known, want: &Known) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    let mut seen = Vec::new();
    while known != want {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = sse
            .next_within(left)
            .unwrap_or_else(|| panic!("stuck at {known:?}, expected {want:?}, after {seen:?}"));
        known.apply(&ev);
        if !ev.event.is_empty() {
            seen.push(ev.event);
        }
    }
    seen
}

fn known(online: u64, users: &[&str]) -> Known {
    Known {
        online,
        users: users.iter().map(|u| u.to_string()).collect(),
    }
}

#[test]
fn a_stream_sees_an_unnamed_stream_leave() {
    let s = Server::start(&[]);
    let mut watcher = s.sse("/rooms/quiet/events?user=ana");
    let mut k = Known::default();
    settle(&mut watcher, &mut k, &known(1, &["ana"]));
    let other = s.sse("/rooms/quiet/events");
    settle(&mut watcher, &mut k, &known(2, &["ana"]));
    drop(other);
    let events = settle(&mut watcher, &mut k, &known(1, &["ana"]));
    assert_eq!(
        events,
        ["presence"],
        "an unnamed stream leaves without a leave event"
    );
}

#[test]
fn the_same_name_on_two_streams_joins_once_and_leaves_once() {
    let s = Server::start(&[]);
    let mut watcher = s.sse("/rooms/twice/events");
    let mut k = Known::default();
    settle(&mut watcher, &mut k, &known(1, &[]));
    let first = s.sse("/rooms/twice/events?user=bob");
    let second = s.sse("/rooms/twice/events?user=bob");
    let events = settle(&mut watcher, &mut k, &known(3, &["bob"]));
    assert_eq!(
        events.iter().filter(|e| *e == "join").count(),
        1,
        "{events:?}"
    );
    drop(first);
    let events = settle(&mut watcher, &mut k, &known(2, &["bob"]));
    assert!(
        !events.contains(&"leave".to_string()),
        "bob still has a stream: {events:?}"
    );
    drop(second);
    let events = settle(&mut watcher, &mut k, &known(1, &[]));
    assert_eq!(
        events,
        ["leave"],
        "one leave, and it alone brings the state"
    );
}
