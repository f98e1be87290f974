//! `fill`: does the memory budget hold while far more messages arrive
//! than it can keep, and is every message still readable afterwards?
//!
//! R rooms (`--rooms`, default 1024) × M posts per room (`--messages`,
//! default 1000) of `--size` bytes (default 4096), posted by `--clients`
//! keep-alive connections (default 8; one thread each with a blocking
//! socket, as in `post`). Client `c` owns the rooms `r` with
//! `r % clients == c` and posts to them round robin, one post per room in
//! turn, so the posts of one room come from one connection in order and
//! post `m` of room `r` gets id `m`. Each text names its room and sequence
//! number ([`room_text`]) so it can be checked when read back.
//!
//! The server runs with its defaults plus `--rate 0`: the memory budget is
//! `--memory-limit` (64MiB unless given after `--`), and the store is
//! whatever `--db` says (a fresh file for the default SQLite store, or
//! `:memory:`). While filling, a sampler reads the server's `VmRSS` and
//! `smolchat_memory_bytes` / `smolchat_memory_messages` every 0.5 s.
//!
//! Reported: posts/s during the fill; RSS at start, after the fill and at
//! its peak (`VmHWM`); the peak of `smolchat_memory_bytes` against the
//! limit; and RSS per byte of message text once the budget is full,
//! `(VmRSS after − VmRSS at start) / (smolchat_memory_messages × size)`,
//! with the resident memory split by kind at start and after the fill
//! (main malloc heap, other anonymous mappings such as other threads'
//! malloc arenas, file-backed pages, shared memory: [`Server::rss_breakdown`]).
//!
//! Then every room is read back with
//! `GET /rooms/rN/messages?since=0&limit=M`. With a database every message
//! must be there: ids `1..=M` with their texts. With `:memory:` the budget
//! evicted the oldest by design: what comes back must be consecutive, end
//! at the room's last id and carry the right texts. The count of
//! mismatches and the time the check took are reported.
//!
//! Exits with status 1 when the peak RSS is above the limit + 16 MiB, a
//! post was refused, or any message mismatched.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::{room_text, BlockingConn};
use crate::fanout::round;
use crate::server::{metric_in, Server};
use crate::stats::percentile_ms;
use crate::Args;

/// How often the sampler reads RSS and the budget.
const INTERVAL: Duration = Duration::from_millis(500);
/// Headroom the issue allows above `--memory-limit` for everything that
/// is not messages (code, stacks, sockets, SQLite's caches).
const HEADROOM_KB: u64 = 16 * 1024;

/// One reading of the server.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kb: u64,
    bytes: u64,
    messages: u64,
    limit: u64,
}

fn sample(server: &Server) -> Sample {
    let text = smol::block_on(server.metrics());
    Sample {
        rss_kb: server.status_kb("VmRSS"),
        bytes: metric_in(&text, "smolchat_memory_bytes"),
        messages: metric_in(&text, "smolchat_memory_messages"),
        limit: metric_in(&text, "smolchat_memory_limit_bytes"),
    }
}

/// Runs `work` while sampling the server every [`INTERVAL`] (at most
/// `max` samples, plus one when `work` is done); returns what `work`
/// returned and the samples.
fn sampled<T: Send>(
    server: &Server,
    max: usize,
    work: impl FnOnce() -> T + Send,
) -> (T, Vec<Sample>) {
    std::thread::scope(|scope| {
        let (stop, stopped) = mpsc::channel::<()>();
        let sampler = scope.spawn(move || {
            let mut samples = Vec::new();
            // The timed receive is the interval, and returns at once when
            // `work` is done (the sender drops).
            while samples.len() < max
                && stopped.recv_timeout(INTERVAL) == Err(mpsc::RecvTimeoutError::Timeout)
            {
                samples.push(sample(server));
            }
            samples
        });
        let out = work();
        drop(stop);
        let mut samples = sampler.join().unwrap_or_default();
        samples.push(sample(server));
        (out, samples)
    })
}

/// What one posting client did: for each room it owns, the sequence
/// number of the post each id was given (`seq_by_id[id - 1]`).
#[derive(Default)]
struct Posted {
    rooms: Vec<(usize, Vec<u32>)>,
    lat_us: Vec<u32>,
    refused: u64,
    /// A `201` whose id was not the next one of its room.
    id_mismatched: u64,
    error: Option<String>,
}

fn post_rooms(
    addr: std::net::SocketAddr,
    mine: Vec<usize>,
    per_room: usize,
    size: usize,
    deadline: Instant,
) -> Posted {
    let mut out = Posted {
        rooms: mine
            .iter()
            .map(|&r| (r, Vec::with_capacity(per_room)))
            .collect(),
        ..Posted::default()
    };
    let mut conn = match BlockingConn::open(addr) {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("connect: {e}"));
            return out;
        }
    };
    'fill: for seq in 1..=per_room as u64 {
        for (room, ids) in &mut out.rooms {
            if Instant::now() > deadline {
                out.error = Some("out of time".into());
                break 'fill;
            }
            let text = room_text(*room, seq, size);
            let t = Instant::now();
            let (status, id) = conn.post_id(&format!("r{room}"), &text);
            match (status, id) {
                (201, Some(id)) => {
                    out.lat_us
                        .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    if id != ids.len() as u64 + 1 {
                        out.id_mismatched += 1;
                    }
                    ids.push(seq as u32);
                }
                (0, _) => {
                    out.refused += 1;
                    match BlockingConn::open(addr) {
                        Ok(c) => conn = c,
                        Err(e) => {
                            out.error = Some(format!("reconnect: {e}"));
                            break 'fill;
                        }
                    }
                }
                _ => out.refused += 1,
            }
        }
    }
    out
}

/// One message as `GET /rooms/{room}/messages` returns it.
#[derive(serde::Deserialize)]
struct Item {
    id: u64,
    text: String,
}

/// What reading every room back found.
#[derive(Default)]
struct Checked {
    /// Messages returned.
    returned: u64,
    /// Expected messages absent, returned ids out of place, wrong texts,
    /// failed reads.
    mismatched: u64,
    /// Rooms that returned nothing (`:memory:`: evicted whole).
    empty_rooms: u64,
    first_problem: Option<String>,
}

impl Checked {
    fn problem(&mut self, n: u64, what: impl FnOnce() -> String) {
        self.mismatched += n;
        if self.first_problem.is_none() && n > 0 {
            self.first_problem = Some(what());
        }
    }
}

/// Reads every room back and checks it against `seqs` (per room, the
/// sequence number each id was given). `complete`: every message must be
/// there (a database); otherwise a consecutive run ending at the last id.
fn check(
    addr: std::net::SocketAddr,
    seqs: &[Vec<u32>],
    size: usize,
    complete: bool,
    deadline: Instant,
) -> Checked {
    let mut out = Checked::default();
    let mut conn = BlockingConn::open(addr).ok();
    for (room, ids) in seqs.iter().enumerate() {
        if Instant::now() > deadline {
            out.problem((seqs.len() - room) as u64, || "out of time".into());
            break;
        }
        let path = format!("/rooms/r{room}/messages?since=0&limit={}", ids.len().max(1));
        // One reconnect per room: the keep-alive may have timed out.
        let mut got = None;
        for _ in 0..2 {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match BlockingConn::open(addr) {
                    Ok(c) => conn.insert(c),
                    Err(_) => continue,
                },
            };
            match c.get(&path) {
                Some((200, body)) => {
                    got =
                        Some(serde_json::from_slice::<Vec<Item>>(body).map_err(|e| e.to_string()));
                    break;
                }
                Some((status, _)) => {
                    got = Some(Err(format!("status {status}")));
                    break;
                }
                None => conn = None,
            }
        }
        let items = match got {
            Some(Ok(items)) => items,
            Some(Err(e)) => {
                out.problem(ids.len() as u64, || format!("room r{room}: {e}"));
                continue;
            }
            None => {
                out.problem(ids.len() as u64, || format!("room r{room}: no answer"));
                continue;
            }
        };
        out.returned += items.len() as u64;
        let last = ids.len() as u64;
        if items.is_empty() {
            out.empty_rooms += 1;
            out.problem(if complete { last } else { 1 }, || {
                format!("room r{room}: nothing returned")
            });
            continue;
        }
        // Where the run must start: id 1, or (evicted by design) anywhere,
        // as long as it ends at the last id.
        let first = if complete {
            1
        } else {
            last + 1 - items.len().min(ids.len()) as u64
        };
        if items.len() as u64 != last + 1 - first {
            let n = (items.len() as i64 - (last + 1 - first) as i64).unsigned_abs();
            out.problem(n, || {
                format!(
                    "room r{room}: {} messages returned, {} expected",
                    items.len(),
                    last + 1 - first
                )
            });
        }
        for (i, item) in items.iter().enumerate() {
            let want_id = first + i as u64;
            let want_text = ids
                .get(want_id as usize - 1)
                .map(|&seq| room_text(room, u64::from(seq), size));
            if item.id != want_id || want_text.as_deref() != Some(item.text.as_str()) {
                out.problem(1, || {
                    format!(
                        "room r{room}: id {} where {want_id} was expected, text {:?}",
                        item.id,
                        &item.text[..item.text.len().min(40)]
                    )
                });
            }
        }
    }
    out
}

pub(crate) fn run(args: &Args) {
    let rooms = if args.rooms == 0 { 1024 } else { args.rooms };
    let per_room = if args.messages == 0 {
        1000
    } else {
        args.messages
    };
    let size = args.size_or(4096);
    let clients = if args.clients == 0 { 8 } else { args.clients }.min(rooms);
    let file = args.db != ":memory:";
    if file && Path::new(&args.db).exists() {
        eprintln!(
            "fill: {} exists; the check needs a fresh database file",
            args.db
        );
        std::process::exit(2);
    }
    let deadline = Instant::now() + args.timeout;
    let max_samples = (args.timeout.as_secs_f64() / INTERVAL.as_secs_f64()) as usize + 2;
    let server = Server::start(args, &[]);
    let addr = server.addr;
    let start = sample(&server);
    let start_breakdown = server.rss_breakdown();

    let started = Instant::now();
    let (posted, fill_samples) = sampled(&server, max_samples, || {
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..clients)
                .map(|c| {
                    let mine: Vec<usize> = (c..rooms).step_by(clients).collect();
                    scope.spawn(move || post_rooms(addr, mine, per_room, size, deadline))
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_default())
                .collect::<Vec<_>>()
        })
    });
    let fill_s = started.elapsed().as_secs_f64();
    let after = sample(&server);
    let fill_hwm_kb = server.status_kb("VmHWM");
    let after_breakdown = server.rss_breakdown();

    let mut seqs = vec![Vec::new(); rooms];
    let mut lat = Vec::new();
    let (mut refused, mut id_mismatched, mut errors) = (0, 0, Vec::new());
    for p in posted {
        for (room, ids) in p.rooms {
            seqs[room] = ids;
        }
        lat.extend(p.lat_us);
        refused += p.refused;
        id_mismatched += p.id_mismatched;
        errors.extend(p.error);
    }
    lat.sort_unstable();
    let accepted = lat.len() as u64;

    let checked_at = Instant::now();
    let (checked, check_samples) = sampled(&server, max_samples, || {
        check(addr, &seqs, size, file, deadline)
    });
    let check_s = checked_at.elapsed().as_secs_f64();
    let hwm_kb = server.status_kb("VmHWM");

    let limit = start.limit;
    let peak = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
    let peak_bytes = peak(&fill_samples, |s| s.bytes).max(after.bytes);
    let text_bytes = after.messages * size as u64;
    let rss_per_text_byte =
        (after.rss_kb.saturating_sub(start.rss_kb) * 1024) as f64 / (text_bytes.max(1)) as f64;
    let bound_kb = limit / 1024 + HEADROOM_KB;
    let mismatched = checked.mismatched + id_mismatched;
    let json = serde_json::json!({
        "scenario": "fill",
        "db": if file { "file" } else { ":memory:" },
        "rooms": rooms,
        "messages_per_room": per_room,
        "size": size,
        "clients": clients,
        "accepted": accepted,
        "refused": refused,
        "post_errors": errors.len(),
        "first_post_error": errors.first(),
        "fill_seconds": round(fill_s, 2),
        "posts_per_s": round(accepted as f64 / fill_s.max(1e-9), 0),
        "p50_ms": round(percentile_ms(&lat, 0.5), 3),
        "p99_ms": round(percentile_ms(&lat, 0.99), 3),
        "max_ms": round(percentile_ms(&lat, 1.0), 3),
        "limit_bytes": limit,
        "rss_bound_kb": bound_kb,
        "start_rss_kb": start.rss_kb,
        "after_rss_kb": after.rss_kb,
        "start_rss_breakdown_kb": start_breakdown,
        "after_rss_breakdown_kb": after_breakdown,
        "fill_peak_rss_kb": fill_hwm_kb,
        "fill_sampled_peak_rss_kb": peak(&fill_samples, |s| s.rss_kb),
        "check_sampled_peak_rss_kb": peak(&check_samples, |s| s.rss_kb),
        "peak_rss_kb": hwm_kb,
        "peak_memory_bytes": peak_bytes,
        "after_memory_bytes": after.bytes,
        "after_memory_messages": after.messages,
        "check_peak_memory_bytes": peak(&check_samples, |s| s.bytes),
        "rss_per_text_byte": round(rss_per_text_byte, 3),
        "samples": fill_samples.len() + check_samples.len(),
        "check_seconds": round(check_s, 2),
        "returned": checked.returned,
        "empty_rooms": checked.empty_rooms,
        "mismatched": mismatched,
        "first_mismatch": checked.first_problem,
        "server_threads": server.status_kb("Threads"),
    });
    println!("{json}");
    // Before the summary: bench.sh shows each run's last line.
    eprintln!(
        "fill: RSS by kind (kB), at start {start_breakdown}, after the fill {after_breakdown}"
    );
    let mib = |kb: u64| kb as f64 / 1024.0;
    eprintln!(
        "fill: {rooms} rooms × {per_room} × {size} B, db {}, {clients} clients: {accepted} posts in {fill_s:.1} s = {:.0}/s \
         (p50 {:.2} ms, p99 {:.2} ms), {refused} refused; RSS start {:.1} MiB, after {:.1} MiB, peak {:.1} MiB \
         (bound {:.1} MiB); budget peak {:.1} MiB of {:.1} MiB, {} messages held after; \
         {rss_per_text_byte:.3} B of RSS per text byte; check: {} returned in {check_s:.1} s, {mismatched} mismatched",
        args.db,
        accepted as f64 / fill_s.max(1e-9),
        percentile_ms(&lat, 0.5),
        percentile_ms(&lat, 0.99),
        mib(start.rss_kb),
        mib(after.rss_kb),
        mib(hwm_kb),
        mib(bound_kb),
        peak_bytes as f64 / 1048576.0,
        limit as f64 / 1048576.0,
        after.messages,
        checked.returned,
    );
    if let Some(p) = &checked.first_problem {
        eprintln!("fill: first mismatch: {p}");
    }
    if let Some(e) = errors.first() {
        eprintln!("fill: first post error: {e}");
    }
    drop(server);
    if hwm_kb > bound_kb || refused > 0 || mismatched > 0 || !errors.is_empty() {
        std::process::exit(1);
    }
}
