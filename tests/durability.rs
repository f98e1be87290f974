//! Durable history: restarts keep history and ids, a crash never loses an
//! acknowledged message, bad database files stop the server at start, and a
//! write failure while running is a 503 the server recovers from.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{read_response, Scratch, Server, WAIT};

fn history(s: &Server, room: &str) -> Vec<(u64, String)> {
    s.get(&format!("/rooms/{room}/messages?limit=1000000"))
        .json()
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

fn stop(mut s: Server) {
    s.signal("TERM");
    assert!(s.wait_exit(WAIT).expect("exits").success());
}

#[test]
fn a_restart_keeps_history_ids_and_resume() {
    let dir = Scratch::new("restart");
    let db = dir.db();
    let s = Server::start(&["--db", &db, "--rate", "0"]);
    for i in 1..=3 {
        assert_eq!(s.say("k", "ana", &format!("m{i}")).json()["id"], i);
    }
    s.say("other", "bob", "elsewhere");
    stop(s);

    let s = Server::start(&["--db", &db, "--rate", "0"]);
    assert_eq!(
        history(&s, "k"),
        [(1, "m1".into()), (2, "m2".into()), (3, "m3".into())]
    );
    let rooms = s.get("/rooms").json();
    assert_eq!(rooms[0]["last_id"], 3);
    assert_eq!(rooms[1]["room"], "other");
    // A browser that saw id 2 before the restart resumes exactly after it.
    let mut sse = s.sse_with("/rooms/k/events", &["Last-Event-ID: 2"]);
    assert_eq!(sse.until("message").json()["id"], 3);
    assert_eq!(
        s.say("k", "ana", "m4").json()["id"],
        4,
        "ids continue after a restart"
    );
    assert_eq!(sse.until("message").json()["text"], "m4");
}

#[test]
fn retention_keeps_exactly_history_per_room() {
    let dir = Scratch::new("retention");
    let db = dir.db();
    let s = Server::start(&["--db", &db, "--rate", "0", "--history", "5"]);
    for i in 1..=12 {
        s.say("r", "a", &format!("m{i}"));
    }
    s.say("small", "a", "only");
    let ids: Vec<u64> = history(&s, "r").iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [8, 9, 10, 11, 12]);
    stop(s);
    // The file holds the same: count rows with the sqlite library directly.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(String, i64)> = conn
        .prepare("SELECT room, count(*) FROM messages GROUP BY room ORDER BY room")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, [("r".to_string(), 5), ("small".to_string(), 1)]);
    drop(conn);
    let s = Server::start(&["--db", &db, "--rate", "0", "--history", "5"]);
    assert_eq!(s.say("r", "a", "m13").json()["id"], 13);
}

/// Posts from one keep-alive connection until the server goes away,
/// recording each acknowledged (room, id, text).
fn poster(addr: std::net::SocketAddr, n: usize, acked: Arc<Mutex<Vec<(String, u64, String)>>>) {
    let Ok(stream) = TcpStream::connect(addr) else {
        return;
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut conn = BufReader::new(stream);
    for i in 0.. {
        let room = if i % 2 == 0 { "even" } else { "odd" };
        let text = format!("p{n}-{i}");
        let req = support::post_bytes(
            &format!("/rooms/{room}/messages"),
            &["Content-Type: text/plain"],
            text.as_bytes(),
        );
        if conn.get_mut().write_all(&req).is_err() {
            return;
        }
        match read_response(&mut conn) {
            Ok(r) if r.status == 201 => {
                let id = r.json()["id"].as_u64().unwrap();
                acked.lock().unwrap().push((room.to_string(), id, text));
            }
            // The server is stopping: it said so, and stored nothing.
            Ok(r) if r.status == 503 => return,
            Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
            Err(_) => return,
        }
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_message() {
    let dir = Scratch::new("crash");
    let db = dir.db();
    let args = ["--db", db.as_str(), "--rate", "0", "--history", "1000000"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let started = Instant::now();
    let mut all: Vec<(String, u64, String)> = Vec::new();
    let mut max_before = std::collections::HashMap::<String, u64>::new();
    for round in 0..10 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "crash test ran too long"
        );
        let s = Server::start(&args);
        // Everything acknowledged so far is here, in order, with its id.
        for room in ["even", "odd"] {
            let stored = history(&s, room);
            let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] + 1),
                "round {round}: ids not consecutive in {room}"
            );
            for (r, id, text) in all.iter().filter(|(r, _, _)| r == room) {
                assert!(
                    stored.iter().any(|(sid, st)| sid == id && st == text),
                    "round {round}: acknowledged {r} #{id} {text:?} is missing after a SIGKILL"
                );
            }
            max_before.insert(room.to_string(), ids.last().copied().unwrap_or(0));
        }
        let acked = Arc::new(Mutex::new(Vec::new()));
        let posters: Vec<_> = (0..4)
            .map(|n| {
                let (addr, acked) = (s.addr, acked.clone());
                std::thread::spawn(move || poster(addr, round * 10 + n, acked))
            })
            .collect();
        // Kill after a random number of acknowledgements, mid-stream.
        let kill_after = 5 + rand(120) as usize;
        let deadline = Instant::now() + WAIT;
        while acked.lock().unwrap().len() < kill_after {
            assert!(Instant::now() < deadline, "posts stalled");
            std::thread::yield_now();
        }
        s.signal("KILL");
        for p in posters {
            p.join().unwrap();
        }
        let round_acked = std::mem::take(&mut *acked.lock().unwrap());
        for (room, id, _) in &round_acked {
            assert!(
                *id > max_before[room],
                "round {round}: id {id} in {room} was used before the crash"
            );
        }
        all.extend(round_acked);
    }
    let s = Server::start(&args);
    let total: usize = ["even", "odd"].iter().map(|r| history(&s, r).len()).sum();
    assert!(
        total >= all.len(),
        "{total} stored, {} acknowledged",
        all.len()
    );
}

fn start_fails(args: &[&str]) -> String {
    let out = support::smolchat_command()
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} should exit 1");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("smolchat: database "), "{err}");
    assert!(out.stdout.is_empty(), "no ready line");
    err
}

#[test]
fn bad_database_paths_stop_the_server_at_start() {
    let dir = Scratch::new("badpaths");
    let err = start_fails(&["--db", dir.0.to_str().unwrap()]);
    assert!(err.contains("is a directory"), "{err}");

    let junk = dir.0.join("notes.txt");
    std::fs::write(&junk, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = start_fails(&["--db", junk.to_str().unwrap()]);
    assert!(err.contains("not a database"), "{err}");
    assert!(
        std::fs::read_to_string(&junk)
            .unwrap()
            .starts_with("these are my notes"),
        "left untouched"
    );

    // A read-only location: /proc accepts no new files, even for root.
    let err = start_fails(&["--db", "/proc/smolchat-test.db"]);
    assert!(err.contains("unable to open"), "{err}");

    let err = start_fails(&[
        "--db",
        dir.0.join("no/such/folder/chat.db").to_str().unwrap(),
    ]);
    assert!(err.contains("unable to open"), "{err}");

    // A database another smolchat is using.
    let db = dir.db();
    let _first = Server::start(&["--db", &db]);
    let err = start_fails(&["--db", &db]);
    assert!(err.contains("in use by another smolchat"), "{err}");
}

#[test]
fn a_write_failure_is_a_503_and_the_server_recovers() {
    let dir = Scratch::new("fsize");
    let db = dir.db();
    let s = Server::start(&["--db", &db, "--rate", "0", "--keepalive", "200ms"]);
    let mut sse = s.sse("/rooms/w/events");
    sse.until("hello");
    assert_eq!(s.say("w", "a", "before").status, 201);
    assert_eq!(sse.until("message").json()["text"], "before");

    // Limit the server's file size to what the files hold now: the next
    // commit cannot grow the write-ahead log (EFBIG), as on a full disk.
    let wal = Path::new(&format!("{db}-wal")).metadata().unwrap().len();
    let limit = wal.max(Path::new(&db).metadata().unwrap().len());
    set_fsize(&s, &limit.to_string());
    let r = s.say("w", "a", &"big ".repeat(900));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.error().contains("could not store"), "{}", r.error());
    assert!(r.header("retry-after").is_some());
    assert!(s.metric("smolchat_store_errors_total") >= 1);
    // Streams keep going meanwhile, and the failed post reached nobody.
    let ping = sse.next().expect("the stream is alive");
    assert_eq!(ping.comment.as_deref(), Some("ping"), "{ping:?}");
    assert_eq!(s.get("/healthz").status, 200);

    // The disk "recovers": the next post is stored with the next id.
    set_fsize(&s, "unlimited");
    let r = s.say("w", "a", "after");
    assert_eq!(
        (r.status, r.json()["id"].as_u64()),
        (201, Some(2)),
        "{}",
        r.text()
    );
    assert_eq!(sse.until("message").json()["text"], "after");
    stop(s);
    let s = Server::start(&["--db", &db]);
    assert_eq!(
        history(&s, "w"),
        [(1, "before".into()), (2, "after".into())]
    );
}

fn set_fsize(s: &Server, limit: &str) {
    let ok = Command::new("prlimit")
        .args([
            "--pid",
            &s.pid().to_string(),
            &format!("--fsize={limit}:unlimited"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(ok.success());
}

#[test]
fn sigterm_under_load_commits_every_acknowledged_post_and_exits_0() {
    let dir = Scratch::new("term");
    let db = dir.db();
    let args = ["--db", db.as_str(), "--rate", "0", "--history", "1000000"];
    let mut s = Server::start(&args);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let posters: Vec<_> = (0..4)
        .map(|n| {
            let (addr, acked) = (s.addr, acked.clone());
            std::thread::spawn(move || poster(addr, n, acked))
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "posts stalled");
        std::thread::yield_now();
    }
    s.signal("TERM");
    assert!(s.wait_exit(WAIT).expect("exits").success());
    for p in posters {
        p.join().unwrap();
    }
    let s = Server::start(&args);
    let acked = acked.lock().unwrap();
    for room in ["even", "odd"] {
        let stored = history(&s, room);
        for (_, id, text) in acked.iter().filter(|(r, _, _)| r == room) {
            assert!(
                stored.iter().any(|(sid, st)| sid == id && st == text),
                "#{id} {text:?} lost at shutdown"
            );
        }
    }
}
