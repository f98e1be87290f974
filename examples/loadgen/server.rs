//! The server under test: started from the release binary on 127.0.0.1:0,
//! observed through `/proc/PID` (CPU time, RSS) and `/metrics`, killed on
//! drop (SIGTERM, then SIGKILL) or by the `--timeout` watchdog.
//!
//! `--server` may also name the benchmark's peer (`benches/peer`, axum +
//! tokio): it takes smolchat's flags and ignores what it does not
//! implement, and says `peer listening on ...` where smolchat says
//! `smolchat listening on ...`. Which one answered is [`Server::kind`];
//! smolchat-only figures (store commits, evictions) read 0 from the peer's
//! minimal `/metrics`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::client::Conn;
use crate::Args;

/// Pid of the running server, for the watchdog.
static PID: AtomicU32 = AtomicU32::new(0);

/// Kills the server, if one runs (the watchdog's last act).
pub(crate) fn kill_running() {
    let pid = PID.load(Ordering::SeqCst);
    if pid != 0 {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
}

/// The server under test, killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// `smolchat` or `peer`, from the ready line.
    pub(crate) kind: &'static str,
}

impl Server {
    /// Starts the server with the scenario's `flags` (name/value pairs),
    /// then the user's flags after `--`.
    pub(crate) fn start(args: &Args, flags: &[String]) -> Server {
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
        ]);
        // Every connection of the load comes from 127.0.0.1, so the
        // per-address cap (64 by default) would count the whole load as
        // one client and refuse its 65th stream with 429.
        let per_address = [
            "--max-connections-per-ip".to_string(),
            "1000000".to_string(),
        ];
        // `flags` are name/value pairs; one the user gave after `--`
        // replaces ours.
        for pair in flags.chunks(2).chain(per_address.chunks(2)) {
            if args.extra.iter().any(|e| *e == pair[0]) {
                continue;
            }
            cmd.args(pair);
        }
        cmd.args(&args.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (cargo build --release first)",
                args.server
            )
        });
        PID.store(child.id(), Ordering::SeqCst);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let line = line.trim();
        let (kind, rest) = if let Some(rest) = line.strip_prefix("smolchat listening on ") {
            ("smolchat", Some(rest))
        } else {
            ("peer", line.strip_prefix("peer listening on "))
        };
        let addr = rest
            .and_then(|rest| rest.split_once("://"))
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr, kind }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Server CPU time (user + system, every thread) so far, from the
    /// per-thread scheduler statistics (nanoseconds, unlike `/proc/PID/stat`
    /// in 10 ms ticks). Threads that already exited are not counted, so use
    /// it over windows in which none exit.
    pub(crate) fn cpu_precise(&self) -> Duration {
        let mut ns = 0u64;
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for t in dir.flatten() {
                let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Duration::from_nanos(ns)
    }

    /// Server CPU time (user + system) so far, threads that exited
    /// included, in 10 ms ticks.
    pub(crate) fn cpu(&self) -> Duration {
        proc_cpu(&format!("/proc/{}/stat", self.pid()))
    }

    /// Voluntary plus involuntary context switches of every thread: each
    /// voluntary one is a wake-up after a sleep.
    pub(crate) fn wakeups(&self) -> u64 {
        let mut n = 0;
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for t in dir.flatten() {
                let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                for l in s.lines() {
                    if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                        n += v.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
        n
    }

    /// A field of /proc/PID/status, in kB (`VmRSS`, `VmHWM`, `Threads`).
    pub(crate) fn status_kb(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    }

    /// Where the server's resident memory is, in kB, from
    /// `/proc/PID/smaps`: the main malloc heap (`[heap]`), other private
    /// anonymous mappings (other threads' malloc arenas, large `mmap`
    /// allocations, thread stacks), file-backed pages (the binary, the
    /// libraries) and shared memory (SQLite's WAL index).
    pub(crate) fn rss_breakdown(&self) -> serde_json::Value {
        let smaps =
            std::fs::read_to_string(format!("/proc/{}/smaps", self.pid())).unwrap_or_default();
        let (mut heap, mut anon, mut file, mut shmem, mut kind) = (0u64, 0u64, 0u64, 0u64, 0u8);
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or("");
            if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                // A mapping's header: address range, perms, offset, dev, inode, path.
                let perms = words.next().unwrap_or("");
                let path = words.nth(3).unwrap_or("");
                kind = match path {
                    "[heap]" => 0,
                    _ if perms.ends_with('s') => 3,
                    "" | "[stack]" | "[anon]" => 1,
                    p if p.starts_with('[') => 1,
                    _ => 2,
                };
            } else if first == "Rss:" {
                let kb: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                match kind {
                    0 => heap += kb,
                    1 => anon += kb,
                    2 => file += kb,
                    _ => shmem += kb,
                }
            }
        }
        serde_json::json!({ "heap": heap, "anon": anon, "file": file, "shmem": shmem })
    }

    /// One counter or gauge from `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        metric_in(&self.metrics().await, name)
    }

    /// The whole `/metrics` text (empty if the request failed).
    pub(crate) async fn metrics(&self) -> String {
        let mut conn = Conn::open(self.addr).await;
        let body = conn
            // Closed by the server after the answer: a keep-alive wait
            // would arm a header timer, whose stale deadline wakes the
            // server once later (seen in `idle` as its only wake-up).
            .request(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await
            .1;
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// One counter or gauge from a `/metrics` text (0 if absent).
pub(crate) fn metric_in(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, so a server run under a profiler writes its
        // profile; SIGKILL if it is not gone within a few seconds.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        PID.store(0, Ordering::SeqCst);
    }
}

/// CPU time (user + system) from a `/proc/PID/stat` file, in 10 ms ticks
/// (USER_HZ is 100 on Linux).
pub(crate) fn proc_cpu(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // The command name may hold spaces; the fields after its ')' do not.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
