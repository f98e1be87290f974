//! Load generator for smolchat: starts the real server binary on
//! 127.0.0.1, drives one scenario against it, and prints one JSON line plus
//! a human summary.
//!
//! ```text
//! cargo build --release && cargo run --release --example loadgen -- post --clients 8 --seconds 5
//! cargo run --release --example loadgen -- post --db /tmp/bench.db --sync full
//! ```
//!
//! Scenarios:
//! - `post`: `--clients` keep-alive connections post as fast as answers come
//!   back for `--seconds`, to one room with no subscribers. Reports
//!   requests/s, latency percentiles, and (with a database) commits per
//!   message from `/metrics`.
//!
//! Every loop is bounded in count or time, and only 127.0.0.1 is used. It
//! is a tool, not a test: figures vary with the machine.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

struct Args {
    scenario: String,
    server: String,
    clients: usize,
    seconds: f64,
    db: String,
    sync: String,
    server_cpu: Option<String>,
    extra: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        scenario: String::new(),
        server: "target/release/smolchat".into(),
        clients: 8,
        seconds: 5.0,
        db: ":memory:".into(),
        sync: "full".into(),
        server_cpu: None,
        extra: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--server" => args.server = val(),
            "--clients" => args.clients = val().parse().expect("--clients N"),
            "--seconds" => args.seconds = val().parse().expect("--seconds S"),
            "--db" => args.db = val(),
            "--sync" => args.sync = val(),
            "--server-cpu" => args.server_cpu = Some(val()),
            "--" => args.extra.extend(it.by_ref()),
            s if args.scenario.is_empty() && !s.starts_with('-') => args.scenario = s.to_string(),
            s => panic!("unknown argument {s}"),
        }
    }
    if args.scenario.is_empty() {
        eprintln!("usage: loadgen post [--clients N] [--seconds S] [--db PATH|:memory:] [--sync full|normal] [--server BIN] [--server-cpu LIST] [-- server flags]");
        std::process::exit(2);
    }
    args
}

/// The server under test, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &Args, flags: &[&str]) -> Server {
        let mut cmd = match &args.server_cpu {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus, &args.server]);
                c
            }
            None => Command::new(&args.server),
        };
        cmd.args([
            "--addr",
            "127.0.0.1:0",
            "--rate",
            "0",
            "--db",
            &args.db,
            "--sync",
            &args.sync,
        ])
        .args(flags)
        .args(&args.extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (cargo build --release first)",
                args.server
            )
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("smolchat listening on http://")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    /// Server CPU time (user + system) so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// A field of /proc/PID/status, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    }

    async fn metric(&self, name: &str) -> u64 {
        let mut conn = Conn::open(self.addr).await;
        let body = conn
            .request(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .1;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1.1 client connection.
struct Conn {
    r: futures_lite::io::BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).unwrap();
        Conn {
            r: futures_lite::io::BufReader::new(s.clone()),
            w: s,
        }
    }

    /// Sends one request and reads the response: (status, body).
    async fn request(&mut self, req: &[u8]) -> (u16, Vec<u8>) {
        self.w.write_all(req).await.expect("write");
        let mut line = String::new();
        self.r.read_line(&mut line).await.expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0;
        loop {
            line.clear();
            self.r.read_line(&mut line).await.expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn post(args: &Args) {
    let server = Server::start(args, &[]);
    let ex = smol::LocalExecutor::new();
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let cpu0 = server.cpu();
    let started = Instant::now();
    let (latencies, refused) = smol::block_on(ex.run(async {
        let tasks: Vec<_> = (0..args.clients)
            .map(|c| {
                let addr = server.addr;
                ex.spawn(async move {
                    let mut conn = Conn::open(addr).await;
                    let mut lat = Vec::new();
                    let mut refused = 0u64;
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let body = format!("client {c} message {i}: the quick brown fox jumps over the lazy dog");
                        let req = format!(
                            "POST /rooms/bench/messages HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let t = Instant::now();
                        let (status, _) = conn.request(req.as_bytes()).await;
                        if status == 201 {
                            lat.push(t.elapsed());
                        } else {
                            refused += 1;
                        }
                        i += 1;
                    }
                    (lat, refused)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut refused = 0;
        for t in tasks {
            let (lat, r) = t.await;
            all.extend(lat);
            refused += r;
        }
        (all, refused)
    }));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu().saturating_sub(cpu0);
    let (commits, stored) = smol::block_on(async {
        (
            server.metric("smolchat_store_commits_total").await,
            server.metric("smolchat_store_messages_total").await,
        )
    });
    let mut sorted = latencies;
    sorted.sort();
    let ok = sorted.len() as f64;
    let per_msg = if stored > 0 {
        commits as f64 / stored as f64
    } else {
        0.0
    };
    let json = format!(
        "{{\"scenario\":\"post\",\"db\":{:?},\"sync\":{:?},\"clients\":{},\"seconds\":{:.2},\"accepted\":{},\"refused\":{},\"requests_per_s\":{:.0},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"commits\":{},\"stored\":{},\"commits_per_message\":{:.4},\"server_cpu_s\":{:.2},\"server_peak_rss_kb\":{}}}",
        args.db,
        args.sync,
        args.clients,
        elapsed,
        sorted.len(),
        refused,
        ok / elapsed,
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0),
        commits,
        stored,
        per_msg,
        cpu.as_secs_f64(),
        server.status_kb("VmHWM"),
    );
    println!("{json}");
    eprintln!(
        "post: {} clients, db {} (sync {}): {:.0} posts/s, p50 {:.2} ms, p99 {:.2} ms; {} commits for {} messages = {:.3} commits/message; server CPU {:.2} s, peak RSS {} kB",
        args.clients,
        args.db,
        args.sync,
        ok / elapsed,
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        commits,
        stored,
        per_msg,
        cpu.as_secs_f64(),
        server.status_kb("VmHWM")
    );
}

fn main() {
    let args = parse_args();
    match args.scenario.as_str() {
        "post" => post(&args),
        other => {
            eprintln!("unknown scenario {other:?}; try post");
            std::process::exit(2);
        }
    }
}
