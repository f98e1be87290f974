//! The terminal client in the binary, `smolchat say` and `smolchat tail`,
//! against the real server: a round trip; tail across a restart of a
//! server with a database, and through a proxy that cuts the connection,
//! printing every message exactly once; tokens; HTTPS with `--cacert`;
//! one-line errors and exit codes for bad URLs, refusals and busy servers.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Scratch, Server, WAIT};

/// `smolchat ARGS` with a clean client environment (no SMOLCHAT_SERVER or
/// token from the caller; times in UTC).
fn smolchat(args: &[&str]) -> Command {
    let mut cmd = support::smolchat_command();
    cmd.args(args)
        .env_remove("SMOLCHAT_SERVER")
        .env_remove("SMOLCHAT_TOKEN")
        .env_remove("SSL_CERT_FILE")
        .env("TZ", "UTC");
    cmd
}

/// Runs `smolchat say ARGS` with `stdin`.
fn say(args: &[&str], stdin: &str) -> Output {
    let mut cmd = smolchat(&["say"]);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn smolchat say");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// `smolchat say` that must succeed: the ids it printed.
fn said(args: &[&str], stdin: &str) -> Vec<u64> {
    let out = say(args, stdin);
    assert!(
        out.status.success(),
        "say {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// A failing command: its exit code and its stderr, which must be one line.
fn failure(out: &Output) -> (i32, String) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        err.lines().count(),
        1,
        "one line: {err:?} (exit {:?}, stdout {:?})",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap(), err.trim().to_string())
}

/// A running `smolchat tail`, read line by line.
struct Tail {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Tail {
    fn start(args: &[&str]) -> Tail {
        let mut cmd = smolchat(&["tail"]);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn smolchat tail");
        let lines = |r: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Tail {
            child,
            stdout,
            stderr,
        }
    }

    /// The next stdout line, within [`WAIT`].
    fn line(&self) -> String {
        self.stdout.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "tail printed nothing in time; stderr: {:?}",
                self.stderr.try_iter().collect::<Vec<_>>()
            )
        })
    }

    /// The next `n` stdout lines as JSON (`--json`).
    fn messages(&self, n: usize) -> Vec<serde_json::Value> {
        (0..n)
            .map(|_| serde_json::from_str(&self.line()).unwrap())
            .collect()
    }

    /// Waits for a stderr line containing `what`.
    fn said_on_stderr(&self, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(_) => panic!("no {what:?} on tail's stderr"),
            }
        }
    }

    /// Nothing more on stdout for a moment (a bounded check that no line
    /// is printed twice after the last one expected).
    fn quiet_for(&self, d: Duration) {
        if let Ok(extra) = self.stdout.recv_timeout(d) {
            panic!("unexpected line {extra:?}");
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url(s: &Server) -> String {
    format!("http://{}", s.addr)
}

#[test]
fn say_then_tail_round_trip() {
    if !has_client() {
        return;
    }
    let s = Server::start(&["--rate", "0"]);
    let server = url(&s);
    let tail = Tail::start(&["--server", &server, "--room", "kitchen"]);
    tail.said_on_stderr("#kitchen on");
    assert_eq!(
        said(
            &["--server", &server, "--room", "kitchen", "--user", "ana", "hello", "there"],
            ""
        ),
        vec![1]
    );
    let page = s.get("/rooms/kitchen/messages").json();
    let time = page[0]["time"].as_str().unwrap();
    assert_eq!(tail.line(), format!("{} ana: hello there", &time[11..16]));

    // stdin, one message per line; a transform's result is what is shown.
    let ids = said(
        &["--server", &server, "--room", "kitchen", "--lines", "-"],
        "first :)\n\nsecond\n",
    );
    assert_eq!(ids, vec![2, 3]);
    assert!(tail.line().ends_with(" anonymous: first 🙂"));
    assert!(tail.line().ends_with(" anonymous: second"));
    // The whole of stdin as one message.
    assert_eq!(
        said(&["--server", &server, "--room", "kitchen", "-"], "a\nb\n"),
        vec![4]
    );
    assert!(tail.line().ends_with(" anonymous: a"));
    assert_eq!(tail.line(), "b");

    // Presence on stderr, JSON on stdout with --json, from --since.
    let json = Tail::start(&[
        "--server", &server, "--room", "kitchen", "--json", "--since", "2", "--user", "bob",
    ]);
    tail.said_on_stderr("-> bob joined (2 online)");
    let got = json.messages(2);
    assert_eq!(
        got.iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(got[1]["text"], "a\nb");
    drop(json);
    tail.said_on_stderr("<- bob left (1 online)");
}

/// Every message printed exactly once, by id, in order, from `--json` lines.
fn ids(lines: &[serde_json::Value]) -> Vec<u64> {
    lines.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

#[test]
fn tail_follows_a_restart_of_a_server_with_a_database_printing_each_message_once() {
    if !has_client() {
        return;
    }
    let dir = Scratch::new("clients-restart");
    let db = dir.db();
    let mut a = Server::start(&["--db", &db, "--rate", "0", "--sync", "normal"]);
    let addr = a.addr.to_string();
    let server = url(&a);
    let tail = Tail::start(&["--server", &server, "--room", "r", "--json"]);
    tail.said_on_stderr("#r on");
    for i in 1..=3 {
        assert_eq!(a.say("r", "ana", &format!("m{i}")).status, 201);
    }
    let mut seen = tail.messages(3);
    a.signal("TERM");
    assert!(a.wait_exit(WAIT).expect("exits").success());
    tail.said_on_stderr("the server is stopping");
    // The same port and file; posts while tail waits to reconnect are
    // replayed from the file after Last-Event-ID, later ones arrive live.
    let b = Server::start(&[
        "--addr", &addr, "--db", &db, "--rate", "0", "--sync", "normal",
    ]);
    for i in 4..=6 {
        assert_eq!(b.say("r", "ana", &format!("m{i}")).status, 201);
    }
    seen.extend(tail.messages(3));
    tail.said_on_stderr("reconnected");
    assert_eq!(b.say("r", "ana", "m7").status, 201);
    seen.extend(tail.messages(1));
    assert_eq!(ids(&seen), (1..=7).collect::<Vec<_>>());
    let texts: Vec<&str> = seen.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    tail.quiet_for(Duration::from_millis(300));
}

/// A TCP proxy that can cut every connection it carries.
struct Proxy {
    addr: std::net::SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(to: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let conns = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                drop(list);
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { addr, open }
    }

    /// Cuts every connection, as a network failure or a restarted proxy does.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn tail_through_a_proxy_that_cuts_the_connection_misses_nothing() {
    if !has_client() {
        return;
    }
    let s = Server::start(&["--rate", "0"]);
    let proxy = Proxy::start(s.addr);
    let via = format!("http://{}", proxy.addr);
    let tail = Tail::start(&["--server", &via, "--room", "net", "--json"]);
    tail.said_on_stderr("#net on");
    for i in 1..=2 {
        assert_eq!(s.say("net", "ana", &format!("m{i}")).status, 201);
    }
    let mut seen = tail.messages(2);
    for round in 0..2 {
        proxy.cut();
        tail.said_on_stderr("reconnecting in");
        // Posted while tail is away: it gets them on its return.
        let base = 3 + round * 2;
        for i in base..base + 2 {
            assert_eq!(s.say("net", "ana", &format!("m{i}")).status, 201);
        }
        seen.extend(tail.messages(2));
        tail.said_on_stderr("reconnected");
    }
    assert_eq!(s.say("net", "ana", "m7").status, 201);
    seen.extend(tail.messages(1));
    assert_eq!(ids(&seen), (1..=7).collect::<Vec<_>>());
    tail.quiet_for(Duration::from_millis(300));
}

/// Reads one HTTP message (head and `content-length` body) off `r`.
fn read_message(r: &mut impl BufRead) -> Vec<u8> {
    let mut message = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the message ended early"
        );
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        message.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let start = message.len();
    message.resize(start + length, 0);
    r.read_exact(&mut message[start..]).unwrap();
    message
}

#[test]
fn say_retry_after_a_503_whose_post_was_stored_posts_it_once() {
    if !has_client() {
        return;
    }
    // A proxy that loses the first answer: the post reaches the server and
    // is stored, the client gets a 503 (as from a proxy that gave up).
    let s = Server::start(&["--rate", "0"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let via = format!("http://{}", listener.local_addr().unwrap());
    let to = s.addr;
    let (keys, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let mut from_client = BufReader::new(client.try_clone().unwrap());
            let request = read_message(&mut from_client);
            let head = String::from_utf8_lossy(&request).to_lowercase();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("idempotency-key: "))
                .map(|k| k.trim().to_string());
            let _ = keys.send(key);
            let mut server = TcpStream::connect(to).unwrap();
            server.write_all(&request).unwrap();
            let answer = read_message(&mut BufReader::new(server));
            let mut client = client;
            if n == 0 {
                client
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\n\
                          content-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .unwrap();
            } else {
                client.write_all(&answer).unwrap();
            }
        }
    });
    let out = say(&["--server", &via, "--retry", "the kettle is on"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    // Two tries, one key: a fresh 128-bit one, the same on the retry.
    let first = seen
        .recv_timeout(WAIT)
        .unwrap()
        .expect("a key on the first try");
    let second = seen
        .recv_timeout(WAIT)
        .unwrap()
        .expect("a key on the retry");
    assert_eq!(first, second);
    assert!(
        first.len() == 32 && first.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    // One message in the room.
    let history = s.get("/messages").json();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["text"], "the kettle is on");
    // Another message gets another key.
    let out = say(&["--server", &via, "and again"], "");
    assert!(out.status.success());
    let third = seen.recv_timeout(WAIT).unwrap().unwrap();
    assert_ne!(third, first);
}

#[test]
fn bad_urls_refusals_and_busy_servers_are_one_line_and_an_exit_code() {
    if !has_client() {
        return;
    }
    let s = Server::start(&[
        "--rate",
        "0",
        "--transforms",
        "censor",
        "--censor-mode",
        "refuse",
    ]);
    let server = url(&s);
    // A free port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["--server", "ftp://pi", "x"],
            2,
            "expected http://HOST[:PORT]",
        ),
        (vec!["--server", "http://", "x"], 2, "not a URL"),
        (vec!["--server", &closed, "x"], 1, "Connection refused"),
        (vec!["--server", &server], 2, "say what?"),
        (
            vec!["--server", &server, "--room", "no room", "x"],
            2,
            "--room:",
        ),
        (vec!["--server", &server, "-x"], 2, "unknown flag -x"),
        (
            vec!["--server", &server, "--token", "t\u{e9}", "x"],
            2,
            "--token:",
        ),
        (
            vec![
                "--server",
                "https://localhost:1",
                "--cacert",
                "/nonexistent.pem",
                "x",
            ],
            2,
            "--cacert /nonexistent.pem",
        ),
    ];
    for (args, code, msg) in cases {
        let (got, err) = failure(&say(&args, ""));
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(
            err.starts_with("smolchat say: ") && err.contains(msg),
            "{args:?}: {err}"
        );
    }
    // Refused by the server: 413 too long, 422 by a transform (exit 3).
    let long = "x".repeat(5000);
    let (code, err) = failure(&say(&["--server", &server, &long], ""));
    assert_eq!(
        (code, err.as_str()),
        (3, "smolchat say: 413 body too large (limit 4096 bytes)")
    );
    let (code, err) = failure(&say(&["--server", &server, "oh shit"], ""));
    assert_eq!(
        (code, err.as_str()),
        (
            3,
            "smolchat say: 422 censor: message contains a blocked word"
        )
    );
    assert_eq!(s.metric("smolchat_messages_published_total"), 0);

    // Busy: this address holds its two connections, so the next gets 429
    // with Retry-After (exit 4), unless --retry waits until one is free.
    let busy = Server::start(&["--max-connections-per-ip", "2", "--header-timeout", "60s"]);
    let busy_url = url(&busy);
    let held = (busy.connect(), busy.connect());
    let (code, err) = failure(&say(&["--server", &busy_url, "now"], ""));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("429 too many connections from your address") && err.contains("--retry"),
        "{err}"
    );
    let mut patient = smolchat(&["say", "--server", &busy_url, "--retry", "patient"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(patient.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("smolchat say: 429 ") && line.contains("retrying in 1 s"),
        "{line}"
    );
    drop(held);
    let out = patient.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_eq!(busy.get("/messages").json()[0]["text"], "patient");

    // tail: a bad URL, nobody listening, a room name the server refuses.
    for (args, code, msg) in [
        (vec!["--server", "gopher://x"], 2, "expected http"),
        (vec!["--server", &closed], 1, "Connection refused"),
        (vec!["--server", &server, "--since", "-1"], 2, "--since"),
    ] {
        let out = smolchat(&["tail"]).args(&args).output().unwrap();
        let (got, err) = failure(&out);
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(
            err.starts_with("smolchat tail: ") && err.contains(msg),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn say_and_tail_use_a_token_from_the_environment() {
    if !has_client() {
        return;
    }
    let dir = Scratch::new("clients-token");
    let db = dir.db();
    let run = |args: &[&str], stdin: &str| {
        let mut cmd = support::smolchat_command();
        let mut child = cmd
            .args(args)
            .args(["--db", &db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["user", "add", "ana", "--password-stdin"], "pw-of-ana\n");
    run(&["access", "ana", "lobby", "rw"], "");
    let token = run(&["token", "add", "ana"], "")
        .lines()
        .next()
        .unwrap()
        .to_string();
    let s = Server::start(&["--db", &db, "--default-access", "deny"]);
    let server = url(&s);
    let (code, err) = failure(&say(&["--server", &server, "hi"], ""));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("401"), "{err}");
    let out = smolchat(&["tail", "--server", &server]).output().unwrap();
    let (code, err) = failure(&out);
    assert_eq!(code, 3, "{err}");

    let mut cmd = smolchat(&["say", "hi from the terminal"]);
    let out = cmd
        .env("SMOLCHAT_SERVER", &server)
        .env("SMOLCHAT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tail = Tail::start(&["--server", &server, "--token", &token, "--since", "0"]);
    assert!(tail.line().ends_with(" ana: hi from the terminal"));
}

#[test]
fn say_and_tail_over_https_with_a_local_ca() {
    if !has_client() {
        return;
    }
    let dir = Scratch::new("clients-https");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "smolchat clients test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path, ca_path) = (
        dir.0.join("cert.pem"),
        dir.0.join("key.pem"),
        dir.0.join("ca.pem"),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let s = Server::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let server = format!("https://localhost:{}", s.addr.port());
    let ca = ca_path.to_str().unwrap();
    assert_eq!(
        said(&["--server", &server, "--cacert", ca, "over tls"], ""),
        vec![1]
    );
    let tail = Tail::start(&["--server", &server, "--cacert", ca, "--since", "0"]);
    assert!(tail.line().ends_with(" anonymous: over tls"));
    // Without the local CA the certificate is not trusted.
    let mut cmd = smolchat(&["say", "--server", &server, "x"]);
    let out = cmd
        .env("SSL_CERT_FILE", "/nonexistent.pem")
        .output()
        .unwrap();
    let (code, err) = failure(&out);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("SSL_CERT_FILE /nonexistent.pem"), "{err}");
    // The system's roots know nothing of it.
    if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        let (code, err) = failure(&say(&["--server", &server, "x"], ""));
        assert_eq!(code, 1, "{err}");
        assert!(err.to_lowercase().contains("certificate"), "{err}");
    }
}

/// Whether the smolchat under test has the terminal client: the ARM
/// builds leave it out (the `client` feature) and refuse `say` and `tail`
/// in one line, which is checked here instead.
fn has_client() -> bool {
    let out = support::smolchat_command()
        .args(["say", "--help"])
        .output()
        .unwrap();
    if out.status.success() {
        return true;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built without the terminal client") && err.lines().count() == 1,
        "{err}"
    );
    eprintln!("skipping: the smolchat under test was built without the client feature");
    false
}

#[test]
fn a_build_without_the_client_refuses_say_and_tail_in_one_line() {
    if has_client() {
        return;
    }
    for cmd in ["say", "tail"] {
        let out = support::smolchat_command()
            .args([cmd, "hello"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("--features client") && err.lines().count() == 1,
            "{cmd}: {err}"
        );
    }
}
