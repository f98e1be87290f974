//! HTTP/1.0 clients are served, with 1.0 semantics: ApacheBench, nginx's
//! default `proxy_pass`, microcontrollers and shell scripts over raw
//! sockets. Responses have a length or end with the connection, never
//! chunks; the connection closes after each response unless the client
//! asked for `keep-alive`; a 1.0 request may leave out `Host`.
//!
//! `ab` (Debian's apache2-utils) and `nginx` are installed by
//! `scripts/test.sh`.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{read_response, Response, Scratch, Server, WAIT};

/// Sends `req` on a new connection and reads everything until the server
/// closes it: the proof that a 1.0 exchange ends with the connection.
fn exchange(s: &Server, req: &[u8]) -> Vec<u8> {
    let mut conn = s.connect();
    conn.write_all(req).unwrap();
    let mut all = Vec::new();
    conn.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("the server closes after answering {req:?}: {e}"));
    all
}

fn parse(bytes: &[u8]) -> Response {
    read_response(&mut BufReader::new(bytes)).expect("a response")
}

fn no_chunks(r: &Response) {
    assert_eq!(r.header("transfer-encoding"), None, "{:?}", r.headers);
}

#[test]
fn a_post_over_http_1_0_without_host_gets_201_and_a_close() {
    let s = Server::start(&[]);
    let all = exchange(
        &s,
        b"POST /rooms/sensors/messages?user=esp32 HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\ntemp 21.5 C",
    );
    let r = parse(&all);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&all));
    no_chunks(&r);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.json()["text"], "temp 21.5 C");
    assert_eq!(r.json()["user"], "esp32");

    // A form post with a Host, as `curl --http1.0 -d hi` sends it.
    let r = parse(&exchange(
        &s,
        b"POST /messages HTTP/1.0\r\nHost: pi:8080\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 2\r\n\r\nhi",
    ));
    assert_eq!((r.status, r.json()["text"].as_str()), (201, Some("hi")));

    let page = s.get("/rooms/sensors/messages");
    assert_eq!(page.json()[0]["text"], "temp 21.5 C");
}

#[test]
fn http_1_0_keep_alive_is_honoured_when_asked() {
    let s = Server::start(&["--rate", "0"]);
    let mut conn = BufReader::new(s.connect());
    for i in 0..3 {
        let body = format!("n{i}");
        let req = format!(
            "POST /messages HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.get_mut().write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut conn).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        no_chunks(&r);
    }
    // Pipelined: both answered, in order, then the close the last one asked for.
    conn.get_mut()
        .write_all(
            b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /rooms HTTP/1.0\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_response(&mut conn).unwrap().status, 200);
    let rooms = read_response(&mut conn).unwrap();
    assert_eq!(rooms.header("connection"), Some("close"));
    assert_eq!(rooms.json()[0]["last_id"], 3);
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn refused_http_1_0_requests_are_told_why() {
    let s = Server::start(&[]);
    let cases: &[(&[u8], u16, &str)] = &[
        (
            b"POST /messages HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            400,
            "transfer-encoding is not allowed in HTTP/1.0",
        ),
        (
            b"POST /messages HTTP/1.0\r\n\r\nhi",
            411,
            "an HTTP/1.0 post needs a content-length",
        ),
        (
            b"POST /messages HTTP/1.0\r\nContent-Length: 99999\r\n\r\n",
            413,
            "body too large (limit 4096 bytes)",
        ),
        (
            b"GET / HTTP/0.9\r\n\r\n",
            505,
            "only HTTP/1.1 and HTTP/1.0 are supported",
        ),
    ];
    for (req, status, error) in cases {
        let r = parse(&exchange(&s, req));
        assert_eq!(
            (r.status, r.error().as_str()),
            (*status, *error),
            "{}",
            String::from_utf8_lossy(req)
        );
        assert_eq!(r.header("connection"), Some("close"));
    }
    // A slow 1.0 head is cut like any other.
    let s = Server::start(&["--header-timeout", "300ms"]);
    let r = parse(&exchange(&s, b"GET /healthz HTTP/1.0\r\nX-A"));
    assert_eq!(r.status, 408);
}

#[test]
fn an_http_1_0_stream_is_close_delimited_sse() {
    let mut s = Server::start(&["--rate", "0"]);
    s.say("lobby", "ana", "before");
    let mut sse = s.sse_raw(b"GET /events?user=tiny HTTP/1.0\r\n\r\n");
    assert_eq!(sse.response.status, 200);
    assert_eq!(
        sse.response.header("content-type"),
        Some("text/event-stream")
    );
    assert_eq!(sse.response.header("connection"), Some("close"));
    assert_eq!(sse.response.header("transfer-encoding"), None);
    assert_eq!(sse.response.header("content-length"), None);
    assert_eq!(sse.next().unwrap().retry, Some(2000));
    assert_eq!(sse.until("hello").json()["online"], 1);
    assert_eq!(sse.until("message").json()["text"], "before");
    assert_eq!(s.say("lobby", "bob", "live").status, 201);
    let live = sse.until("message");
    assert_eq!(
        (live.id.as_deref(), live.json()["text"].as_str()),
        (Some("2"), Some("live"))
    );

    // The stream ends with the connection: the shutdown event, then EOF.
    s.signal("TERM");
    sse.until("shutdown");
    assert!(sse.next().is_none());
    assert!(sse.ended, "the server closed the stream");
    assert!(s.wait_exit(WAIT).expect("exits").success());
}

#[test]
fn a_long_history_page_goes_to_http_1_0_up_to_the_close() {
    let dir = Scratch::new("http10-page");
    let db = dir.db();
    {
        let mut s = Server::start(&["--db", &db, "--rate", "0", "--sync", "normal"]);
        let mut conn = BufReader::new(s.connect());
        for n in 1..=150 {
            let req =
                support::post_bytes("/rooms/log/messages", &[], format!("line {n}").as_bytes());
            conn.get_mut().write_all(&req).unwrap();
            assert_eq!(read_response(&mut conn).unwrap().status, 201);
        }
        s.signal("TERM");
        assert!(s.wait_exit(WAIT).expect("exits").success());
    }
    // After a restart nothing is in memory: the page is read from the file
    // a batch at a time, so its length is not known when it starts.
    let s = Server::start(&["--db", &db]);
    let all = exchange(
        &s,
        b"GET /rooms/log/messages?since=0&limit=150 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let r = parse(&all);
    assert_eq!(r.status, 200);
    no_chunks(&r);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("connection"), Some("close"));
    let page = r.json();
    let texts: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (1..=150).map(|n| format!("line {n}")).collect();
    assert_eq!(texts, want);

    // The same page to HTTP/1.1 is chunked.
    let r = s.get("/rooms/log/messages?since=0&limit=150");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.json(), page);
}

/// Runs `ab` (ApacheBench, HTTP/1.0) as a new user would, and returns its
/// report.
fn ab(args: &[&str]) -> String {
    let out = Command::new("ab")
        .args(args)
        .output()
        .expect("ab (Debian's apache2-utils) is installed: scripts/test.sh installs it");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ab failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name:?} in\n{report}"))
}

#[test]
fn apachebench_posts_2000_messages_with_no_failure() {
    let dir = Scratch::new("http10-ab");
    let body = dir.0.join("body.txt");
    std::fs::write(&body, "sensor alert: door open").unwrap();
    let s = Server::start(&["--rate", "0", "--history", "5000"]);
    let url = format!("http://{}/rooms/ab/messages", s.addr);
    // -l: every answer carries its own id and time, so lengths differ.
    let report = ab(&[
        "-q",
        "-l",
        "-n",
        "2000",
        "-c",
        "8",
        "-s",
        "30",
        "-p",
        body.to_str().unwrap(),
        "-T",
        "text/plain",
        &url,
    ]);
    assert_eq!(field(&report, "Complete requests:"), "2000", "{report}");
    assert_eq!(field(&report, "Failed requests:"), "0", "{report}");
    assert!(!report.contains("Non-2xx responses"), "{report}");
    let rooms = s.get("/rooms").json();
    assert_eq!(rooms[0]["last_id"], 2000);
    // And with keep-alive (-k): ab's 1.0 keep-alive.
    let report = ab(&[
        "-q",
        "-k",
        "-l",
        "-n",
        "500",
        "-c",
        "4",
        "-s",
        "30",
        "-p",
        body.to_str().unwrap(),
        "-T",
        "text/plain",
        &url,
    ]);
    assert_eq!(field(&report, "Failed requests:"), "0", "{report}");
    assert_eq!(field(&report, "Keep-Alive requests:"), "500", "{report}");
    assert_eq!(s.get("/rooms").json()[0]["last_id"], 2500);
}

/// nginx in the foreground, as any user, with everything in `dir`.
struct Nginx {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Nginx {
    /// Starts nginx with `location` as the body of `location / { }`.
    fn start(dir: &Scratch, location: &str) -> Nginx {
        let root = dir.0.join("nginx");
        for sub in ["", "client", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            // Workers run as nobody when the master is root.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        // A free port: bound, read and released. Another process could take
        // it in between; nginx then fails to start and says so.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = root.display();
        let conf = format!(
            "worker_processes 1;\n\
             pid {r}/nginx.pid;\n\
             error_log {r}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {r}/client;\n\
               proxy_temp_path {r}/proxy;\n\
               fastcgi_temp_path {r}/fastcgi;\n\
               uwsgi_temp_path {r}/uwsgi;\n\
               scgi_temp_path {r}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{ {location} }}\n\
               }}\n\
             }}\n"
        );
        let file = root.join("nginx.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .args(["-e", &format!("{r}/error.log"), "-p"])
            .arg(&root)
            .arg("-c")
            .arg(&file)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx is installed: scripts/test.sh installs it");
        let nginx = Nginx {
            child,
            port,
            dir: root,
        };
        // Ready when it accepts connections.
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}: {}",
                std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10)); // polling a child, not synchronising
        }
        nginx
    }

    fn request(&self, req: &[u8]) -> Response {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        conn.write_all(req).unwrap();
        read_response(&mut BufReader::new(conn)).expect("a response through nginx")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_with_its_default_http_1_0_proxy_pass_gets_201() {
    let dir = Scratch::new("http10-nginx");
    let s = Server::start(&[]);
    // No proxy_http_version line: nginx speaks HTTP/1.0 to smolchat.
    let nginx = Nginx::start(&dir, &format!("proxy_pass http://{};", s.addr));
    let r = nginx.request(
        b"POST /rooms/door/messages HTTP/1.1\r\nHost: chat.example\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndoor open",
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["text"], "door open");
    // And the history back through it.
    let r = nginx.request(
        b"GET /rooms/door/messages HTTP/1.1\r\nHost: chat.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["text"], "door open");
}

#[test]
fn a_stream_through_nginx_over_http_1_0_delivers_live_events() {
    let dir = Scratch::new("http10-nginx-sse");
    let s = Server::start(&[]);
    let nginx = Nginx::start(&dir, &format!("proxy_pass http://{};", s.addr));
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(b"GET /rooms/door/events HTTP/1.1\r\nHost: chat.example\r\n\r\n")
        .unwrap();
    // nginx re-chunks the close-delimited stream for its 1.1 client; the
    // X-Accel-Buffering: no header keeps it from buffering events.
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut posted = false;
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("through nginx") {
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&seen)
        );
        if !posted && String::from_utf8_lossy(&seen).contains("event: hello") {
            assert_eq!(s.say("door", "ana", "through nginx").status, 201);
            posted = true;
        }
        let n = conn.read(&mut chunk).expect("nginx passes events on");
        assert!(n > 0, "nginx closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(posted);
}
