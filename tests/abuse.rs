//! The abuse suite: hostile clients against the real binary, on loopback,
//! every loop bounded in count and time.
//!
//! Each case runs an honest client beside the attack ([`Honest`]): it asks
//! `/healthz` every 20 ms, posts a numbered message every 50 ms and reads
//! a stream of that room. When the attack is over, the case checks that
//! every health check was answered (and how fast), that every honest post
//! was accepted and every accepted one reached the stream exactly once, in
//! order, that the server's peak RSS grew by less than `--memory-limit` +
//! 16 MiB, and that no connection task panicked (`smolchat_panics_total`).
//!
//! Sized for CI by default. `SMOLCHAT_ABUSE=full` (see `scripts/abuse.sh`)
//! runs the sizes docs/security.md reports (2,000 slowloris sockets, 10,000
//! pipelined requests, 10,000 stream cycles...), prints each case's figures
//! and holds health checks to a p99 of 100 ms; in CI, on a loaded machine
//! and under qemu, the bound is a generous 2 s (a hang, not a slow
//! machine, is what must fail).

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{read_response, Server, WAIT};

/// Whether to run at full size (see the module docs).
fn full() -> bool {
    std::env::var("SMOLCHAT_ABUSE").is_ok_and(|v| v == "full")
}

/// `ci` in CI, `full` at full size.
fn size(ci: usize, full_size: usize) -> usize {
    if full() {
        full_size
    } else {
        ci
    }
}

const MEMORY_LIMIT: &str = "16MiB";
const MEMORY_LIMIT_KB: u64 = 16 * 1024;
const SLACK_KB: u64 = 16 * 1024;

/// Raises this process's open-file limit: the attacks open thousands of
/// sockets.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
}

/// Starts the server for a case: the budget the RSS check uses, and
/// `extra` flags.
fn server(extra: &[&str]) -> Server {
    raise_fd_limit();
    let mut args = vec!["--memory-limit", MEMORY_LIMIT, "--rate", "0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A socket from local address `from` (any 127.x.y.z works on Linux), so
/// attackers do not share the honest client's per-address cap.
fn connect_from(s: &Server, from: [u8; 4]) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    sock.connect_timeout(&s.addr.into(), WAIT)?;
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    Ok(stream)
}

/// The `n`th attacker address: 127.0.x.y, never 127.0.0.1.
fn attacker(n: usize) -> [u8; 4] {
    [127, 0, 2 + (n / 250) as u8, 1 + (n % 250) as u8]
}

/// The honest client that runs beside every attack.
struct Honest {
    stop: Arc<AtomicBool>,
    health: JoinHandle<(Vec<Duration>, usize)>,
    poster: JoinHandle<(Vec<(u64, String)>, usize)>,
    reader: JoinHandle<Vec<(u64, String)>>,
    rss_before_kb: u64,
    room: String,
}

/// What the honest client saw.
struct Seen {
    checks: usize,
    p99: Duration,
    worst: Duration,
    health_failures: usize,
    posted: usize,
    post_failures: usize,
    rss_growth_kb: u64,
}

impl Honest {
    fn start(s: &Server, case: &str) -> Honest {
        let stop = Arc::new(AtomicBool::new(false));
        let room = format!("honest-{case}");
        let addr = s.addr;
        let mut sse = s.sse(&format!("/rooms/{room}/events"));
        sse.until("hello");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let Some(ev) = sse.next_within(Duration::from_secs(120)) else {
                    return got;
                };
                if ev.event != "message" {
                    continue;
                }
                let m = ev.json();
                let text = m["text"].as_str().unwrap().to_string();
                if text == "done" {
                    return got;
                }
                got.push((m["id"].as_u64().unwrap(), text));
            }
        });
        // Each loop says when it has its first success; the case starts
        // only then, so even a slow machine has seen the client work.
        let (first_tx, first_rx) = std::sync::mpsc::channel::<&str>();
        let health = {
            let stop = stop.clone();
            let first = first_tx.clone();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                let mut failures = 0;
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let ok = (|| -> std::io::Result<bool> {
                        if conn.is_none() {
                            let c = TcpStream::connect_timeout(&addr, WAIT)?;
                            c.set_read_timeout(Some(WAIT))?;
                            c.set_nodelay(true)?;
                            conn = Some(BufReader::new(c));
                        }
                        let c = conn.as_mut().unwrap();
                        c.get_mut()
                            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")?;
                        Ok(read_response(c)?.status == 200)
                    })();
                    match ok {
                        Ok(true) => {
                            times.push(started.elapsed());
                            if times.len() == 1 {
                                let _ = first.send("health check");
                            }
                        }
                        _ => {
                            failures += 1;
                            conn = None;
                        }
                    }
                    // Pacing the checks, not waiting for anything.
                    std::thread::sleep(Duration::from_millis(20));
                }
                (times, failures)
            })
        };
        let poster = {
            let (stop, room) = (stop.clone(), room.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut failures = 0;
                let mut conn: Option<BufReader<TcpStream>> = None;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let text = format!("honest {n}");
                    n += 1;
                    let r = (|| -> std::io::Result<support::Response> {
                        if conn.is_none() {
                            let c = TcpStream::connect_timeout(&addr, WAIT)?;
                            c.set_read_timeout(Some(WAIT))?;
                            c.set_nodelay(true)?;
                            conn = Some(BufReader::new(c));
                        }
                        let c = conn.as_mut().unwrap();
                        c.get_mut().write_all(&support::post_bytes(
                            &format!("/rooms/{room}/messages"),
                            &["Content-Type: text/plain"],
                            text.as_bytes(),
                        ))?;
                        read_response(c)
                    })();
                    match r {
                        Ok(r) if r.status == 201 => {
                            acked.push((r.json()["id"].as_u64().unwrap(), text));
                            if acked.len() == 1 {
                                let _ = first_tx.send("post");
                            }
                        }
                        _ => {
                            failures += 1;
                            conn = None;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                (acked, failures)
            })
        };
        for _ in 0..2 {
            if let Err(e) = first_rx.recv_timeout(Duration::from_secs(60)) {
                panic!("{case}: the honest client's first health check and post: {e}");
            }
        }
        Honest {
            stop,
            health,
            poster,
            reader,
            rss_before_kb: s.status_kb("VmRSS"),
            room,
        }
    }

    /// Stops the honest client and checks what it saw; prints the figures.
    fn finish(self, s: &Server, case: &str) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let (mut times, health_failures) = self.health.join().unwrap();
        let (acked, post_failures) = self.poster.join().unwrap();
        assert_eq!(s.say(&self.room, "honest", "done").status, 201);
        let got = self.reader.join().unwrap();
        assert_eq!(
            got, acked,
            "{case}: the honest stream got exactly the accepted posts"
        );
        times.sort();
        let p99 = times
            .get(times.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        let seen = Seen {
            checks: times.len(),
            p99,
            worst: times.last().copied().unwrap_or_default(),
            health_failures,
            posted: acked.len(),
            post_failures,
            rss_growth_kb: s.status_kb("VmHWM").saturating_sub(self.rss_before_kb),
        };
        println!(
            "abuse {case}: healthz {} checks, p99 {:.1} ms, worst {:.1} ms, {} failed; \
             honest posts {} accepted, {} failed; peak RSS +{} KiB; panics {}",
            seen.checks,
            seen.p99.as_secs_f64() * 1000.0,
            seen.worst.as_secs_f64() * 1000.0,
            seen.health_failures,
            seen.posted,
            seen.post_failures,
            seen.rss_growth_kb,
            s.metric("smolchat_panics_total"),
        );
        assert_eq!(seen.health_failures, 0, "{case}: health checks failed");
        assert_eq!(seen.post_failures, 0, "{case}: honest posts failed");
        assert!(
            seen.checks > 0 && seen.posted > 0,
            "{case}: the honest client ran"
        );
        let bound = if full() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        assert!(seen.p99 <= bound, "{case}: healthz p99 {:?}", seen.p99);
        assert!(
            seen.rss_growth_kb <= MEMORY_LIMIT_KB + SLACK_KB,
            "{case}: peak RSS grew {} KiB",
            seen.rss_growth_kb
        );
        assert_eq!(
            s.metric("smolchat_panics_total"),
            0,
            "{case}: a task panicked"
        );
        assert!(
            s.stderr().iter().all(|l| !l.contains("panicked")),
            "{case}: {:?}",
            s.stderr()
        );
        seen
    }
}

/// Reads what the server sent on `c` until it closes; `None` if it did not
/// close within `within`.
fn read_until_closed(c: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        c.set_read_timeout(Some(left)).ok()?;
        match c.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(got),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return None
            }
            Err(_) => return Some(got),
        }
    }
}

#[test]
fn slowloris_heads_one_byte_a_second_are_cut_at_the_header_timeout() {
    let timeout = if full() { 10 } else { 3 };
    let s = server(&["--header-timeout", &format!("{timeout}s")]);
    let honest = Honest::start(&s, "slowloris");
    let n = size(300, 2000);
    let head = b"GET /rooms HTTP/1.1\r\nHost: example\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n";
    let mut socks: Vec<TcpStream> = (0..n)
        .map(|i| connect_from(&s, attacker(i / 40)).expect("connect"))
        .collect();
    for c in &socks {
        c.set_nonblocking(true).unwrap();
    }
    // One byte per socket per second, until the server has closed them all
    // or the header timeout has long passed.
    let started = Instant::now();
    let mut sent = 0;
    let mut closed = vec![false; n];
    while closed.iter().any(|c| !c) && started.elapsed() < Duration::from_secs(timeout + 5) {
        for (i, c) in socks.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let mut buf = [0u8; 512];
            match c.read(&mut buf) {
                Ok(_) => closed[i] = true, // an answer (408) or EOF
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if c.write(&head[sent % head.len()..][..1]).is_err() {
                        closed[i] = true;
                    }
                }
                Err(_) => closed[i] = true,
            }
        }
        sent += 1;
        // Pacing the attack: one byte a second is the attack.
        std::thread::sleep(Duration::from_secs(1));
    }
    let cut = closed.iter().filter(|c| **c).count();
    println!(
        "abuse slowloris: {n} sockets, {cut} cut within {:.1} s (header timeout {timeout} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(cut, n, "every slow head is cut");
    drop(socks);
    honest.finish(&s, "slowloris");
}

#[test]
fn a_connection_flood_past_both_caps_is_refused_with_statuses() {
    let max = size(200, 4096);
    let s = server(&["--max-connections", &max.to_string()]);
    let honest = Honest::start(&s, "flood");
    // Sources of 80 connections: over the per-address cap (64) each, and
    // together over --max-connections.
    let sources = size(6, 80);
    let mut held = Vec::new();
    let (mut r429, mut r503, mut accepted) = (0, 0, 0);
    for src in 0..sources {
        for _ in 0..80 {
            let Ok(mut c) = connect_from(&s, attacker(src)) else {
                continue;
            };
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut r = BufReader::new(c);
            match read_response(&mut r).map(|res| res.status) {
                Ok(200) => {
                    accepted += 1;
                    held.push(r);
                }
                Ok(429) => r429 += 1,
                Ok(503) => r503 += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    println!("abuse flood: {accepted} held open, {r429} got 429, {r503} got 503");
    // Each address is turned away past 64 (until the global cap fills and
    // turns away everyone), and the global cap holds.
    assert!(r429 >= 80 - 64, "the per-address cap: {r429}");
    assert!(r503 > 0, "--max-connections was reached");
    assert!(accepted <= max, "{accepted} > --max-connections {max}");
    drop(held);
    honest.finish(&s, "flood");
}

#[test]
fn header_floods_get_431_or_400_and_the_server_stays_up() {
    let s = server(&[]);
    let honest = Honest::start(&s, "headers");
    let many_fields: String = (0..70).map(|i| format!("X-F{i}: v\r\n")).collect();
    let long_line = format!("X-Long: {}\r\n", "a".repeat(9 * 1024));
    let folded: String = (0..200).map(|_| " more\r\n").collect();
    let cases: Vec<(Vec<u8>, &[u16])> = vec![
        (
            format!("GET / HTTP/1.1\r\nHost: t\r\n{many_fields}\r\n").into_bytes(),
            &[431],
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: t\r\n{long_line}\r\n").into_bytes(),
            &[431],
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: t\r\nX-Fold: a\r\n{folded}\r\n").into_bytes(),
            &[400, 431],
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "p".repeat(16 * 1024)).into_bytes(),
            &[431, 414],
        ),
    ];
    let rounds = size(20, 500);
    for round in 0..rounds {
        for (req, want) in &cases {
            let mut c = connect_from(&s, attacker(round % 50)).unwrap();
            let _ = c.write_all(req);
            let r = read_response(&mut BufReader::new(c)).expect("an answer");
            assert!(want.contains(&r.status), "got {} for a flood", r.status);
        }
    }
    println!(
        "abuse headers: {} hostile heads answered",
        rounds * cases.len()
    );
    honest.finish(&s, "headers");
}

#[test]
fn smuggling_attempts_get_one_answer_and_a_closed_connection() {
    let s = server(&[]);
    let honest = Honest::start(&s, "smuggling");
    let smuggled = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    let ext = "a".repeat(100 * 1024);
    let cases: Vec<(String, Vec<u8>, &[u16])> = vec![
        (
            "CL and TE".into(),
            format!("POST /messages HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").into_bytes(),
            &[400],
        ),
        (
            "two Content-Lengths".into(),
            format!("POST /messages HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nhi{smuggled}").into_bytes(),
            &[400],
        ),
        (
            "chunked, identity".into(),
            format!("POST /messages HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n2\r\nhi\r\n0\r\n\r\n{smuggled}").into_bytes(),
            &[501],
        ),
        (
            "a bare CR in a header".into(),
            format!("GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n{smuggled}").into_bytes(),
            &[400],
        ),
        (
            "a chunk size over 64 bits".into(),
            format!("POST /messages HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1{}\r\nhi\r\n0\r\n\r\n", "0".repeat(20)).into_bytes(),
            &[400],
        ),
        (
            "a 100 KiB chunk extension".into(),
            format!("POST /messages HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;x={ext}\r\nhi\r\n0\r\n\r\n").into_bytes(),
            &[400, 413],
        ),
        (
            "trailers that never end".into(),
            {
                let mut r = b"POST /messages HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n".to_vec();
                for i in 0..20_000 {
                    r.extend_from_slice(format!("X-T{i}: v\r\n").as_bytes());
                }
                r
            },
            &[413],
        ),
    ];
    for (what, req, status) in &cases {
        let mut c = connect_from(&s, attacker(7)).unwrap();
        let _ = c.write_all(req);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let got = read_until_closed(&mut c, WAIT).unwrap_or_else(|| panic!("{what}: not closed"));
        let text = String::from_utf8_lossy(&got);
        let answers = text.matches("HTTP/1.1 ").count();
        assert_eq!(answers, 1, "{what}: exactly one answer, got {text:?}");
        assert!(
            status
                .iter()
                .any(|st| text.starts_with(&format!("HTTP/1.1 {st} "))),
            "{what}: {}",
            text.lines().next().unwrap_or("")
        );
        assert!(
            !text.contains("smolchat_"),
            "{what}: the smuggled request was served"
        );
    }
    // LF-only line ends are read as line ends (RFC 9112 allows it), and the
    // request is the one it appears to be: one answer per request.
    let mut c = connect_from(&s, attacker(8)).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\nHost: t\nConnection: close\n\n")
        .unwrap();
    let got = read_until_closed(&mut c, WAIT).unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    honest.finish(&s, "smuggling");
}

#[test]
fn ten_thousand_pipelined_requests_in_one_write_are_answered_in_order() {
    let s = server(&[]);
    let honest = Honest::start(&s, "pipelining");
    let n = size(2000, 10_000);
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(
            format!("GET /rooms/p{}/messages HTTP/1.1\r\nHost: t\r\n\r\n", i % 7).as_bytes(),
        );
    }
    batch.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let c = connect_from(&s, attacker(3)).unwrap();
    let mut w = c.try_clone().unwrap();
    // Written from another thread: the answers come while it writes.
    let writer = std::thread::spawn(move || w.write_all(&batch));
    let mut r = BufReader::new(c);
    for i in 0..n {
        let res = read_response(&mut r).unwrap_or_else(|e| panic!("answer {i}: {e}"));
        assert_eq!(res.status, 200, "answer {i}");
    }
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    writer.join().unwrap().unwrap();
    println!("abuse pipelining: {n} requests in one write, all answered in order");
    honest.finish(&s, "pipelining");
}

#[test]
fn absurd_ids_limits_and_json_are_answered_never_fatal() {
    let s = server(&[]);
    let honest = Honest::start(&s, "params");
    s.say("p", "a", "one");
    for id in [
        "99999999999999999999999999",
        "-1",
        "18446744073709551615",
        "1e9",
        "0x10",
        "",
        "NaN",
    ] {
        let mut st = s.sse_with("/rooms/p/events", &[&format!("Last-Event-ID: {id}")]);
        assert_eq!(st.response.status, 200, "Last-Event-ID {id:?}");
        st.until("hello");
    }
    for (q, want) in [
        ("since=99999999999999999999999", 400),
        ("since=-1", 400),
        ("since=18446744073709551615", 200),
        ("limit=0", 400),
        ("limit=18446744073709551615", 200),
        ("limit=99999999999999999999999", 400),
        ("since=1&limit=%00", 400),
    ] {
        assert_eq!(s.get(&format!("/rooms/p/messages?{q}")).status, want, "{q}");
    }
    let mut stream = s.sse("/rooms/p/events?since=18446744073709551615");
    assert_eq!(stream.until("gap").json()["since"], u64::MAX);
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = format!(r#"{{"text":"hi","x":{}}}"#, &nested[..]);
    // Unknown fields are ignored, whatever they hold; the known ones must
    // be strings.
    for (body, want) in [
        (deep.as_str(), 413),
        (r#"{"text":"hi","n":[[[[[[[[[[1e999999]]]]]]]]]]}"#, 201),
        (r#"{"text":1e999999}"#, 400),
        (r#"{"text":"hi","user":{"a":[1,2,3]}}"#, 400),
        (&format!(r#"{{"text":"hi","x":{}}}"#, &nested[..4000]), 400),
    ] {
        let r = s.post_with(
            "/rooms/p/messages",
            &["Content-Type: application/json"],
            body.as_bytes(),
        );
        assert_eq!(r.status, want, "{:.60}", body);
    }
    honest.finish(&s, "params");
}

#[test]
fn hostile_names_and_texts_follow_the_written_policy_in_the_stream() {
    let s = server(&[]);
    let honest = Honest::start(&s, "policy");
    let mut sub = s.sse("/rooms/policy/events");
    sub.until("hello");
    let marks = |n| format!("e{}", "\u{0301}".repeat(n));
    // (user, text, status, what the stream shows)
    let cases: Vec<(&str, String, u16, Option<String>)> = vec![
        ("ana", "nul \0 byte".into(), 400, None),
        ("ana", "one\rtwo".into(), 201, Some("one\ntwo".into())),
        (
            "ana",
            "\u{202E}gnp.exe".into(),
            201,
            Some("\u{202E}gnp.exe".into()),
        ),
        (
            "ana",
            "👩\u{200D}💻 zwj".into(),
            201,
            Some("👩\u{200D}💻 zwj".into()),
        ),
        ("ana", marks(60), 201, Some(marks(8))),
        ("ana\u{200B}", "hi".into(), 400, None),
        ("\u{202E}ana", "hi".into(), 400, None),
        ("a\0na", "hi".into(), 400, None),
    ];
    for (user, text, status, shown) in &cases {
        let r = s.say("policy", user, text);
        assert_eq!(r.status, *status, "{user:?} {text:?}: {}", r.text());
        if let Some(shown) = shown {
            assert_eq!(sub.until("message").json()["text"], shown.as_str());
        }
    }
    // Invalid UTF-8 and an overlong encoding of '/'.
    for raw in [&b"caf\xe9"[..], b"\xc0\xaf", b"\xed\xa0\x80"] {
        let r = s.post_with("/rooms/policy/messages", &["Content-Type: text/plain"], raw);
        assert_eq!(r.status, 400, "{raw:?}");
    }
    // 64 KiB of combining marks: over --max-message-bytes, refused unread.
    let r = s.post(
        "/rooms/policy/messages",
        "text/plain",
        &"\u{0301}".repeat(32 * 1024),
    );
    assert_eq!(r.status, 413);
    assert_eq!(s.say("policy", "ana", "end").status, 201);
    assert_eq!(sub.until("message").json()["text"], "end");
    honest.finish(&s, "policy");
}

#[test]
fn stream_churn_with_presence_leaves_the_server_exact_and_well() {
    let s = server(&[]);
    let honest = Honest::start(&s, "churn");
    let cycles = size(1000, 10_000);
    let threads = 4;
    let addr = s.addr;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..cycles / threads {
                    let mut c = TcpStream::connect_timeout(&addr, WAIT).unwrap();
                    c.set_read_timeout(Some(WAIT)).unwrap();
                    let user = format!("churn{}", (t * 7 + i) % 13);
                    c.write_all(
                        format!("GET /rooms/churn/events?user={user} HTTP/1.1\r\nHost: t\r\n\r\n")
                            .as_bytes(),
                    )
                    .unwrap();
                    let mut r = BufReader::new(c);
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
                }
            })
        })
        .collect();
    let mut watcher = s.sse("/rooms/churn/events?user=watcher");
    for w in workers {
        w.join().unwrap();
    }
    // Presence settles to the one stream left: the watcher. First the
    // server's view (the churn's last closes are noticed asynchronously)...
    let deadline = Instant::now() + WAIT;
    let settled = |s: &Server| {
        let rooms = s.get("/rooms").json();
        rooms.as_array().unwrap().iter().any(|r| {
            r["room"] == "churn" && r["online"] == 1 && r["users"] == serde_json::json!(["watcher"])
        })
    };
    while !settled(&s) {
        assert!(Instant::now() < deadline, "GET /rooms never settled");
        std::thread::yield_now();
    }
    // ...then the watcher's: its presence events end at the same.
    let want = (Some(1), serde_json::json!(["watcher"]));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = watcher
            .next_within(left)
            .expect("the watcher's presence converges");
        if ev.event == "presence" || ev.event == "hello" {
            let p = ev.json();
            if (p["online"].as_u64(), p["users"].clone()) == want {
                break;
            }
        }
    }
    println!("abuse churn: {cycles} stream cycles with presence, presence exact afterwards");
    honest.finish(&s, "churn");
}
