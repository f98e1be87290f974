//! `post`: `--clients` keep-alive connections post as fast as answers come
//! back for `--seconds`, to one room with no subscribers. Reports
//! requests/s, latency percentiles, and (with a database) commits per
//! message from `/metrics`. Each client is a thread with a blocking socket
//! (see [`BlockingConn`]), so the loadgen costs less per request than the
//! server: it reports both CPU times per request.

use std::time::{Duration, Instant};

use crate::client::{message_text, BlockingConn};
use crate::fanout::round;
use crate::server::Server;
use crate::stats::percentile_ms;
use crate::Args;

pub(crate) fn run(args: &Args) {
    let clients = if args.clients == 0 { 8 } else { args.clients };
    let seconds = if args.seconds > 0.0 {
        args.seconds
    } else {
        5.0
    };
    let server = Server::start(args, &[]);
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu0 = server.cpu();
    let own0 = own_cpu();
    let started = Instant::now();
    let size = args.size_or(64);
    let (mut lat, refused) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut lat = Vec::new();
                    let mut refused = 0u64;
                    let Ok(mut conn) = BlockingConn::open(addr) else {
                        return (lat, 1);
                    };
                    let mut k = c as u64;
                    while Instant::now() < deadline {
                        let text = message_text(k, size);
                        let t = Instant::now();
                        let status = conn.post("bench", &text);
                        if status == 201 {
                            lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        } else {
                            refused += 1;
                            if status == 0 {
                                match BlockingConn::open(addr) {
                                    Ok(c) => conn = c,
                                    Err(_) => break,
                                }
                            }
                        }
                        k += clients as u64;
                    }
                    (lat, refused)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut refused = 0;
        for t in threads {
            let (lat, r) = t.join().unwrap_or_default();
            all.extend(lat);
            refused += r;
        }
        (all, refused)
    });
    let own = own_cpu().saturating_sub(own0);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu().saturating_sub(cpu0);
    let (commits, stored) = smol::block_on(async {
        (
            server.metric("smolchat_store_commits_total").await,
            server.metric("smolchat_store_messages_total").await,
        )
    });
    lat.sort_unstable();
    let ok = lat.len() as f64;
    let per_msg = if stored > 0 {
        commits as f64 / stored as f64
    } else {
        0.0
    };
    let json = serde_json::json!({
        "scenario": "post",
        "server": server.kind,
        "db": if args.db == ":memory:" { ":memory:" } else { "file" },
        "sync": args.sync,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "accepted": lat.len(),
        "refused": refused,
        "requests_per_s": round(ok / elapsed, 0),
        "p50_ms": round(percentile_ms(&lat, 0.5), 3),
        "p90_ms": round(percentile_ms(&lat, 0.9), 3),
        "p99_ms": round(percentile_ms(&lat, 0.99), 3),
        "max_ms": round(percentile_ms(&lat, 1.0), 3),
        "commits": commits,
        "stored": stored,
        "commits_per_message": round(per_msg, 4),
        "server_cpu_s": round(cpu.as_secs_f64(), 2),
        "server_cpu_us_per_request": round(cpu.as_secs_f64() * 1e6 / ok.max(1.0), 1),
        "loadgen_cpu_us_per_request": round(own.as_secs_f64() * 1e6 / ok.max(1.0), 1),
        "server_peak_rss_kb": server.status_kb("VmHWM"),
    });
    println!("{json}");
    eprintln!(
        "post ({}): {clients} clients, db {} (sync {}): {:.0} posts/s, p50 {:.2} ms, p99 {:.2} ms; {refused} refused; \
         {commits} commits for {stored} messages = {per_msg:.3} commits/message; server CPU {:.2} s, peak RSS {} kB",
        server.kind,
        args.db,
        args.sync,
        ok / elapsed,
        percentile_ms(&lat, 0.5),
        percentile_ms(&lat, 0.99),
        cpu.as_secs_f64(),
        server.status_kb("VmHWM")
    );
}

/// This process's CPU time (user + system, every thread) so far.
fn own_cpu() -> Duration {
    crate::server::proc_cpu("/proc/self/stat")
}
