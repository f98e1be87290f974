//! Backpressure end to end: a subscriber that stops reading holds posters
//! back, posts then get 503 and are neither stored nor delivered, the stalled
//! subscriber is cut after --slow-timeout, and a reading subscriber gets
//! every accepted message exactly once, in order, throughout.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{read_response, Server, WAIT};

/// A client socket with a tiny receive buffer that sends a stream request
/// and never reads.
fn stalled_subscriber(s: &Server, path: &str) -> TcpStream {
    subscriber_with_buffer(s, path, 2048)
}

/// A client socket with a receive buffer of `size` that sends a stream
/// request and reads nothing until the test reads it.
fn subscriber_with_buffer(s: &Server, path: &str, size: usize) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(size).unwrap();
    sock.connect_timeout(&s.addr.into(), WAIT).unwrap();
    let mut stream: TcpStream = sock.into();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    stream
}

#[test]
fn a_stalled_subscriber_holds_posts_back_then_is_cut_while_others_get_everything() {
    let publish_timeout = Duration::from_millis(500);
    let s = Server::start(&[
        "--buffer",
        "4",
        "--publish-timeout",
        "500ms",
        "--slow-timeout",
        "2s",
        "--rate",
        "0",
        "--max-message-bytes",
        "8192",
    ]);
    let path = "/rooms/bp/events";

    // A subscriber that reads everything, on its own thread.
    let mut reader = s.sse(path);
    reader.until("hello");
    let collector = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            let m = reader.until("message").json();
            if m["text"] == "done" {
                return got;
            }
            got.push((
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            ));
        }
    });

    let stalled = stalled_subscriber(&s, path);
    s.wait_metric("smolchat_subscribers", 2);

    // Post big messages on one keep-alive connection until the room pushes back.
    let mut conn = BufReader::new(s.connect());
    let mut post = |text: &str| {
        let req = support::post_bytes(
            "/rooms/bp/messages",
            &["Content-Type: text/plain"],
            text.as_bytes(),
        );
        conn.get_mut().write_all(&req).unwrap();
        let started = Instant::now();
        let r = read_response(&mut conn).unwrap();
        (r, started.elapsed())
    };
    let filler = "x".repeat(4000);
    let mut accepted = Vec::new();
    let refused = loop {
        assert!(
            accepted.len() < 500,
            "posts never waited: the stalled subscriber did not hold the room"
        );
        let text = format!("{}-{filler}", accepted.len() + 1);
        let (r, took) = post(&text);
        match r.status {
            201 => accepted.push((r.json()["id"].as_u64().unwrap(), text)),
            503 => break (r, took, text),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    };
    let (r, took, refused_text) = refused;
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("congested"), "{}", r.error());
    assert!(
        took >= publish_timeout - Duration::from_millis(50),
        "503 came after {took:?}, before --publish-timeout"
    );
    let n = accepted.len() as u64;
    assert_eq!(
        accepted.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );

    // After --slow-timeout without progress the stalled stream is cut, and
    // posting works again with the next consecutive id.
    s.wait_metric("smolchat_subscribers_evicted_total", 1);
    s.wait_metric("smolchat_subscribers", 1);
    let (r, _) = post("after the cut");
    assert_eq!(
        (r.status, r.json()["id"].as_u64()),
        (201, Some(n + 1)),
        "the refused post used no id"
    );
    accepted.push((n + 1, "after the cut".to_string()));
    let (r, _) = post("done");
    assert_eq!(r.status, 201);

    // The reading subscriber got exactly the accepted messages, in order.
    let got = collector.join().unwrap();
    assert_eq!(got.len(), accepted.len());
    assert!(
        got == accepted,
        "delivered messages differ from accepted ones"
    );
    // The refused message is nowhere: not delivered, not in history.
    let history = s.get("/rooms/bp/messages?limit=1000").json();
    assert!(history
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["text"] != refused_text.as_str()));
    assert_eq!(s.metric("smolchat_posts_refused_total{status=\"503\"}"), 1);

    // The server closed the stalled socket: reading it drains to EOF.
    stalled.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let _ = (&stalled).read_to_end(&mut sink);
}

#[test]
fn a_reading_subscriber_never_makes_posts_wait() {
    let s = Server::start(&["--buffer", "2", "--publish-timeout", "30s", "--rate", "0"]);
    let mut sub = s.sse("/rooms/q/events");
    sub.until("hello");
    let poster = {
        let addr = s.addr;
        std::thread::spawn(move || {
            let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
            for i in 0..200 {
                let req = support::post_bytes(
                    "/rooms/q/messages",
                    &["Content-Type: text/plain"],
                    format!("{i}").as_bytes(),
                );
                conn.get_mut().write_all(&req).unwrap();
                assert_eq!(read_response(&mut conn).unwrap().status, 201);
            }
        })
    };
    let got: Vec<u64> = sub
        .messages(200)
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    poster.join().unwrap();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
}

/// The ids of the complete events in what a cut stream received: up to
/// its last blank line (a chunk holds whole events; a cut ends mid-chunk).
fn complete_ids(raw: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(raw);
    let whole = text.rfind("\n\n").map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

/// A server whose streams only the stall budget can cut in time
/// (`--slow-timeout` is far away), with a queue of `buffer` and posts
/// that wait up to `publish_timeout`.
fn budget_server(buffer: &str, budget: &str, publish_timeout: &str) -> Server {
    Server::start(&[
        "--buffer",
        buffer,
        "--stall-budget",
        budget,
        "--publish-timeout",
        publish_timeout,
        "--slow-timeout",
        "120s",
        "--rate",
        "0",
        "--max-message-bytes",
        "8192",
    ])
}

#[test]
fn a_stalled_subscriber_is_cut_at_the_stall_budget_and_resumes_with_nothing_missing() {
    let s = budget_server("4", "1s", "30s");
    let path = "/rooms/budget/events";
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut r = s.sse(path);
            r.until("hello");
            r
        })
        .collect();
    let stalled = stalled_subscriber(&s, path);
    s.wait_metric("smolchat_subscribers", 5);
    let collectors: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                loop {
                    let m = r.until("message").json();
                    ids.push(m["id"].as_u64().unwrap());
                    if m["text"] == "done" {
                        return ids;
                    }
                }
            })
        })
        .collect();

    // Unpaced posts, far more than the queue and the stalled socket hold:
    // every one is accepted (the stalled stream is cut instead of a 503).
    let mut conn = BufReader::new(s.connect());
    let filler = "y".repeat(4000);
    let n = 60u64;
    let started = Instant::now();
    for i in 1..=n {
        let text = if i == n {
            "done".to_string()
        } else {
            format!("{i}-{filler}")
        };
        let req = support::post_bytes(
            "/rooms/budget/messages",
            &["Content-Type: text/plain"],
            text.as_bytes(),
        );
        conn.get_mut().write_all(&req).unwrap();
        let r = read_response(&mut conn).unwrap();
        assert_eq!(
            (r.status, r.json()["id"].as_u64()),
            (201, Some(i)),
            "{}",
            r.text()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "posting waited for --slow-timeout, not the stall budget"
    );
    s.wait_metric("smolchat_subscribers_evicted_total", 1);
    assert_eq!(s.metric("smolchat_posts_refused_total{status=\"503\"}"), 0);

    // Every reader got every message once, in order.
    for c in collectors {
        assert_eq!(c.join().unwrap(), (1..=n).collect::<Vec<_>>());
    }

    // The cut client drains what reached it, then resumes after its last
    // complete event and gets the rest: nothing missing, nothing twice.
    stalled.set_read_timeout(Some(WAIT)).unwrap();
    let mut raw = Vec::new();
    let _ = (&stalled).read_to_end(&mut raw);
    let seen = complete_ids(&raw);
    let last = seen.last().copied().unwrap_or(0);
    assert_eq!(seen, (1..=last).collect::<Vec<_>>());
    assert!(
        last < n,
        "the stalled stream was cut before it could take everything"
    );
    let mut resumed = s.sse_with(path, &[&format!("Last-Event-ID: {last}")]);
    let rest: Vec<u64> = resumed
        .messages((n - last) as usize)
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(rest, (last + 1..=n).collect::<Vec<_>>());
}

#[test]
fn the_stall_budget_cuts_the_stream_holding_the_queue_not_one_that_is_merely_behind() {
    // Two streams stop reading. `stalled` (2 KiB receive buffer) holds the
    // oldest frame; `behind` (8 KiB) took more frames before its socket
    // filled, so it is stuck in a write too, but with fewer frames to go.
    // Only `stalled` holds the posts back, so only it is cut; `behind`
    // then reads on and gets everything. (It must start reading within
    // the budget after the cut, or it holds the queue in its turn: 5 s,
    // for a loaded machine.)
    let s = budget_server("16", "5s", "60s");
    let path = "/rooms/behind/events";
    let stalled = stalled_subscriber(&s, path);
    s.wait_metric("smolchat_subscribers", 1);
    let behind = subscriber_with_buffer(&s, path, 8 * 1024);
    s.wait_metric("smolchat_subscribers", 2);

    let n = 60u64;
    let addr = s.addr;
    let poster = std::thread::spawn(move || {
        let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
        let filler = "b".repeat(4000);
        for i in 1..=n {
            let req = support::post_bytes(
                "/rooms/behind/messages",
                &["Content-Type: text/plain"],
                format!("{i}-{filler}").as_bytes(),
            );
            conn.get_mut().write_all(&req).unwrap();
            let r = read_response(&mut conn).unwrap();
            assert_eq!((r.status, r.json()["id"].as_u64()), (201, Some(i)));
        }
    });

    // The stalled stream is cut at the budget; `behind`, stuck in a write
    // at that moment too, is not.
    s.wait_metric("smolchat_subscribers_evicted_total", 1);
    let deadline = Instant::now() + WAIT;
    behind.set_read_timeout(Some(WAIT)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while complete_ids(&raw).last() != Some(&n) {
        assert!(
            Instant::now() < deadline,
            "behind got {:?}",
            complete_ids(&raw).last()
        );
        let got = (&behind).read(&mut buf).unwrap();
        assert!(
            got > 0,
            "the stream that was only behind ended after {:?}",
            complete_ids(&raw).last()
        );
        raw.extend_from_slice(&buf[..got]);
    }
    poster.join().unwrap();
    assert_eq!(complete_ids(&raw), (1..=n).collect::<Vec<_>>());
    assert_eq!(s.metric("smolchat_subscribers_evicted_total"), 1);
    assert_eq!(s.metric("smolchat_subscribers"), 1);
    drop(stalled);
}
