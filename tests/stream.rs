//! Event streams over real sockets: framing, replay, resume, gaps, room
//! isolation, presence, keep-alive and noticing a departed client.

mod support;

use std::time::{Duration, Instant};

use support::{Server, WAIT};

fn ids(messages: &[serde_json::Value]) -> Vec<u64> {
    messages.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

#[test]
fn a_stream_starts_with_retry_and_hello_then_carries_messages() {
    let s = Server::start(&[]);
    let mut sse = s.sse("/events");
    assert_eq!(sse.response.status, 200);
    assert_eq!(
        sse.response.header("content-type"),
        Some("text/event-stream")
    );
    assert_eq!(sse.response.header("cache-control"), Some("no-cache"));
    assert_eq!(sse.response.header("x-accel-buffering"), Some("no"));
    let first = sse.next().unwrap();
    assert_eq!(first.retry, Some(2000), "retry is in milliseconds");
    let hello = sse.next_event();
    assert_eq!(hello.event, "hello");
    assert_eq!(hello.json()["room"], "lobby");
    assert_eq!(hello.json()["online"], 1);

    let posted = s.say("lobby", "ana", "hi 🙂").json();
    let ev = sse.until("message");
    assert_eq!(ev.id.as_deref(), Some("1"));
    assert_eq!(
        ev.json(),
        posted,
        "subscribers get exactly what the poster got back"
    );
}

#[test]
fn text_that_looks_like_sse_arrives_intact_in_one_data_line() {
    let s = Server::start(&[]);
    let mut sse = s.sse("/events");
    let nasty = "a\n\nevent: x\ndata: y\n\nid: 99\r\nretry: 1";
    s.say("lobby", "ana", nasty);
    let ev = sse.until("message");
    assert_eq!(ev.id.as_deref(), Some("1"));
    assert_eq!(ev.json()["text"], nasty.replace("\r\n", "\n"));
    assert!(!ev.data.contains('\n'), "data is a single line");
    // And nothing else was injected: the next event is the next message.
    s.say("lobby", "ana", "after");
    let next = sse.next_event();
    assert_eq!(
        (next.event.as_str(), next.json()["text"].as_str()),
        ("message", Some("after"))
    );
}

#[test]
fn replay_gives_the_last_n_on_connect() {
    let s = Server::start(&["--replay", "3", "--rate", "0"]);
    for i in 1..=5 {
        s.say("k", "a", &format!("m{i}"));
    }
    let mut sse = s.sse("/rooms/k/events");
    assert_eq!(ids(&sse.messages(3)), [3, 4, 5]);
    s.say("k", "a", "live");
    assert_eq!(ids(&sse.messages(1)), [6]);
}

#[test]
fn last_event_id_and_since_resume_without_gap_or_duplicate() {
    let s = Server::start(&["--rate", "0"]);
    for i in 1..=4 {
        s.say("k", "a", &format!("m{i}"));
    }
    let mut by_header = s.sse_with("/rooms/k/events", &["Last-Event-ID: 2"]);
    let mut by_query = s.sse("/rooms/k/events?since=3");
    let mut header_wins = s.sse_with("/rooms/k/events?since=0", &["Last-Event-ID: 3"]);
    assert_eq!(ids(&by_header.messages(2)), [3, 4]);
    assert_eq!(ids(&by_query.messages(1)), [4]);
    assert_eq!(ids(&header_wins.messages(1)), [4]);
    for i in 5..=7 {
        s.say("k", "a", &format!("m{i}"));
    }
    assert_eq!(ids(&by_header.messages(3)), [5, 6, 7]);
    assert_eq!(ids(&by_query.messages(3)), [5, 6, 7]);
    // Caught up: nothing else is pending.
    let next = by_header.next_within(Duration::from_millis(200));
    assert!(next.is_none(), "unexpected {next:?}");
}

#[test]
fn resuming_past_what_history_holds_says_gap_first() {
    let s = Server::start(&["--history", "3", "--replay", "3", "--rate", "0"]);
    for i in 1..=6 {
        s.say("k", "a", &format!("m{i}"));
    }
    let mut sse = s.sse_with("/rooms/k/events", &["Last-Event-ID: 1"]);
    let gap = sse.until("gap");
    assert_eq!(gap.json(), serde_json::json!({"since": 1, "first": 4}));
    assert_eq!(ids(&sse.messages(3)), [4, 5, 6]);
    // A resume that history covers has no gap.
    let mut ok = s.sse_with("/rooms/k/events", &["Last-Event-ID: 4"]);
    let ev = ok.next_event();
    assert_eq!(ev.event, "hello");
    assert_eq!(ok.next_event().id.as_deref(), Some("5"));
}

#[test]
fn rooms_are_isolated() {
    let s = Server::start(&[]);
    let mut a = s.sse("/rooms/a/events");
    let mut b = s.sse("/rooms/b/events");
    s.say("a", "u", "for a");
    s.say("b", "u", "for b");
    assert_eq!(a.until("message").json()["text"], "for a");
    assert_eq!(b.until("message").json()["text"], "for b");
    s.say("a", "u", "a again");
    assert_eq!(a.until("message").json()["text"], "a again");
    assert!(b.next_within(Duration::from_millis(200)).is_none());
}

#[test]
fn presence_join_leave_and_online_counts() {
    let s = Server::start(&[]);
    let mut watcher = s.sse("/rooms/p/events?user=watcher");
    assert_eq!(
        watcher.until("hello").json()["users"],
        serde_json::json!(["watcher"])
    );
    let mut ana = s.sse("/rooms/p/events?user=ana");
    let hello = ana.until("hello").json();
    assert_eq!(hello["online"], 2);
    assert_eq!(hello["users"], serde_json::json!(["ana", "watcher"]));
    assert_eq!(
        watcher.until("join").json(),
        serde_json::json!({"user": "ana", "online": 2})
    );
    assert_eq!(s.get("/rooms").json()[0]["online"], 2);

    // A client that closes its socket is noticed at once (well before the
    // 15 s keep-alive), and its leave is announced.
    let closed_at = Instant::now();
    drop(ana);
    assert_eq!(
        watcher.until("leave").json(),
        serde_json::json!({"user": "ana", "online": 1})
    );
    assert!(closed_at.elapsed() < WAIT);
    s.wait_metric("smolchat_subscribers", 1);
}

#[test]
fn idle_streams_get_keepalive_comments() {
    let s = Server::start(&["--keepalive", "300ms"]);
    let mut sse = s.sse("/events");
    sse.until("hello");
    // Not just one: every keepalive period of silence has its ping (the
    // timer once fired a single time and the stream went quiet for good).
    for n in 1..=4 {
        let ping = sse
            .next()
            .unwrap_or_else(|| panic!("keep-alive comment {n}"));
        assert_eq!(ping.comment.as_deref(), Some("ping"), "{ping:?}");
    }
    // A message between pings does not stop them either.
    assert_eq!(s.say("lobby", "ana", "between").status, 201);
    assert_eq!(sse.until("message").json()["text"], "between");
    for n in 1..=2 {
        let ping = sse
            .next()
            .unwrap_or_else(|| panic!("keep-alive comment {n} after a message"));
        assert_eq!(ping.comment.as_deref(), Some("ping"), "{ping:?}");
    }
}

#[test]
fn many_quick_posts_arrive_in_order_exactly_once() {
    let s = Server::start(&["--rate", "0", "--buffer", "16"]);
    let mut subs: Vec<_> = (0..3).map(|_| s.sse("/rooms/busy/events")).collect();
    for sub in &mut subs {
        sub.until("hello");
    }
    // Post over one keep-alive connection, as fast as answers come back.
    let mut conn = std::io::BufReader::new(s.connect());
    let n = 300;
    for i in 1..=n {
        let body = format!("msg {i}");
        let req = support::post_bytes(
            "/rooms/busy/messages",
            &["Content-Type: text/plain"],
            body.as_bytes(),
        );
        std::io::Write::write_all(conn.get_mut(), &req).unwrap();
        let r = support::read_response(&mut conn).unwrap();
        assert_eq!(r.json()["id"], i);
    }
    for sub in &mut subs {
        let got = ids(&sub.messages(n as usize));
        assert_eq!(got, (1..=n).collect::<Vec<u64>>());
    }
}

#[test]
fn bad_stream_requests_are_refused() {
    let s = Server::start(&[]);
    let bad_room = s.sse("/rooms/no%20spaces/events");
    assert_eq!(bad_room.response.status, 400);
    let bad_since = s.sse("/events?since=-1");
    assert_eq!(bad_since.response.status, 400);
    let bad_user = s.sse(&format!("/events?user={}", "x".repeat(40)));
    assert_eq!(bad_user.response.status, 400);
    // A Last-Event-ID that is not one of ours is ignored, not refused.
    let mut odd = s.sse_with("/events", &["Last-Event-ID: abc"]);
    assert_eq!(odd.response.status, 200);
    assert_eq!(odd.next_event().event, "hello");
}
