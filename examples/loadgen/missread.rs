//! `missread`: what a read that misses memory costs, and what it does to
//! the live rooms next to it.
//!
//! 1. Build: a server on a fresh database file (`--db FILE`, required)
//!    gets `--messages` posts (default 1000) of `--size` bytes (default
//!    4096) in room `disk`, from one connection, then stops.
//! 2. Restart on the same file. Rooms load on first use with only their
//!    newest `--replay` messages (50) in memory, so a stream resuming
//!    after id 0 needs the rest from the file: the reader thread reads the
//!    whole range from SQLite and encodes it (store reads are not kept in
//!    memory, so every resume misses again).
//! 3. `--resumes` times (default 20), one after another: a stream on `disk`
//!    with `Last-Event-ID: 0` reads until it has every message, in order,
//!    and closes. Wall time per resume (first, median, max) and server CPU
//!    per resume (utime + stime from `/proc/PID/stat`, over all of them).
//!    Twice: as a browser reads (the kernel delays ACKs), and acknowledging
//!    every read at once ([`Sse::ack_at_once`]). On loopback the server's
//!    stream send buffer holds one ~64 KiB segment, so the first kind moves
//!    one segment per delayed-ACK timer (~40 ms); the second shows what the
//!    server itself needs.
//! 4. The paced fan-out of `fanout --rate`: `--subscribers` (default 1000)
//!    on a live room, `--rate` msgs/s (default 50) for `--seconds` (default
//!    10) from `--clients` posters (default 4), measured alone, then on a
//!    fresh room while another client resumes `disk` from id 0 in a loop,
//!    once per kind of client. The p99s and their ratio to the one alone,
//!    with the loss check of each run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use smol::Timer;

use crate::client::{room_text, BlockingConn, Event, Sse};
use crate::fanout::{self, round, Load};
use crate::server::Server;
use crate::stats::percentile_ms;
use crate::Args;

/// Longest one resume may take.
const RESUME_LIMIT: Duration = Duration::from_secs(60);
/// Most resumes the background loop makes.
const MAX_LOOP: usize = 100_000;

/// Opens a stream on `room` resuming after id 0 and reads until message
/// `last`; the wall time, or what went wrong (ids not `1..=last` in order,
/// a failed read, out of time).
fn resume(
    addr: std::net::SocketAddr,
    room: &str,
    last: u64,
    ack_at_once: bool,
) -> Result<Duration, String> {
    let t = Instant::now();
    let deadline = t + RESUME_LIMIT;
    smol::block_on(async {
        let path = format!("/rooms/{room}/events");
        let mut sse = Sse::open_with(addr, &path, "Last-Event-ID: 0\r\n", None, 64 * 1024).await?;
        if ack_at_once {
            sse.ack_at_once();
        }
        // The next id expected, and how many came out of sequence.
        let (mut next, mut wrong) = (1u64, 0u64);
        let take = |sse: &mut Sse, next: &mut u64, wrong: &mut u64| {
            sse.events(|ev| {
                if let Event::Message { id, .. } = ev {
                    if id != *next {
                        *wrong += 1;
                    }
                    *next = id + 1;
                }
            })
        };
        take(&mut sse, &mut next, &mut wrong);
        while next <= last {
            let read = async { Some(sse.read().await) }
                .or(async {
                    Timer::at(deadline).await;
                    None
                })
                .await;
            match read {
                Some(Ok(true)) => take(&mut sse, &mut next, &mut wrong),
                Some(Ok(false)) => return Err(format!("stream ended at id {next}")),
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err(format!("out of time at id {next}")),
            }
        }
        if wrong > 0 {
            return Err(format!("{wrong} ids out of sequence"));
        }
        Ok(t.elapsed())
    })
}

fn ms(d: &[Duration], p: f64) -> f64 {
    let us: Vec<u32> = d.iter().map(|d| d.as_micros() as u32).collect();
    percentile_ms(&us, p)
}

pub(crate) fn run(args: &Args) {
    if args.db == ":memory:" || Path::new(&args.db).exists() {
        eprintln!("missread: needs --db FILE, a database file that does not exist yet");
        std::process::exit(2);
    }
    let messages = if args.messages == 0 {
        1000
    } else {
        args.messages
    };
    let size = args.size_or(4096);
    let resumes = if args.resumes == 0 { 20 } else { args.resumes };
    let seconds = if args.seconds > 0.0 {
        args.seconds
    } else {
        10.0
    };
    let rate = if args.rate > 0.0 { args.rate } else { 50.0 };
    // The live room's posts are short, as in `fanout`; `--size` is the
    // size of the messages on disk.
    let load = Load {
        subscribers: args.subscribers.first().copied().unwrap_or(1000),
        posters: if args.clients == 0 { 4 } else { args.clients },
        messages: (rate * seconds).round() as usize,
        rate,
        size: 64,
    };

    // 1. Build the room on disk.
    let built = {
        let server = Server::start(args, &[]);
        let mut conn = BlockingConn::open(server.addr).expect("connect");
        let mut bad = 0;
        for seq in 1..=messages as u64 {
            if conn.post_id("disk", &room_text(0, seq, size)) != (201, Some(seq)) {
                bad += 1;
            }
        }
        bad
    };
    if built > 0 {
        eprintln!("missread: {built} of {messages} posts were refused or misnumbered");
        std::process::exit(1);
    }

    // 2. Restart: `disk` is only in the file now.
    let connections = (load.subscribers + load.posters + 64).to_string();
    let server = Server::start(args, &["--max-connections".into(), connections]);
    let addr = server.addr;
    let last = messages as u64;

    // 3. Resumes one after another, as a browser reads (delayed ACKs)
    // and acknowledging at once.
    let timed = |ack_at_once: bool| {
        let cpu0 = server.cpu();
        let (mut walls, mut errors) = (Vec::new(), Vec::new());
        for _ in 0..resumes {
            match resume(addr, "disk", last, ack_at_once) {
                Ok(d) => walls.push(d),
                Err(e) => errors.push(e),
            }
        }
        let cpu = server.cpu().saturating_sub(cpu0);
        Timed {
            first: walls.first().copied().unwrap_or_default(),
            walls: sorted(walls),
            cpu_ms: cpu.as_secs_f64() * 1000.0 / resumes as f64,
            errors,
        }
    };
    let plain = timed(false);
    let quick = timed(true);

    // 4. The paced fan-out alone, then next to a loop of resumes (each
    // kind of client in turn).
    let alone = fanout::measure(&server, "live-alone", &load);
    let next_to_loop = |room: &str, ack_at_once: bool| {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let looper = scope.spawn(|| {
                let (mut done, mut errs) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) && done.len() + errs.len() < MAX_LOOP {
                    match resume(addr, "disk", last, ack_at_once) {
                        Ok(d) => done.push(d),
                        Err(e) => errs.push(e),
                    }
                }
                (done, errs)
            });
            let measured = fanout::measure(&server, room, &load);
            stop.store(true, Ordering::Relaxed);
            let (done, errs) = looper.join().unwrap_or_default();
            (measured, sorted(done), errs)
        })
    };
    let (loaded, looped, loop_errors) = next_to_loop("live-loaded", false);
    let (loaded_quick, looped_quick, quick_loop_errors) = next_to_loop("live-loaded-quick", true);
    let errors: Vec<String> = [
        &plain.errors,
        &quick.errors,
        &loop_errors,
        &quick_loop_errors,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();

    let p99 = |j: &serde_json::Value| j["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let json = serde_json::json!({
        "scenario": "missread",
        "messages": messages,
        "size": size,
        "resumes": resumes,
        "resume_first_ms": round(plain.first.as_secs_f64() * 1000.0, 2),
        "resume_p50_ms": round(ms(&plain.walls, 0.5), 2),
        "resume_max_ms": round(ms(&plain.walls, 1.0), 2),
        "server_cpu_ms_per_resume": round(plain.cpu_ms, 1),
        "quickack_resume_first_ms": round(quick.first.as_secs_f64() * 1000.0, 2),
        "quickack_resume_p50_ms": round(ms(&quick.walls, 0.5), 2),
        "quickack_resume_max_ms": round(ms(&quick.walls, 1.0), 2),
        "quickack_server_cpu_ms_per_resume": round(quick.cpu_ms, 1),
        "resume_errors": errors.len(),
        "first_resume_error": errors.first(),
        "alone": alone,
        "loaded": loaded,
        "loaded_quickack": loaded_quick,
        "p99_alone_ms": p99(&alone),
        "p99_loaded_ms": p99(&loaded),
        "p99_loaded_quickack_ms": p99(&loaded_quick),
        "p99_ratio": round(p99(&loaded) / p99(&alone), 2),
        "p99_ratio_quickack": round(p99(&loaded_quick) / p99(&alone), 2),
        "loop_resumes": looped.len(),
        "loop_resume_p50_ms": round(ms(&looped, 0.5), 2),
        "quickack_loop_resumes": looped_quick.len(),
        "quickack_loop_resume_p50_ms": round(ms(&looped_quick, 0.5), 2),
        "server_peak_rss_kb": server.status_kb("VmHWM"),
    });
    println!("{json}");
    for (how, t) in [("as a browser reads", &plain), ("ACKing at once", &quick)] {
        eprintln!(
            "missread: {resumes} resumes of {messages} × {size} B from the file, {how}: first {:.1} ms, \
             median {:.1} ms, max {:.1} ms; server CPU {:.1} ms each; {} errors",
            t.first.as_secs_f64() * 1000.0,
            ms(&t.walls, 0.5),
            ms(&t.walls, 1.0),
            t.cpu_ms,
            t.errors.len(),
        );
    }
    eprintln!("missread: alone: {}", fanout::summary(&alone));
    for (how, j, l) in [
        ("as a browser reads", &loaded, &looped),
        ("ACKing at once", &loaded_quick, &looped_quick),
    ] {
        eprintln!(
            "missread: next to {} resumes looping {how} (median {:.1} ms): {}",
            l.len(),
            ms(l, 0.5),
            fanout::summary(j)
        );
    }
    eprintln!(
        "missread: paced p99 {:.2} ms alone, {:.2} ms next to browser-like resumes, {:.2} ms next to resumes ACKing at once",
        p99(&alone),
        p99(&loaded),
        p99(&loaded_quick),
    );
    if let Some(e) = errors.first() {
        eprintln!("missread: first resume error: {e}");
    }
}

/// One series of timed resumes.
struct Timed {
    first: Duration,
    walls: Vec<Duration>,
    cpu_ms: f64,
    errors: Vec<String>,
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort_unstable();
    v
}
