//! Several instances on one Redis (`--redis`), against a real
//! `redis-server` each test starts on a unix socket in a scratch folder:
//! one server to their clients (ids, order, exactly once, resume anywhere),
//! a killed instance, Redis restarts and a killed subscriber connection,
//! the first post of a new room racing on two instances, presence across
//! instances, and starting before Redis is up.
//!
//! Without `redis-server` installed each test says it skipped, except in
//! CI (`SMOLCHAT_CI`), where that is a failure.

mod support;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::{binary_has_redis, read_response, Redis, Scratch, Server, Sse, WAIT};

/// An instance on `redis`, with no post rate limit.
fn instance(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--rate", "0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Waits until `/healthz` says ok (Redis reached).
fn wait_healthy(s: &Server) {
    let deadline = Instant::now() + WAIT;
    while s.get("/healthz").status != 200 {
        assert!(Instant::now() < deadline, "instance never reached Redis");
        std::thread::sleep(Duration::from_millis(20)); // polling a status, not synchronising
    }
}

/// Posts `texts` to `room` on `s` over one keep-alive connection: the id
/// each `201` gave, by text; texts refused (any other status) are left out.
fn post_all(s: &Server, room: &str, texts: &[String]) -> Vec<(u64, String)> {
    post_all_at(s.addr, room, texts)
}

/// A connection to `addr` (threads cannot share a [`Server`]).
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// [`post_all`] by address.
fn post_all_at(addr: SocketAddr, room: &str, texts: &[String]) -> Vec<(u64, String)> {
    let mut conn = BufReader::new(connect(addr));
    let mut got = Vec::new();
    for t in texts {
        let req = support::post_bytes(
            &format!("/rooms/{room}/messages"),
            &["Content-Type: text/plain"],
            t.as_bytes(),
        );
        conn.get_mut().write_all(&req).unwrap();
        let r = read_response(&mut conn).unwrap();
        if r.status == 201 {
            got.push((r.json()["id"].as_u64().unwrap(), t.clone()));
        }
    }
    got
}

/// The next `n` messages of a stream as (id, text).
fn take(sse: &mut Sse, n: usize) -> Vec<(u64, String)> {
    sse.messages(n)
        .into_iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn three_instances_are_one_server_to_their_clients() {
    let dir = Scratch::new("redis-three");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let servers: Vec<Server> = (0..3).map(|_| instance(&redis, &[])).collect();
    for s in &servers {
        wait_healthy(s);
    }
    let mut streams: Vec<Sse> = servers.iter().map(|s| s.sse("/rooms/r/events")).collect();
    for sse in &mut streams {
        sse.until("hello");
    }
    // Four posters, two on A and two on B, interleaving.
    let per = 40;
    let accepted: Vec<(u64, String)> = std::thread::scope(|scope| {
        let posters: Vec<_> = (0..4)
            .map(|p| {
                let addr = servers[p % 2].addr;
                scope.spawn(move || {
                    let texts: Vec<String> = (0..per).map(|i| format!("p{p} m{i}")).collect();
                    post_all_at(addr, "r", &texts)
                })
            })
            .collect();
        posters
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect()
    });
    assert_eq!(accepted.len(), 4 * per, "every post accepted");
    let mut want = accepted.clone();
    want.sort();
    // Ids 1..=N, each given once.
    assert_eq!(
        want.iter().map(|m| m.0).collect::<Vec<_>>(),
        (1..=(4 * per) as u64).collect::<Vec<_>>()
    );
    for (i, sse) in streams.iter_mut().enumerate() {
        let got = take(sse, 4 * per);
        assert_eq!(got, want, "stream on instance {i}");
    }
    // History is the same on every instance.
    for s in &servers {
        let page = s.get("/rooms/r/messages?since=0&limit=1000").json();
        let ids: Vec<u64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, (1..=(4 * per) as u64).collect::<Vec<_>>());
    }
}

#[test]
fn clients_of_a_killed_instance_resume_on_another_and_it_stops_counting() {
    let dir = Scratch::new("redis-kill");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let a = instance(&redis, &[]);
    let mut b = instance(&redis, &[]);
    let c = instance(&redis, &[]);
    for s in [&a, &b, &c] {
        wait_healthy(s);
    }
    let mut on_b = b.sse("/rooms/k/events?user=bo");
    on_b.until("hello");
    // A sees B's reader (presence across instances).
    let deadline = Instant::now() + WAIT;
    loop {
        let rooms = a.get("/rooms").json();
        let k = rooms.as_array().unwrap().iter().find(|r| r["room"] == "k");
        if k.is_some_and(|k| k["online"] == 1 && k["users"] == serde_json::json!(["bo"])) {
            break;
        }
        assert!(Instant::now() < deadline, "A never saw B's stream: {rooms}");
        std::thread::sleep(Duration::from_millis(20)); // polling a status, not synchronising
    }
    let first: Vec<String> = (1..=10).map(|i| format!("before {i}")).collect();
    let sent = post_all(&a, "k", &first);
    let got = take(&mut on_b, 5);
    assert_eq!(got, sent[..5]);
    b.signal("KILL");
    b.wait_exit(WAIT).expect("killed");
    let later: Vec<String> = (1..=10).map(|i| format!("after {i}")).collect();
    let mut all = sent.clone();
    all.extend(post_all(&a, "k", &later));
    // The client resumes on C from the last id it saw.
    let mut on_c = c.sse_with("/rooms/k/events", &["Last-Event-ID: 5"]);
    on_c.until("hello");
    assert_eq!(take(&mut on_c, 15), all[5..]);
    // B said no goodbye: its reader stops counting once its mark is stale.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rooms = a.get("/rooms").json();
        let k = rooms.as_array().unwrap().iter().find(|r| r["room"] == "k");
        let users = k.map(|k| k["users"].clone());
        // C's stream is anonymous: online 1, nobody named.
        if users == Some(serde_json::json!([])) && k.unwrap()["online"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "B still counted: {rooms}");
        std::thread::sleep(Duration::from_millis(100)); // polling a status, not synchronising
    }
}

#[test]
fn the_first_post_of_a_new_room_on_two_instances_gets_ids_1_and_2() {
    let dir = Scratch::new("redis-race");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    wait_healthy(&a);
    wait_healthy(&b);
    for round in 0..20 {
        let room = format!("race{round}");
        let gate = Arc::new(Barrier::new(2));
        let ids: Vec<u64> = std::thread::scope(|scope| {
            [a.addr, b.addr]
                .map(|addr| {
                    let (gate, room) = (gate.clone(), room.clone());
                    scope.spawn(move || {
                        let req = support::post_bytes(
                            &format!("/rooms/{room}/messages"),
                            &["Content-Type: text/plain"],
                            b"first!",
                        );
                        let mut conn = connect(addr);
                        gate.wait();
                        conn.write_all(&req).unwrap();
                        let r = read_response(&mut BufReader::new(conn)).unwrap();
                        assert_eq!(r.status, 201, "{}", r.text());
                        r.json()["id"].as_u64().unwrap()
                    })
                })
                .map(|t| t.join().unwrap())
                .into_iter()
                .collect()
        });
        let mut ids = ids;
        ids.sort();
        assert_eq!(ids, [1, 2], "room {room}");
    }
}

#[test]
fn presence_is_the_clusters_in_hello_streams_and_the_room_list() {
    let dir = Scratch::new("redis-presence");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    let c = instance(&redis, &[]);
    for s in [&a, &b, &c] {
        wait_healthy(s);
    }
    let mut ana = a.sse("/rooms/p/events?user=ana");
    ana.until("hello");
    let mut bo = b.sse("/rooms/p/events?user=bo");
    bo.until("hello");
    // Ana's stream on A hears Bo join on B.
    let deadline = Instant::now() + WAIT;
    loop {
        let ev = ana.until("presence").json();
        if ev["users"] == serde_json::json!(["ana", "bo"]) {
            assert_eq!(ev["online"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "never saw bo: {ev}");
    }
    // A new stream on C is told both in its hello (once C has read them).
    let deadline = Instant::now() + WAIT;
    loop {
        let mut on_c = c.sse("/rooms/p/events");
        let hello = on_c.until("hello").json();
        // C's own stream counts too.
        if hello["users"] == serde_json::json!(["ana", "bo"]) && hello["online"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "C's hello: {hello}");
        drop(on_c);
        std::thread::sleep(Duration::from_millis(50)); // polling a status, not synchronising
    }
    // Bo leaves: Ana hears it.
    drop(bo);
    loop {
        let ev = ana.until("presence").json();
        if ev["users"] == serde_json::json!(["ana"]) {
            break;
        }
    }
}

#[test]
fn a_redis_outage_gets_503_and_streams_catch_up_without_loss() {
    let dir = Scratch::new("redis-outage");
    let Some(mut redis) = Redis::start(&dir.0, true) else {
        return;
    };
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    wait_healthy(&a);
    wait_healthy(&b);
    let mut on_b = b.sse("/rooms/o/events");
    on_b.until("hello");
    let mut accepted: Vec<(u64, String)> = Vec::new();
    let mut n = 0;
    let mut post = |s: &Server, accepted: &mut Vec<(u64, String)>| {
        n += 1;
        let text = format!("paced {n}");
        let r = s.post("/rooms/o/messages", "text/plain", &text);
        match r.status {
            201 => accepted.push((r.json()["id"].as_u64().unwrap(), text)),
            503 => assert_eq!(r.error(), "history store unavailable"),
            other => panic!("status {other}: {}", r.text()),
        }
        r.status
    };
    for _ in 0..10 {
        post(&a, &mut accepted);
    }
    // B's subscriber connection is cut: B reconnects and fills the hole.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    for _ in 0..10 {
        post(&a, &mut accepted);
    }
    // Redis goes away: posts get 503, health says so.
    redis.kill();
    let deadline = Instant::now() + WAIT;
    while a.get("/healthz").status != 503 {
        assert!(Instant::now() < deadline, "health never said unavailable");
        std::thread::sleep(Duration::from_millis(20)); // polling a status, not synchronising
    }
    assert_eq!(post(&a, &mut accepted), 503);
    assert_eq!(
        a.get("/healthz").json()["reason"],
        "history store unavailable"
    );
    // Back, with what it had (append-only file).
    redis.restart();
    wait_healthy(&a);
    let deadline = Instant::now() + WAIT;
    let mut after = 0;
    while after < 10 {
        if post(&a, &mut accepted) == 201 {
            after += 1;
        }
        assert!(Instant::now() < deadline, "posts never got through again");
    }
    // The stream stayed open and has every accepted message, in order,
    // once (a post cut off mid-flight may have been stored without its
    // 201: it shows up too, with its id in sequence).
    let last = accepted.last().unwrap().0;
    let mut got = BTreeMap::new();
    let mut prev = 0;
    while prev < last {
        let m = on_b.until("message").json();
        let id = m["id"].as_u64().unwrap();
        assert_eq!(id, prev + 1, "in order, no gap, no repeat");
        prev = id;
        got.insert(id, m["text"].as_str().unwrap().to_string());
    }
    for (id, text) in &accepted {
        assert_eq!(got.get(id), Some(text), "message {id}");
    }
    assert!(!on_b.ended);
}

#[test]
fn an_instance_starts_before_redis_and_is_ready_when_it_is() {
    if !binary_has_redis() {
        eprintln!("skipping: the smolchat under test was built without the redis feature");
        return;
    }
    let dir = Scratch::new("redis-late");
    let sock = dir.0.join("redis.sock");
    let url = format!("redis+unix://{}", sock.display());
    let a = Server::start(&["--redis", &url, "--rate", "0"]);
    let r = a.get("/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "unavailable");
    let r = a.post("/rooms/l/messages", "text/plain", "too early");
    assert_eq!(
        (r.status, r.error()),
        (503, "history store unavailable".into())
    );
    assert!(r.header("retry-after").is_some());
    let Some(_redis) = Redis::start(&dir.0, false) else {
        return;
    };
    wait_healthy(&a);
    let r = a.post("/rooms/l/messages", "text/plain", "on time");
    assert_eq!((r.status, r.json()["id"].as_u64()), (201, Some(1)));
}

#[test]
fn a_resume_on_any_instance_reads_redis_and_gets_gap_past_history() {
    let dir = Scratch::new("redis-gap");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let a = instance(&redis, &["--history", "5"]);
    let b = instance(&redis, &["--history", "5"]);
    wait_healthy(&a);
    wait_healthy(&b);
    let texts: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let sent = post_all(&a, "g", &texts);
    let mut sse = b.sse_with("/rooms/g/events", &["Last-Event-ID: 2"]);
    sse.until("hello");
    let gap = sse.until("gap").json();
    assert_eq!(
        (gap["since"].as_u64(), gap["first"].as_u64()),
        (Some(2), Some(6))
    );
    assert_eq!(take(&mut sse, 5), sent[5..]);
    let page = b.get("/rooms/g/messages?since=0").json();
    assert_eq!(page.as_array().unwrap().len(), 5);
    assert_eq!(redis.cli(&["XLEN", "smolchat:log:g"]), "5");
}

/// Runs `smolchat ARGS --redis URL` (a subcommand) with `stdin`; its stdout.
fn cli(redis: &Redis, args: &[&str], stdin: &str) -> String {
    use std::process::Stdio;
    let mut child = support::smolchat_command()
        .args(args)
        .args(["--redis", &redis.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smolchat");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "smolchat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn accounts_sessions_and_deletes_are_shared_by_every_instance() {
    let dir = Scratch::new("redis-accounts");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    cli(
        &redis,
        &["user", "add", "ana", "--password-stdin"],
        "pw-of-ana\n",
    );
    let out = cli(&redis, &["token", "add", "ana"], "");
    let token = out.lines().next().unwrap().to_string();
    let token_id = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(cli(&redis, &["user", "list"], "").contains("ana"));
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    wait_healthy(&a);
    wait_healthy(&b);
    let bearer = format!("Authorization: Bearer {token}");
    // A token made by the subcommand works on A; the name is taken on B.
    let eventually = |what: &str, mut check: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + WAIT;
        while !check() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(20)); // polling a status, not synchronising
        }
    };
    let mut on_a = a.sse_with("/rooms/acc/events", &[&bearer]);
    on_a.until("hello");
    let r = a.post_with(
        "/rooms/acc/messages",
        &["Content-Type: text/plain", &bearer],
        b"signed",
    );
    assert_eq!((r.status, r.json()["user"].as_str()), (201, Some("ana")));
    let id = r.json()["id"].as_u64().unwrap();
    eventually(
        "B reserves ana",
        Box::new(|| b.say("acc", "ana", "impostor").status == 403),
    );
    // A session started on A is good on B at once.
    let r = a.post(
        "/login",
        "application/x-www-form-urlencoded",
        "user=ana&password=pw-of-ana",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = b.get_with("/me", &[&format!("Cookie: {cookie}")]);
    assert_eq!((me.status, me.json()["user"].as_str()), (200, Some("ana")));
    // Deleted through B: A's stream is told, history on A says so.
    let r = b.raw(
        format!(
            "DELETE /rooms/acc/messages/{id} HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\nOrigin: http://test\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let del = on_a.until("delete").json();
    assert_eq!(del["id"].as_u64(), Some(id));
    let page = a.get("/rooms/acc/messages?since=0").json();
    assert_eq!(page[0]["deleted"], true);
    // A second delete of it, anywhere, is 410.
    let r = a.raw(
        format!("DELETE /rooms/acc/messages/{id} HTTP/1.1\r\nHost: test\r\n{bearer}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 410, "{}", r.text());
    // Signing out on B ends the session on A too.
    let r = b.raw(
        format!("POST /logout HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\nOrigin: http://test\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert!(r.status < 300, "{}", r.text());
    eventually(
        "A forgets the session",
        Box::new(|| a.get_with("/me", &[&format!("Cookie: {cookie}")]).json()["user"].is_null()),
    );
    // Revoking the token ends the stream that used it.
    cli(&redis, &["token", "remove", &token_id], "");
    let deadline = Instant::now() + WAIT;
    while !on_a.ended {
        assert!(Instant::now() < deadline, "stream outlived its token");
        let _ = on_a.next_within(Duration::from_millis(200));
    }
}

/// Runs a subcommand with explicit arguments and stdin: (success, stdout, stderr).
fn run_cli(args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, String) {
    use std::process::Stdio;
    let mut child = support::smolchat_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smolchat");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_sqlite_box_moves_to_redis_with_its_ids_accounts_and_deletes() {
    let dir = Scratch::new("redis-move");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let db = dir.db();
    let ok = |args: &[&str], stdin: &[u8]| {
        let (ok, out, err) = run_cli(args, stdin);
        assert!(ok, "smolchat {args:?}: {err}");
        out
    };
    ok(
        &["user", "add", "ana", "--password-stdin", "--db", &db],
        b"pw-of-ana\n",
    );
    let out = String::from_utf8(ok(
        &["token", "add", "ana", "--label", "bot", "--db", &db],
        b"",
    ))
    .unwrap();
    let token = out.lines().next().unwrap().to_string();
    ok(&["access", "everyone", "staff-*", "deny", "--db", &db], b"");
    let bearer = format!("Authorization: Bearer {token}");
    let mut posted = Vec::new();
    {
        let mut one = Server::start(&["--db", &db, "--rate", "0"]);
        for i in 1..=5 {
            let r = one.post_with(
                "/rooms/k/messages",
                &["Content-Type: text/plain", &bearer],
                format!("kitchen {i}").as_bytes(),
            );
            assert_eq!(r.status, 201);
            posted.push(r.json());
        }
        let r = one.raw(
            format!("DELETE /rooms/k/messages/2 HTTP/1.1\r\nHost: test\r\n{bearer}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(one.say("j", "bo", "garden").status, 201);
        one.signal("TERM");
        assert!(one.wait_exit(WAIT).expect("exits").success());
    }
    let export = ok(&["export", "--db", &db], b"");
    let text = String::from_utf8(export.clone()).unwrap();
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    let summary = String::from_utf8(ok(&["import", "--redis", &redis.url()], &export)).unwrap();
    assert!(
        summary.contains("imported 2 rooms, 7 messages and delete events, 1 user, 1 token, 1 rule"),
        "{summary}"
    );
    // Once more: refused, nothing doubled.
    let (again, _, err) = run_cli(&["import", "--redis", &redis.url()], &export);
    assert!(!again && err.contains("in Redis already"), "{err}");

    let a = instance(&redis, &[]);
    wait_healthy(&a);
    let page = a.get("/rooms/k/messages?since=0").json();
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 5);
    for (got, want) in page.iter().zip(&posted) {
        assert_eq!(got["id"], want["id"]);
        assert_eq!(got["time"], want["time"]);
        if got["id"] == 2 {
            assert_eq!(
                (got["deleted"].as_bool(), got["text"].as_str()),
                (Some(true), Some(""))
            );
        } else {
            assert_eq!(got["text"], want["text"]);
        }
    }
    // A client resumes across the move; ids go on from the delete event's.
    let mut sse = a.sse_with("/rooms/k/events", &["Last-Event-ID: 3"]);
    sse.until("hello");
    assert_eq!(sse.until("message").json()["id"], 4);
    assert_eq!(sse.until("message").json()["id"], 5);
    assert_eq!(sse.until("delete").id.as_deref(), Some("6"));
    let r = a.post_with(
        "/rooms/k/messages",
        &["Content-Type: text/plain", &bearer],
        b"after",
    );
    assert_eq!(
        (r.status, r.json()["id"].as_u64(), r.json()["user"].as_str()),
        (201, Some(7), Some("ana"))
    );
    assert_eq!(sse.until("message").json()["id"], 7);
    // The password and the rule came along.
    let basic = "Authorization: Basic YW5hOnB3LW9mLWFuYQ=="; // ana:pw-of-ana
    assert_eq!(a.get_with("/me", &[basic]).json()["user"], "ana");
    assert_eq!(a.get("/rooms/staff-room/messages").status, 401);
    assert_eq!(
        a.get("/rooms/j/messages?since=0").json()[0]["text"],
        "garden"
    );
}

/// The ARM builds leave Redis out (the `redis` feature, for the 4 MiB
/// budget): there `--redis` and `import` are refused in one line that
/// says how to get it, and `--help` says so. (Runs against the ARM
/// release binaries in CI; with the default build it checks `--help`.)
#[test]
fn a_build_without_redis_refuses_it_in_one_line() {
    let help = support::smolchat_command().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    if binary_has_redis() {
        assert!(help.contains("--redis URL") && help.contains("keep history, ids, accounts"));
        return;
    }
    assert!(help.contains("cargo build --features redis"), "{help}");
    for (args, code) in [
        (
            &["--addr", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1"][..],
            2,
        ),
        (&["import", "--redis", "redis://127.0.0.1:1"][..], 1),
        (&["user", "list", "--redis", "redis://127.0.0.1:1"][..], 1),
    ] {
        let out = support::smolchat_command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains("built without Redis support") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_retry_on_another_instance_gets_the_first_answer_of_its_idempotency_key() {
    let dir = Scratch::new("redis-idem");
    let Some(redis) = Redis::start(&dir.0, false) else {
        return;
    };
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    wait_healthy(&a);
    wait_healthy(&b);
    let post = |s: &Server, key: &str, text: &str| {
        s.post_with(
            "/rooms/idem/messages",
            &[
                "Content-Type: text/plain",
                &format!("Idempotency-Key: {key}"),
            ],
            text.as_bytes(),
        )
    };
    let first = post(&a, "k-1", "hello once");
    assert_eq!(first.status, 201, "{}", first.text());
    // The client retries through the load balancer and lands on B.
    let again = post(&b, "k-1", "hello once");
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    assert_eq!(post(&b, "k-1", "another text").status, 422);
    // A new key is a new message.
    let r = post(&a, "k-2", "second");
    assert_eq!(r.json()["id"].as_u64(), Some(2));
    let history = b.get("/rooms/idem/messages").json();
    let texts: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["hello once", "second"]);
    // Concurrent retries on both instances: one message, both answered with it.
    let answers: Vec<serde_json::Value> = std::thread::scope(|scope| {
        [a.addr, b.addr]
            .map(|addr| {
                scope.spawn(move || {
                    let req = support::post_bytes(
                        "/rooms/idem/messages",
                        &["Content-Type: text/plain", "Idempotency-Key: k-3"],
                        b"raced",
                    );
                    let mut conn = connect(addr);
                    conn.write_all(&req).unwrap();
                    let r = read_response(&mut BufReader::new(conn)).unwrap();
                    assert_eq!(r.status, 201, "{}", r.text());
                    r.json()
                })
            })
            .map(|t| t.join().unwrap())
            .into_iter()
            .collect()
    });
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["id"].as_u64(), Some(3));
}
