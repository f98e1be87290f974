//! Memory is bounded in total (`--memory-limit`): fills many rooms far past
//! the budget with both stores, checks the budget and the process's memory
//! while it happens, that every message stays readable with the SQLite
//! store, that reads are the same bytes whatever the budget, that a large
//! database is not read at start, the per-address connection cap, and that
//! posts are refused (then accepted again) when nothing can be evicted.
//!
//! Sized for CI: an 8 MiB budget, 64 rooms.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{emulated, read_response, Scratch, Server, WAIT};

const ROOMS: usize = 64;
const LIMIT: &str = "8MiB";
const LIMIT_BYTES: u64 = 8 << 20;
/// What the process may grow beyond the budget: code, buffers, allocator
/// slack.
const SLACK: u64 = 16 << 20;

/// A 4,000-byte text that says which message it is.
fn text(room: usize, n: usize) -> String {
    let head = format!("r{room} m{n} ");
    format!("{head}{}", "x".repeat(4000 - head.len()))
}

/// Posts `per_room` messages to each of `ROOMS` rooms (round robin, on one
/// keep-alive connection), checking the budget as it goes; returns each
/// room's ids in order.
fn fill(s: &Server, per_room: usize) -> Vec<Vec<u64>> {
    let mut conn = BufReader::new(s.connect());
    let mut ids = vec![Vec::new(); ROOMS];
    for n in 0..per_room {
        for (room, ids) in ids.iter_mut().enumerate() {
            let req = support::post_bytes(
                &format!("/rooms/r{room}/messages"),
                &["Content-Type: text/plain"],
                text(room, n).as_bytes(),
            );
            conn.get_mut().write_all(&req).unwrap();
            let r = read_response(&mut conn).unwrap();
            assert_eq!(r.status, 201, "{}", r.text());
            ids.push(r.json()["id"].as_u64().unwrap());
        }
        if n % 8 == 0 {
            let used = s.metric("smolchat_memory_bytes");
            assert!(used <= LIMIT_BYTES, "budget exceeded: {used} bytes");
        }
    }
    ids
}

/// Peak RSS growth since `before` (kB), checked against the budget.
fn check_rss(s: &Server, before_kb: u64) {
    let grew = s.status_kb("VmHWM").saturating_sub(before_kb) * 1024;
    assert!(
        grew <= LIMIT_BYTES + SLACK,
        "peak RSS grew {} MiB with a {LIMIT} budget",
        grew >> 20
    );
}

#[test]
fn the_budget_holds_under_a_fill_without_a_database_and_old_messages_become_a_gap() {
    let s = Server::start(&["--memory-limit", LIMIT, "--rate", "0"]);
    let before = s.status_kb("VmRSS");
    // 64 rooms x 96 x 4 KB = 24 MiB of text, three budgets' worth.
    let ids = fill(&s, 96);
    check_rss(&s, before);
    let used = s.metric("smolchat_memory_bytes");
    assert!(used > LIMIT_BYTES / 2, "the budget is used: {used}");
    // The oldest messages went first: room 0's first message is gone, and
    // a resume from before it says so; its newest messages are still here.
    let mut resume = s.sse_with("/rooms/r0/events", &["Last-Event-ID: 0"]);
    let gap = resume.until("gap").json();
    assert!(gap["first"].as_u64().unwrap() > 1, "{gap}");
    let last = *ids[0].last().unwrap();
    let page = s
        .get(&format!("/rooms/r0/messages?since={}", last - 1))
        .json();
    assert_eq!(page[0]["text"], text(0, 95));
}

/// Every message of every room, read back through the API: (id, text).
fn read_all(s: &Server, room: usize) -> Vec<(u64, String)> {
    let page = s
        .get(&format!("/rooms/r{room}/messages?since=0&limit=1000"))
        .json();
    page.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_budget_holds_under_a_fill_with_sqlite_and_every_message_stays_readable() {
    let dir = Scratch::new("mem-fill");
    let s = Server::start(&[
        "--db",
        &dir.db(),
        "--sync",
        "normal",
        "--memory-limit",
        LIMIT,
        "--rate",
        "0",
    ]);
    let before = s.status_kb("VmRSS");
    let ids = fill(&s, 96);
    check_rss(&s, before);
    for (room, ids) in ids.iter().enumerate() {
        let got = read_all(&s, room);
        let want: Vec<(u64, String)> = ids
            .iter()
            .enumerate()
            .map(|(n, &id)| (id, text(room, n)))
            .collect();
        assert_eq!(got, want, "room r{room}");
    }
    // A resume from the start is served from the file, gapless.
    let mut resume = s.sse_with("/rooms/r3/events", &["Last-Event-ID: 0"]);
    let got: Vec<u64> = resume
        .messages(96)
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids[3]);
    check_rss(&s, before);
}

/// Messages per room in the same-bytes test: more than one store read
/// returns (64), so long pages and resumes come from several.
const PER_ROOM: u64 = 150;

/// The bytes a set of reads returns: history pages, resumed streams and a
/// new stream's replay (everything after its `hello`).
fn reads(s: &Server) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for room in [0, 1, 17, 63] {
        for q in [
            "",
            "?limit=7",
            "?since=0&limit=1000",
            "?since=40&limit=5",
            "?since=10&limit=130",
            "?since=999",
        ] {
            let body = s.get(&format!("/rooms/r{room}/messages{q}")).body;
            if q == "?since=0&limit=1000" {
                // Whole, across several store reads.
                let page: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                let ids: Vec<u64> = page.iter().map(|m| m["id"].as_u64().unwrap()).collect();
                assert_eq!(ids, (1..=PER_ROOM).collect::<Vec<_>>(), "r{room}");
            }
            out.push(body);
        }
        for since in [None, Some(0), Some(10), Some(47), Some(999)] {
            let headers: Vec<String> = since
                .map(|n| format!("Last-Event-ID: {n}"))
                .into_iter()
                .collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let mut sse = s.sse_with(&format!("/rooms/r{room}/events"), &headers);
            sse.until("hello");
            let mut events = Vec::new();
            // Every replay ends with the room's last message, except a
            // resume from beyond it: that one gets a moment to show
            // anything it wrongly sends. Presence changes as the previous
            // stream leaves: not part of what is compared.
            let last = PER_ROOM.to_string();
            let ends = since.is_none_or(|n| n < PER_ROOM);
            loop {
                let ev = if ends {
                    sse.next().expect("the replay reaches the last message")
                } else {
                    match sse.next_within(Duration::from_millis(300)) {
                        Some(ev) => ev,
                        None => break,
                    }
                };
                if ev.event == "message" || ev.event == "gap" {
                    events.extend(format!("{}|{:?}|{}\n", ev.event, ev.id, ev.data).into_bytes());
                    if ev.event == "message" && ev.id.as_deref() == Some(last.as_str()) {
                        break;
                    }
                }
            }
            out.push(events);
        }
    }
    out
}

#[test]
fn reads_return_the_same_bytes_with_a_huge_and_a_tiny_budget() {
    let dir = Scratch::new("mem-same");
    let db = dir.db();
    {
        let s = Server::start(&["--db", &db, "--rate", "0", "--replay", "20"]);
        let mut conn = BufReader::new(s.connect());
        for n in 0..PER_ROOM as usize {
            for room in [0, 1, 17, 63] {
                let req = support::post_bytes(
                    &format!("/rooms/r{room}/messages"),
                    &["Content-Type: text/plain"],
                    text(room, n).as_bytes(),
                );
                conn.get_mut().write_all(&req).unwrap();
                assert_eq!(read_response(&mut conn).unwrap().status, 201);
            }
        }
        let mut s = s;
        s.signal("TERM");
        assert!(s.wait_exit(WAIT).expect("exits").success());
    }
    let copy = dir.0.join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let huge = Server::start(&["--db", &db, "--replay", "20", "--memory-limit", "1GiB"]);
    let huge_reads = reads(&huge);
    drop(huge);
    // 64 KiB holds about a dozen of these messages: almost every read
    // misses memory and goes to the file.
    let tiny = Server::start(&[
        "--db",
        copy.to_str().unwrap(),
        "--replay",
        "20",
        "--memory-limit",
        "64KiB",
    ]);
    let tiny_reads = reads(&tiny);
    assert_eq!(huge_reads.len(), tiny_reads.len());
    for (i, (a, b)) in huge_reads.iter().zip(&tiny_reads).enumerate() {
        // Summaries on failure: each read is up to 200 KB.
        let short = |r: &[u8]| {
            let s = String::from_utf8_lossy(r);
            let ids: Vec<&str> = s
                .match_indices("\"id\":")
                .map(|(i, _)| &s[i..(i + 9).min(s.len())])
                .collect();
            format!("{} bytes, {ids:?}", r.len())
        };
        assert!(a == b, "read {i} differs: {} vs {}", short(a), short(b));
    }
    assert!(
        huge_reads.iter().map(Vec::len).sum::<usize>() > 48 * 4 * 4000,
        "the reads returned messages"
    );
}

#[test]
fn a_large_database_is_not_read_at_start() {
    let dir = Scratch::new("mem-lazy");
    let db = dir.db();
    // Let smolchat create the schema, then fill the file directly.
    let mut s = Server::start(&["--db", &db]);
    let empty_rss = s.status_kb("VmRSS");
    s.signal("TERM");
    assert!(s.wait_exit(WAIT).expect("exits").success());
    let (rooms, per_room) = (1000usize, 20i64);
    {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut room = tx
                .prepare("INSERT INTO rooms (name, last_id) VALUES (?1, ?2)")
                .unwrap();
            let mut msg = tx
                .prepare("INSERT INTO messages (room, id, user, text, spans, time) VALUES (?1, ?2, 'ana', ?3, NULL, 1795341600)")
                .unwrap();
            for r in 0..rooms {
                let name = format!("big{r}");
                room.execute(rusqlite::params![name, per_room]).unwrap();
                for id in 1..=per_room {
                    msg.execute(rusqlite::params![name, id, text(r, id as usize)])
                        .unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size > 64 << 20, "a large file: {size} bytes");

    let s = Server::start(&["--db", &db]);
    let rss = s.status_kb("VmRSS");
    assert!(
        rss <= empty_rss + 4 * 1024,
        "RSS after start {rss} kB, with an empty file {empty_rss} kB"
    );
    if !emulated() {
        assert!(rss <= 16 * 1024, "RSS after start {rss} kB");
    }
    // The first read of a room loads it: its newest messages, its next id.
    let page = s.get("/rooms/big500/messages?limit=3").json();
    let ids: Vec<u64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [18, 19, 20]);
    assert_eq!(page[2]["text"], text(500, 20));
    assert_eq!(s.say("big500", "bob", "next").json()["id"], 21);
    let rooms_listed = s.get("/rooms").json();
    assert_eq!(rooms_listed.as_array().unwrap().len(), rooms);
    assert_eq!(s.metric("smolchat_rooms"), 1, "one room in memory");
}

/// Connects to `s` from the local address `from` (any 127.0.0.x works on
/// Linux without setup).
fn connect_from(s: &Server, from: [u8; 4]) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.connect_timeout(&s.addr.into(), WAIT).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Sends a GET on `conn` and reads the answer's status line.
fn status_of(conn: &mut TcpStream, path: &str) -> (u16, String) {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(&mut BufReader::new(conn.try_clone().unwrap())).unwrap();
    let retry = r.header("retry-after").unwrap_or("").to_string();
    (r.status, format!("{} {retry}", r.text()))
}

#[test]
fn one_address_cannot_take_every_connection() {
    let s = Server::start(&["--max-connections-per-ip", "3"]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from(&s, [127, 0, 0, 2])).collect();
    for c in &mut held {
        assert_eq!(status_of(c, "/healthz").0, 200);
    }
    let fourth = connect_from(&s, [127, 0, 0, 2]);
    let mut conn = BufReader::new(&fourth);
    conn.get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut conn).unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error(), "too many connections from your address");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    // ... and the server closes the connection after the answer: the next
    // read is the end of the stream, not a timeout at the deadline.
    let mut rest = Vec::new();
    let end = conn.read_to_end(&mut rest);
    assert!(
        matches!(end, Ok(0)),
        "the refused connection stayed open: {end:?}, {rest:?}"
    );
    // Others are not affected.
    let mut other = connect_from(&s, [127, 0, 0, 3]);
    assert_eq!(status_of(&mut other, "/healthz").0, 200);
    assert_eq!(s.metric("smolchat_connections_refused_per_ip_total"), 1);
    // A slot frees when a connection closes.
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = connect_from(&s, [127, 0, 0, 2]);
        if status_of(&mut again, "/healthz").0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection never freed its slot"
        );
    }
}

#[test]
fn behind_a_trusted_proxy_streams_are_counted_by_forwarded_address() {
    let s = Server::start(&["--max-connections-per-ip", "2", "--trust-proxy"]);
    let stream = |client: &str| s.sse_with("/events", &[&format!("X-Forwarded-For: {client}")]);
    let a1 = stream("198.51.100.7");
    let _a2 = stream("198.51.100.7");
    assert_eq!((a1.response.status, _a2.response.status), (200, 200));
    let a3 = stream("198.51.100.7");
    assert_eq!(a3.response.status, 429);
    assert_eq!(stream("198.51.100.8").response.status, 200);
    // Ordinary requests through the proxy are not capped.
    for _ in 0..5 {
        assert_eq!(s.get("/healthz").status, 200);
    }
    drop(a1);
    let deadline = Instant::now() + WAIT;
    while stream("198.51.100.7").response.status != 200 {
        assert!(
            Instant::now() < deadline,
            "the closed stream never freed its slot"
        );
    }
}

/// A socket with a tiny receive buffer that opens a stream and never reads.
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
fn posts_get_503_when_the_budget_is_full_of_queued_messages_then_recover() {
    admission_then_recovery(None);
}

#[test]
fn with_sqlite_posts_get_503_when_the_budget_is_full_of_queued_messages_then_recover() {
    let dir = Scratch::new("mem-admission");
    admission_then_recovery(Some(&dir.db()));
}

/// Fills the budget with messages queued for a stalled stream, until posts
/// get 503; checks nothing accepted is lost and posts are accepted again
/// once the stalled stream goes. With a database file (`db`), or without.
fn admission_then_recovery(db: Option<&str>) {
    // A queue long enough that memory, not the queue, is what runs out.
    let mut args = vec![
        "--memory-limit",
        "256KiB",
        "--buffer",
        "1000",
        "--slow-timeout",
        "300s",
        "--rate",
        "0",
    ];
    if let Some(db) = db {
        args.extend(["--db", db, "--sync", "normal"]);
    }
    let s = Server::start(&args);
    let mut reader = s.sse("/rooms/other/events");
    reader.until("hello");
    let stalled = stalled_subscriber(&s, "/rooms/full/events");
    s.wait_metric("smolchat_subscribers", 2);
    let mut conn = BufReader::new(s.connect());
    let mut post = |room: &str, body: &str| {
        let req = support::post_bytes(
            &format!("/rooms/{room}/messages"),
            &["Content-Type: text/plain"],
            body.as_bytes(),
        );
        conn.get_mut().write_all(&req).unwrap();
        read_response(&mut conn).unwrap()
    };
    let mut accepted = 0;
    let refused = loop {
        let r = post("full", &text(0, accepted));
        if r.status != 201 {
            break r;
        }
        accepted += 1;
        assert!(accepted < 1000, "the budget never filled");
    };
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error(), "server memory budget reached; try again");
    assert!(refused.header("retry-after").is_some());
    let health = s.get("/healthz").json();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["reason"], "server memory budget reached; try again");
    // Streams keep working. Without a database the budget is a hard
    // bound: the oldest messages (those the stalled stream had already
    // taken) may have left history, which a resume is told with a gap; every
    // message still queued is still there. With one, a resume reads what
    // left memory from the file: every message, no gap.
    let mut check = s.sse_with("/rooms/full/events", &["Last-Event-ID: 0"]);
    let mut ids = Vec::new();
    let mut gap_first = None;
    while ids.last() != Some(&(accepted as u64)) {
        let ev = check.next_event();
        match ev.event.as_str() {
            "gap" => gap_first = ev.json()["first"].as_u64(),
            "message" => ids.push(ev.json()["id"].as_u64().unwrap()),
            _ => {}
        }
    }
    if db.is_some() {
        assert_eq!(gap_first, None, "a gap with the database");
    }
    let first = gap_first.unwrap_or(1);
    assert_eq!(ids, (first..=accepted as u64).collect::<Vec<_>>());
    assert!(
        accepted as u64 - first > 40,
        "the queued messages stay: {first}..={accepted}"
    );
    drop(check);
    // The stalled subscriber goes: its queued messages free the budget.
    drop(stalled);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = post("other", "after");
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(Instant::now() < deadline, "posts never recovered");
    }
    assert_eq!(reader.until("message").json()["text"], "after");
    assert_eq!(s.get("/healthz").json()["status"], "ok");
    let mut drained = Vec::new();
    let _ = reader
        .socket()
        .set_read_timeout(Some(Duration::from_millis(1)));
    let _ = reader.socket().read(&mut drained);
}

/// Posts `text` to `room`; the answer.
fn post_text(s: &Server, room: &str, text: &str) -> support::Response {
    s.post(&format!("/rooms/{room}/messages"), "text/plain", text)
}

/// A room's messages read through the API: (id, text).
fn history(s: &Server, room: &str) -> Vec<(u64, String)> {
    let r = s.get(&format!("/rooms/{room}/messages?since=0&limit=1000"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn with_sqlite_an_idle_room_leaves_memory_for_a_new_one_and_comes_back_whole() {
    let dir = Scratch::new("mem-rooms");
    let s = Server::start(&[
        "--db",
        &dir.db(),
        "--max-rooms",
        "2",
        "--rate",
        "0",
        "--sync",
        "normal",
    ]);
    let said = |room: &str, n: u64| (n, format!("{room} {n}"));
    for n in 1..=3 {
        assert_eq!(post_text(&s, "a", &said("a", n).1).status, 201);
    }
    for n in 1..=2 {
        assert_eq!(post_text(&s, "b", &said("b", n).1).status, 201);
    }
    assert_eq!(s.metric("smolchat_rooms"), 2);
    // A third room: the least recently used idle one (a) leaves memory.
    let r = post_text(&s, "c", "c 1");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.metric("smolchat_rooms"), 2);
    // a comes back from the file, messages and ids intact, and its ids go on
    // (b leaves for it).
    let a: Vec<_> = (1..=3).map(|n| said("a", n)).collect();
    assert_eq!(history(&s, "a"), a);
    assert_eq!(post_text(&s, "a", "a 4").json()["id"], 4);
    assert_eq!(s.metric("smolchat_rooms"), 2);
    let mut replay = s.sse_with("/rooms/b/events", &["Last-Event-ID: 0"]);
    let got: Vec<(u64, String)> = replay
        .messages(2)
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [said("b", 1), said("b", 2)],
        "b, read back by a stream"
    );
    // Two rooms in use (a stream each): no room can leave, a new one is
    // refused, and so is one that is only in the file.
    let mut on_a = s.sse("/rooms/a/events");
    on_a.until("hello");
    assert_eq!(s.metric("smolchat_rooms"), 2);
    let refused = post_text(&s, "d", "d 1");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error(), "too many rooms");
    assert_eq!(post_text(&s, "c", "c 2").status, 503);
    // When b's stream goes, b can leave memory again.
    drop(replay);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = post_text(&s, "c", "c 2");
        if r.status == 201 {
            assert_eq!(r.json()["id"], 2, "c's ids go on");
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(Instant::now() < deadline, "b never left memory");
    }
    assert_eq!(history(&s, "c"), [(1, "c 1".into()), (2, "c 2".into())]);
    // a stayed in memory, with its stream.
    assert_eq!(post_text(&s, "a", "a 5").json()["id"], 5);
    while on_a.until("message").json()["text"] != "a 5" {}
    assert_eq!(s.metric("smolchat_rooms"), 2);
}
