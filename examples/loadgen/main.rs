//! Load generator for smolchat: starts the real server binary on
//! 127.0.0.1, drives one scenario against it, and prints one JSON line
//! (stdout) plus a human summary (stderr).
//!
//! ```text
//! cargo build --release
//! cargo run --release --example loadgen -- post --clients 8 --seconds 5
//! cargo run --release --example loadgen -- fanout --subscribers 1000 --messages 1000
//! cargo run --release --example loadgen -- fanout --subscribers 1000 --rate 50 --messages 500
//! cargo run --release --example loadgen -- idle --subscribers 2000,10000 -- --keepalive 15
//! cargo run --release --example loadgen -- slow --subscribers 50
//! cargo run --release --example loadgen -- fill --rooms 1024 --messages 1000 --db target/bench/fill.db
//! cargo run --release --example loadgen -- missread --db target/bench/missread.db
//! cargo run --release --example loadgen -- tls --clients 2 --seconds 3
//! scripts/bench.sh --quick          # the whole set, as a markdown table
//! scripts/bench.sh --compare        # against the axum + tokio peer (benches/peer)
//! scripts/bench.sh --memory         # the memory-budget set
//! ```
//!
//! Scenarios:
//! - `post` ([`post`]): keep-alive posters, no subscribers: requests/s,
//!   latency, and with a database commits per message.
//! - `fanout` ([`fanout`]): S subscribers on one room, M messages from P
//!   posters, unpaced or paced at R msgs/s. Every subscriber checks it got
//!   every accepted message once, in order, with the id the `201` gave it.
//!   Deliveries/s, send-to-receive latency, server CPU and peak RSS.
//! - `idle` ([`idle`]): server RSS per open stream at each subscriber count,
//!   and the server's CPU time over a quiet window.
//! - `slow` ([`slow`]): one subscriber stops reading while the others read.
//! - `fill` ([`fill`]): R rooms × M posts, far more than `--memory-limit`
//!   holds: RSS against the limit, RSS per byte of message text, and every
//!   message read back through the API.
//! - `missread` ([`missread`]): resumes that only the database can answer:
//!   their time and server CPU, and the paced fan-out's p99 next to them.
//! - `tls` ([`tls`]): what HTTPS costs against plain HTTP in the same run:
//!   full and resumed handshakes per second and server CPU per connection,
//!   and server CPU per keep-alive post.
//! - `cluster` ([`cluster`]): smolchat on Redis (a `redis-server` it
//!   starts itself): fan-out over one and two instances against one
//!   instance without Redis, and posts/s through Redis.
//! - `report`: reads the JSON lines of many runs on stdin and prints the
//!   markdown table of medians against the targets ([`report`]).
//! - `compare`: reads the tagged JSON lines of `scripts/bench.sh
//!   --compare` on stdin and prints smolchat's medians next to the peer's,
//!   with their ratios ([`compare`]).
//!
//! `--server benches/peer/target/release/peer` runs `post`, `fanout`,
//! `idle` and `slow` against the benchmark's peer, an axum + tokio server
//! of the same API subset (see [`server`]).
//!
//! It is a tool, not a test: figures vary with the machine. Only 127.0.0.1
//! is used; every loop is bounded in count and in time (`--timeout`); the
//! open-file limit is raised to the hard limit; `--server-cpu` and
//! `--loadgen-cpu` pin the two processes to different cores (`taskset`).

mod client;
mod cluster;
mod compare;
mod fanout;
mod fill;
mod idle;
mod missread;
mod post;
mod report;
mod server;
mod slow;
mod stats;
mod tls;

use std::time::Duration;

/// Command-line settings shared by the scenarios.
pub(crate) struct Args {
    pub(crate) scenario: String,
    pub(crate) server: String,
    /// Posting connections.
    pub(crate) clients: usize,
    /// Subscriber counts (idle takes several, the others the first).
    pub(crate) subscribers: Vec<usize>,
    pub(crate) messages: usize,
    /// Posts per second overall; 0 is unpaced.
    pub(crate) rate: f64,
    pub(crate) seconds: f64,
    /// Bytes of message text; `None` takes the scenario's default
    /// (see [`Args::size_or`]).
    pub(crate) size: Option<usize>,
    /// Rooms (`fill`).
    pub(crate) rooms: usize,
    /// Resumes to time (`missread`).
    pub(crate) resumes: usize,
    pub(crate) db: String,
    pub(crate) sync: String,
    pub(crate) server_cpu: Option<String>,
    pub(crate) loadgen_cpu: Option<String>,
    /// Hard cap on the whole scenario.
    pub(crate) timeout: Duration,
    /// Server flags after `--`.
    pub(crate) extra: Vec<String>,
}

impl Args {
    /// `--size`, or the scenario's `default`.
    pub(crate) fn size_or(&self, default: usize) -> usize {
        self.size.unwrap_or(default)
    }
}

const USAGE: &str =
    "usage: loadgen post|fanout|idle|slow|fill|missread|tls|cluster|report|compare [--clients N] [--subscribers N[,N..]] \
[--messages M] [--rate R] [--seconds S] [--size BYTES] [--rooms R] [--resumes N] \
[--db PATH|:memory:] [--sync full|normal] \
[--server BIN] [--server-cpu LIST] [--loadgen-cpu LIST] [--timeout S] [-- server flags]";

fn parse_args() -> Args {
    let mut args = Args {
        scenario: String::new(),
        server: "target/release/smolchat".into(),
        clients: 0,
        subscribers: Vec::new(),
        messages: 0,
        rate: 0.0,
        seconds: 0.0,
        size: None,
        rooms: 0,
        resumes: 0,
        db: ":memory:".into(),
        sync: "full".into(),
        server_cpu: None,
        loadgen_cpu: None,
        timeout: Duration::from_secs(120),
        extra: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next().unwrap_or_else(|| {
                eprintln!("{a} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| {
                eprintln!("bad value {v:?} for {flag}");
                std::process::exit(2)
            })
        }
        match a.as_str() {
            "--server" => args.server = val(),
            "--clients" => args.clients = num(&a, val()),
            "--subscribers" => {
                args.subscribers = val().split(',').map(|s| num(&a, s.to_string())).collect()
            }
            "--messages" => args.messages = num(&a, val()),
            "--rate" => args.rate = num(&a, val()),
            "--seconds" => args.seconds = num(&a, val()),
            "--size" => args.size = Some(num(&a, val())),
            "--rooms" => args.rooms = num(&a, val()),
            "--resumes" => args.resumes = num(&a, val()),
            "--db" => args.db = val(),
            "--sync" => args.sync = val(),
            "--server-cpu" => args.server_cpu = Some(val()),
            "--loadgen-cpu" => args.loadgen_cpu = Some(val()),
            "--timeout" => args.timeout = Duration::from_secs_f64(num(&a, val())),
            "--" => args.extra.extend(it.by_ref()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            s if args.scenario.is_empty() && !s.starts_with('-') => args.scenario = s.to_string(),
            s => {
                eprintln!("unknown argument {s}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    if args.scenario.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    args
}

/// Pins this process (every thread so far; it starts none) to `cpus`.
fn pin_self(cpus: &str) {
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("loadgen: could not pin itself to cpus {cpus} (is taskset installed?)");
    }
}

/// Raises the soft open-file limit to the hard one: 10000 streams need
/// 10000 sockets here as on the server.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn main() {
    let args = parse_args();
    if args.scenario == "report" {
        return report::run();
    }
    if args.scenario == "compare" {
        return compare::run();
    }
    if let Some(cpus) = &args.loadgen_cpu {
        pin_self(cpus);
    }
    let fds = raise_fd_limit();
    let need = args.subscribers.iter().max().copied().unwrap_or(0) + args.clients + 64;
    if fds < need as u64 {
        eprintln!("loadgen: open-file limit {fds} is below the {need} sockets this run needs");
        std::process::exit(1);
    }
    // A run that hangs is a finding, not a reason to block the bench.
    let limit = args.timeout;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("loadgen: scenario exceeded --timeout {limit:?}; aborting");
        server::kill_running();
        std::process::exit(3);
    });
    match args.scenario.as_str() {
        "post" => post::run(&args),
        "fanout" => fanout::run(&args),
        "fill" => fill::run(&args),
        "idle" => idle::run(&args),
        "missread" => missread::run(&args),
        "slow" => slow::run(&args),
        "tls" => tls::run(&args),
        "cluster" => cluster::run(&args),
        other => {
            eprintln!("unknown scenario {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
}
