//! Test harness: starts the real `smolchat` binary on `127.0.0.1:0` and
//! speaks raw HTTP/1.1 and SSE to it over TCP.
//!
//! Every wait has a deadline; nothing sleeps to synchronise. Helpers return
//! plain values (status, headers, body, events) so tests read as the
//! exchange they check.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Default deadline for anything a test waits for. Generous: it only
/// matters when something is wrong, and CI runs the suite under qemu on a
/// loaded 2-core machine, where a step that takes milliseconds natively can
/// take seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// A scratch folder removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty folder under the system's temporary directory.
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("smolchat-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// `chat.db` in the folder, as a `--db` value.
    pub fn db(&self) -> String {
        self.0.join("chat.db").to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the server runs under an emulator ([`WRAPPER_VAR`]): its RSS
/// then includes the emulator's own.
pub fn emulated() -> bool {
    wrapper().is_some()
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The ready line (the first line on stdout).
    pub ready: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `smolchat` with `args` on a free port.
    pub fn start(args: &[&str]) -> Server {
        Self::start_env(args, &[])
    }

    /// Starts `smolchat` with `args` and extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = smolchat_command();
        cmd.args(["--addr", "127.0.0.1:0", "--threads", "2"]);
        // History in memory unless the test names a database.
        if !args.contains(&"--db") {
            cmd.args(["--db", ":memory:"]);
        }
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}{}", spawn_hint(&e)));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let stderr = child.stderr.take().unwrap();
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let err: Vec<String> = erx.try_iter().collect();
                panic!("server did not report its address; stderr: {err:?}");
            }
        };
        let addr = line
            .strip_prefix("smolchat listening on ")
            .and_then(|rest| rest.split_once("://"))
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server {
            child: Some(child),
            addr,
            ready: line,
            stderr: erx,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A new TCP connection to the server.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, WAIT).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        s
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn raw(&self, bytes: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        read_response(&mut BufReader::new(s)).expect("response")
    }

    /// `GET path` with extra header lines.
    pub fn get_with(&self, path: &str, headers: &[&str]) -> Response {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.raw(req.as_bytes())
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.get_with(path, &[])
    }

    /// `POST path` with a content type and body.
    pub fn post(&self, path: &str, content_type: &str, body: &str) -> Response {
        self.post_with(
            path,
            &[&format!("Content-Type: {content_type}")],
            body.as_bytes(),
        )
    }

    /// `POST path` with header lines and a body.
    pub fn post_with(&self, path: &str, headers: &[&str], body: &[u8]) -> Response {
        self.raw(&post_bytes(path, headers, body))
    }

    /// Posts `text` as JSON from `user` to `room`; returns the response.
    pub fn say(&self, room: &str, user: &str, text: &str) -> Response {
        let body = serde_json::json!({ "user": user, "text": text }).to_string();
        self.post(
            &format!("/rooms/{room}/messages"),
            "application/json",
            &body,
        )
    }

    /// Opens an event stream on `path` with extra header lines.
    pub fn sse_with(&self, path: &str, headers: &[&str]) -> Sse {
        let mut s = self.connect();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        Sse::open(s)
    }

    /// Opens an event stream on `path`.
    pub fn sse(&self, path: &str) -> Sse {
        self.sse_with(path, &[])
    }

    /// Opens an event stream with a request given whole (an HTTP/1.0 one,
    /// say): its body is read chunked or up to the close, as it comes.
    pub fn sse_raw(&self, request: &[u8]) -> Sse {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        Sse::open(s)
    }

    /// A metric's value from `/metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        // A test near --max-connections may briefly find no free slot while
        // the server notices earlier connections closing.
        let deadline = Instant::now() + WAIT;
        let mut res = self.get("/metrics");
        while res.status == 503 && Instant::now() < deadline {
            res = self.get("/metrics");
        }
        let body = res.text();
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in {body}"))
            .parse()
            .unwrap()
    }

    /// Waits until `metric` reaches `want`.
    pub fn wait_metric(&self, name: &str, want: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.metric(name);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed {got}, wanted {want}"
            );
            std::thread::yield_now();
        }
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, up to `deadline` from now.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5)); // polling a child, not synchronising
        }
    }

    /// Thread names of the server process, as the server names them.
    ///
    /// Under [`WRAPPER_VAR`] the process is the emulator's: its main thread
    /// is named after the emulator's executable instead of `smolchat`, and
    /// the emulator runs threads of its own ([`WRAPPER_THREADS_VAR`], one
    /// for qemu-user), named like its main thread, as is any thread the
    /// server starts without a name. All of those are reported as
    /// `smolchat` (what they are called natively), less the emulator's
    /// count: a stray unnamed server thread still shows up as an extra
    /// `smolchat`, as it would natively.
    pub fn threads(&self) -> Vec<String> {
        let pid = self.pid();
        let mut names = Vec::new();
        let mut main_name = None;
        for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().join("comm");
            if let Ok(name) = std::fs::read_to_string(path) {
                let name = name.trim().to_string();
                if entry.file_name().to_str() == Some(&pid.to_string()) {
                    main_name = Some(name.clone());
                }
                names.push(name);
            }
        }
        if wrapper().is_some() {
            let emulator = main_name.expect("the main thread is listed");
            let extra = wrapper_threads();
            let same = names.iter().filter(|n| **n == emulator).count();
            assert!(
                same > extra,
                "expected the main thread and {extra} emulator thread(s) named {emulator:?}, got {names:?}; \
                 set {WRAPPER_THREADS_VAR} to the emulator's own thread count"
            );
            names.retain(|n| *n != emulator);
            names.extend(std::iter::repeat_n("smolchat".to_string(), same - extra));
        }
        names.sort();
        names
    }

    /// A line of the server's `/proc/PID/status`, in kB.
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap()
    }

    /// Whatever the server logged to stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Everything the server logged to stderr not yet taken, up to its
    /// end: call it after the process exited ([`Server::wait_exit`]).
    pub fn stderr_to_end(&self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the server's stderr did not end; got {lines:?}")
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A command line (split on whitespace) to run the server binary with,
/// such as `qemu-aarch64-static`. Cargo's `RUNNER` only wraps the test
/// binaries it starts; when they run under an emulator, the server binary
/// they start is built for the same foreign target and needs it too.
pub const WRAPPER_VAR: &str = "SMOLCHAT_TEST_WRAPPER";
/// How many threads the wrapper itself runs next to the program it runs
/// (default 1: qemu-user's RCU thread).
pub const WRAPPER_THREADS_VAR: &str = "SMOLCHAT_TEST_WRAPPER_THREADS";

fn wrapper() -> Option<Vec<String>> {
    let words: Vec<String> = std::env::var(WRAPPER_VAR)
        .ok()?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (!words.is_empty()).then_some(words)
}

fn wrapper_threads() -> usize {
    std::env::var(WRAPPER_THREADS_VAR).map_or(1, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{WRAPPER_THREADS_VAR}={v:?} is not a number"))
    })
}

/// The server binary the tests run, instead of the one cargo built along
/// with them. CI builds the tests quickly (test profile) and points this
/// at the release binary it ships, so that binary is what gets tested.
pub const BIN_VAR: &str = "SMOLCHAT_TEST_BIN";

/// The `smolchat` binary under test: [`BIN_VAR`] or cargo's.
pub fn smolchat_bin() -> std::ffi::OsString {
    std::env::var_os(BIN_VAR).unwrap_or_else(|| env!("CARGO_BIN_EXE_smolchat").into())
}

/// A command that runs the `smolchat` binary under test, behind the
/// [`WRAPPER_VAR`] command line when one is set.
pub fn smolchat_command() -> Command {
    let bin = smolchat_bin();
    match wrapper() {
        Some(words) => {
            let mut cmd = Command::new(&words[0]);
            cmd.args(&words[1..]).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// Why a spawn may have failed, when the cause is a foreign binary.
fn spawn_hint(e: &io::Error) -> String {
    if e.raw_os_error() == Some(8) && wrapper().is_none() {
        format!(
            " (the binary is for another architecture: set {WRAPPER_VAR}, e.g. to qemu-aarch64-static)"
        )
    } else {
        String::new()
    }
}

/// The bytes of a POST request.
pub fn post_bytes(path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.text()))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {:?}", self.text()))
            .to_string()
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response (status line, headers, and a length-delimited,
/// chunked or (with neither) close-delimited body; none for 1xx, 204 and
/// 304).
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut status_line = read_line(r)?;
    let mut status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            if status == 100 {
                // Interim response: the real one follows.
                status_line = read_line(r)?;
                status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                continue;
            }
            break;
        }
        let (k, v) = line.split_once(':').expect("header line");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let res = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let mut body = Vec::new();
    if status == 204 || status == 304 {
    } else if let Some(len) = res.header("content-length") {
        body.resize(len.parse().unwrap(), 0);
        r.read_exact(&mut body)?;
    } else if res
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size = usize::from_str_radix(read_line(r)?.trim(), 16).unwrap();
            if size == 0 {
                read_line(r)?;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    } else if status >= 200 {
        r.read_to_end(&mut body)?;
    }
    Ok(Response { body, ..res })
}

/// One server-sent event (or comment) as a browser would see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    /// Set for a comment line such as `: ping`.
    pub comment: Option<String>,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

/// A client reading an event stream.
pub struct Sse {
    pub response: Response,
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet parsed into events.
    text: Vec<u8>,
    /// The body ended (last chunk or EOF).
    pub ended: bool,
    /// The body is chunked; else it ends with the connection (HTTP/1.0).
    chunked: bool,
}

impl Sse {
    fn open(stream: TcpStream) -> Sse {
        let mut reader = BufReader::new(stream);
        let mut headers = Vec::new();
        let status_line = read_line(&mut reader).expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        loop {
            let line = read_line(&mut reader).expect("header");
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if status != 200 {
            if let Some(len) = response.header("content-length") {
                let mut body = vec![0; len.parse().unwrap()];
                reader.read_exact(&mut body).unwrap();
                response.body = body;
            }
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        Sse {
            response,
            reader,
            text: Vec::new(),
            ended: false,
            chunked,
        }
    }

    /// The socket under the stream.
    pub fn socket(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Reads one chunk of the body into `text`; false once the body ended.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.reader.get_ref().set_read_timeout(Some(left))?;
        if !self.chunked {
            let mut chunk = [0u8; 4096];
            let n = self.reader.read(&mut chunk)?;
            if n == 0 {
                self.ended = true;
                return Ok(false);
            }
            self.text.extend_from_slice(&chunk[..n]);
            return Ok(true);
        }
        let size_line = match read_line(&mut self.reader) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.ended = true;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let size = usize::from_str_radix(size_line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            self.ended = true;
            return Ok(false);
        }
        let start = self.text.len();
        self.text.resize(start + size, 0);
        self.reader.read_exact(&mut self.text[start..])?;
        assert_eq!(
            read_line(&mut self.reader)?,
            "",
            "chunk not followed by CRLF"
        );
        Ok(true)
    }

    /// The next event or comment, waiting until `within` has passed.
    pub fn next_within(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.text.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.text.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("utf-8 event");
                let mut ev = Event::default();
                let mut data = Vec::new();
                for line in block.trim_end_matches('\n').split('\n') {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => ev.comment = Some(value.to_string()),
                        "event" => ev.event = value.to_string(),
                        "id" => ev.id = Some(value.to_string()),
                        "data" => data.push(value.to_string()),
                        "retry" => ev.retry = value.parse().ok(),
                        other => panic!("unknown field {other:?} in {block:?}"),
                    }
                }
                ev.data = data.join("\n");
                return Some(ev);
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) | Err(_) => return None,
            }
        }
    }

    /// The next event or comment, within [`WAIT`].
    pub fn next(&mut self) -> Option<Event> {
        self.next_within(WAIT)
    }

    /// Skips comments and `retry`-only events; the next named event.
    pub fn next_event(&mut self) -> Event {
        loop {
            let ev = self.next().expect("an event before the deadline");
            if !ev.event.is_empty() {
                return ev;
            }
        }
    }

    /// The next event named `name`, skipping others.
    pub fn until(&mut self, name: &str) -> Event {
        loop {
            let ev = self
                .next()
                .unwrap_or_else(|| panic!("no {name} event before the deadline"));
            if ev.event == name {
                return ev;
            }
        }
    }

    /// The next `n` message events' JSON.
    pub fn messages(&mut self, n: usize) -> Vec<serde_json::Value> {
        (0..n).map(|_| self.until("message").json()).collect()
    }
}

/// A `redis-server` of the test's own, on a unix socket in a scratch
/// folder, with nothing saved to disk unless asked (`persist`). Stopped on
/// drop.
pub struct Redis {
    child: Option<Child>,
    pub dir: PathBuf,
    pub sock: PathBuf,
    persist: bool,
}

/// Whether the smolchat under test was built with the `redis` feature
/// (the ARM builds are not): its `--help` says so.
pub fn binary_has_redis() -> bool {
    let out = smolchat_command()
        .arg("--help")
        .output()
        .expect("run smolchat --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--redis URL"), "--help lists --redis");
    !help.contains("not in this build")
}

impl Redis {
    /// Starts one in `dir`. `None` when `redis-server` is not installed and
    /// this is not CI (`SMOLCHAT_CI` unset): the test then says it skipped.
    /// With `persist`, Redis writes an append-only file (fsync on every
    /// write), so a restart keeps what it had.
    pub fn start(dir: &std::path::Path, persist: bool) -> Option<Redis> {
        if !binary_has_redis() {
            eprintln!("skipping: the smolchat under test was built without the redis feature");
            return None;
        }
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("SMOLCHAT_CI").is_none(),
                "redis-server is not installed (scripts/test.sh installs it)"
            );
            eprintln!("skipping: redis-server is not installed (apt install redis-server)");
            return None;
        }
        let mut r = Redis {
            child: None,
            dir: dir.to_path_buf(),
            sock: dir.join("redis.sock"),
            persist,
        };
        r.launch();
        Some(r)
    }

    fn launch(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(&self.sock)
            .args(["--unixsocketperm", "700", "--save", "", "--dir"])
            .arg(&self.dir);
        if self.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.cli_try(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10)); // polling a process, not synchronising
        }
    }

    /// The URL for `--redis`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.sock.display())
    }

    fn cli_try(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs `redis-cli` against it; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_try(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// Stops it (SIGKILL: nothing is flushed beyond what it fsynced).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again in the same folder, on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
