//! `idle`: what an idle event stream costs the server.
//!
//! Measures the server's RSS with no connection (after a settle), then opens
//! streams up to each `--subscribers` level in turn (default 2000,10000),
//! and reports (RSS − baseline) / streams at each level. At the first level
//! it also measures the server's CPU time and wake-ups over `--seconds`
//! (default 10) of silence: with `--keepalive 15` no stream is due a ping in
//! that window, so the ideal is zero.

use std::time::Duration;

use smol::{LocalExecutor, Timer};

use crate::client::Sse;
use crate::fanout::round;
use crate::server::Server;
use crate::Args;

/// Pause after connecting before RSS is read, so the server has finished
/// with the handshakes.
const SETTLE: Duration = Duration::from_millis(1000);

pub(crate) fn run(args: &Args) {
    let mut levels = if args.subscribers.is_empty() {
        vec![2000, 10000]
    } else {
        args.subscribers.clone()
    };
    levels.sort_unstable();
    let top = *levels.last().unwrap();
    let window = Duration::from_secs_f64(if args.seconds > 0.0 {
        args.seconds
    } else {
        10.0
    });
    let server = Server::start(
        args,
        &[
            "--max-connections".into(),
            (top + 64).to_string(),
            "--keepalive".into(),
            "15s".into(),
        ],
    );
    let addr = server.addr;
    let ex = LocalExecutor::new();
    let result = smol::block_on(ex.run(async {
        Timer::after(SETTLE).await;
        let base_kb = server.status_kb("VmRSS");
        let mut streams: Vec<Sse> = Vec::new();
        let mut per_level = Vec::new();
        let mut idle = None;
        let mut failed = 0usize;
        for &n in &levels {
            // Open in waves: the listen backlog is finite.
            while streams.len() + failed < n {
                let wave = (n - streams.len() - failed).min(256);
                let opened: Vec<_> = (0..wave)
                    .map(|_| {
                        ex.spawn(async move {
                            // A tiny read buffer: this side only needs the head.
                            Sse::open(addr, "/rooms/idle/events", None, 512).await
                        })
                    })
                    .collect();
                for t in opened {
                    match t.await {
                        Ok(s) => streams.push(s),
                        Err(e) => {
                            failed += 1;
                            if failed == 1 {
                                eprintln!("idle: a stream failed: {e}");
                            }
                        }
                    }
                }
            }
            // The /metrics probe first, then the pause: the probe's own
            // connection (its close included) must not fall in the window.
            Timer::after(SETTLE).await;
            let online = server.metric("smolchat_subscribers").await;
            Timer::after(SETTLE).await;
            let rss_kb = server.status_kb("VmRSS");
            per_level.push((n, online, rss_kb));
            if idle.is_none() {
                let (cpu0, wake0) = (server.cpu_precise(), server.wakeups());
                Timer::after(window).await;
                let (cpu1, wake1) = (server.cpu_precise(), server.wakeups());
                idle = Some((n, cpu1.saturating_sub(cpu0), wake1 - wake0));
            }
        }
        (base_kb, per_level, idle.unwrap(), failed)
    }));
    let (base_kb, per_level, (idle_n, idle_cpu, idle_wakes), failed) = result;
    let levels_json: Vec<_> = per_level
        .iter()
        .map(|&(n, online, rss)| {
            serde_json::json!({
                "subscribers": n,
                "online": online,
                "rss_kb": rss,
                "bytes_per_stream": round((rss.saturating_sub(base_kb) * 1024) as f64 / n as f64, 0),
            })
        })
        .collect();
    let top_level = per_level.last().unwrap();
    let json = serde_json::json!({
        "scenario": "idle",
        "server": server.kind,
        "baseline_rss_kb": base_kb,
        "levels": levels_json,
        "subscribers": top_level.0,
        "bytes_per_stream": round((top_level.2.saturating_sub(base_kb) * 1024) as f64 / top_level.0 as f64, 0),
        "failed": failed,
        "idle_subscribers": idle_n,
        "idle_seconds": window.as_secs_f64(),
        "idle_cpu_ms": round(idle_cpu.as_secs_f64() * 1000.0, 3),
        "idle_wakeups": idle_wakes,
        "server_peak_rss_kb": server.status_kb("VmHWM"),
        "server_threads": server.status_kb("Threads"),
    });
    println!("{json}");
    let levels_txt: Vec<String> = per_level
        .iter()
        .map(|&(n, online, rss)| {
            format!(
                "{n} streams ({online} online): RSS {rss} kB = {:.0} B/stream",
                (rss.saturating_sub(base_kb) * 1024) as f64 / n as f64
            )
        })
        .collect();
    eprintln!(
        "idle ({}): baseline RSS {base_kb} kB; {}; {failed} failed; over {:.0} s with {idle_n} idle streams: \
         server CPU {:.3} ms, {idle_wakes} wake-ups",
        server.kind,
        levels_txt.join("; "),
        window.as_secs_f64(),
        idle_cpu.as_secs_f64() * 1000.0,
    );
}
