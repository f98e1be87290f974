//! `fanout`: S subscribers on one room, M messages posted from P keep-alive
//! connections (unpaced, or paced at `--rate` msgs/s overall). Every
//! subscriber records what it got; at the end each record is checked
//! against the `201` answers (missing, duplicate, out of order, id/text
//! mismatch). Reports deliveries/s, send-to-receive latency, server CPU and
//! peak RSS.
//!
//! The subscriber and poster tasks here are shared with `slow`.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use event_listener::Event as Notify;
use futures_lite::FutureExt;
use smol::lock::Semaphore;
use smol::{LocalExecutor, Task, Timer};

use crate::client::{self, epoch, now_us, Conn, Event, Sse};
use crate::server::Server;
use crate::stats::{percentile_ms, Faults, Record};
use crate::Args;

/// Connections being opened at once.
const CONNECT_AT_ONCE: usize = 128;
/// Longest the subscribers get to catch up once posting is done.
const DRAIN: Duration = Duration::from_secs(30);
/// Longest the subscribers get to connect.
const CONNECT: Duration = Duration::from_secs(60);

/// State the subscribers share with the driver.
#[derive(Default)]
pub(crate) struct Shared {
    /// Subscribers that got `hello`.
    pub(crate) ready: Cell<usize>,
    /// Subscribers that could not connect.
    pub(crate) failed: Cell<usize>,
    /// The last accepted id, once posting is done.
    pub(crate) target: Cell<u64>,
    /// Rung when posting is done.
    pub(crate) done: Notify,
}

/// One subscriber: connects, reports `hello`, records every message until
/// posting is done and it has the last accepted id (or [`DRAIN`] passes).
pub(crate) async fn subscriber(
    addr: SocketAddr,
    path: String,
    shared: Rc<Shared>,
    gate: Rc<Semaphore>,
) -> Record {
    let mut rec = Record::default();
    // Listening before connecting: the "done" ring cannot be missed.
    let mut done = shared.done.listen();
    let sse = {
        let _permit = gate.acquire().await;
        Sse::open(addr, &path, None, 16 * 1024).await
    };
    let mut sse = match sse {
        Ok(s) => s,
        Err(e) => {
            rec.error = Some(e);
            shared.failed.set(shared.failed.get() + 1);
            return rec;
        }
    };
    let mut hello = false;
    let mut last_id = 0u64;
    take(&mut sse, &mut rec, &shared, &mut hello, &mut last_id);
    loop {
        let got = async { Some(sse.read().await) }
            .or(async {
                (&mut done).await;
                None
            })
            .await;
        match got {
            Some(Ok(true)) => take(&mut sse, &mut rec, &shared, &mut hello, &mut last_id),
            Some(Ok(false)) => {
                take(&mut sse, &mut rec, &shared, &mut hello, &mut last_id);
                rec.closed = true;
                return rec;
            }
            Some(Err(e)) => {
                rec.error = Some(format!("read: {e}"));
                return rec;
            }
            None => break,
        }
    }
    let deadline = Instant::now() + DRAIN;
    while last_id < shared.target.get() {
        let got = async { Some(sse.read().await) }
            .or(async {
                Timer::at(deadline).await;
                None
            })
            .await;
        match got {
            Some(Ok(true)) => take(&mut sse, &mut rec, &shared, &mut hello, &mut last_id),
            Some(Ok(false)) => {
                rec.closed = true;
                break;
            }
            Some(Err(e)) => {
                rec.error = Some(format!("read: {e}"));
                break;
            }
            None => {
                rec.error = Some("timed out waiting for the last message".into());
                break;
            }
        }
    }
    rec
}

fn take(sse: &mut Sse, rec: &mut Record, shared: &Shared, hello: &mut bool, last: &mut u64) {
    let now = now_us();
    sse.events(|ev| match ev {
        Event::Hello if !*hello => {
            *hello = true;
            shared.ready.set(shared.ready.get() + 1);
        }
        Event::Message { id, k, sent_us } => {
            rec.ids.push(id as u32);
            rec.ks.push(k.map_or(u32::MAX, |k| k as u32));
            rec.lat_us
                .push(now.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32);
            rec.last_us = now;
            *last = (*last).max(id);
        }
        _ => {}
    });
}

/// What one poster saw.
#[derive(Default)]
pub(crate) struct Posted {
    /// `id -> k` for every `201`.
    pub(crate) accepted: Vec<(u64, u64)>,
    /// Answers by status.
    pub(crate) statuses: HashMap<u16, u64>,
    /// Latency of each `201`, microseconds.
    pub(crate) lat_us: Vec<u32>,
    /// (send time, status) of every post, microseconds since the epoch.
    pub(crate) timeline: Vec<(u64, u64, u16)>,
}

/// The end of a run: what every poster saw, when posting finished, the
/// accepted posts (`id -> k`), the last accepted id, and each subscriber's
/// record.
pub(crate) struct Finished {
    pub(crate) posted: Vec<Posted>,
    pub(crate) posted_us: u64,
    pub(crate) accepted: HashMap<u64, u64>,
    pub(crate) max_id: u64,
    pub(crate) records: Vec<Record>,
}

/// Waits for every poster, tells the subscribers the last accepted id so
/// they stop once they have it, and waits for them.
pub(crate) async fn finish(
    posts: Vec<Task<Posted>>,
    subscribers: Vec<Task<Record>>,
    shared: &Shared,
) -> Finished {
    let mut posted = Vec::new();
    for p in posts {
        posted.push(p.await);
    }
    let posted_us = now_us();
    let accepted: HashMap<u64, u64> = posted
        .iter()
        .flat_map(|p| p.accepted.iter().copied())
        .collect();
    let max_id = accepted.keys().copied().max().unwrap_or(0);
    shared.target.set(max_id);
    shared.done.notify(usize::MAX);
    let mut records = Vec::new();
    for s in subscribers {
        records.push(s.await);
    }
    Finished {
        posted,
        posted_us,
        accepted,
        max_id,
        records,
    }
}

/// Poster `p` of `posters`: sends posts `p, p + posters, ...` below
/// `messages` (or until `until`), each at `start + k / rate` when paced.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn poster(
    addr: SocketAddr,
    room: &str,
    p: usize,
    posters: usize,
    messages: usize,
    rate: f64,
    start_us: u64,
    size: usize,
    until: Option<Instant>,
) -> Posted {
    let mut conn = Conn::open(addr).await;
    let mut out = Posted::default();
    let mut k = p;
    while k < messages && until.is_none_or(|u| Instant::now() < u) {
        if rate > 0.0 {
            let at = start_us + (k as f64 * 1e6 / rate) as u64;
            Timer::at(epoch() + Duration::from_micros(at)).await;
        }
        let text = client::message_text(k as u64, size);
        let t = now_us();
        let (status, id) = conn.post(room, &text).await;
        let done = now_us();
        *out.statuses.entry(status).or_insert(0) += 1;
        out.timeline.push((t, done, status));
        match (status, id) {
            (201, Some(id)) => {
                out.accepted.push((id, k as u64));
                out.lat_us.push((done - t).min(u64::from(u32::MAX)) as u32);
            }
            (0, _) => {
                // The connection failed; a fresh one for the next post.
                conn = Conn::open(addr).await;
            }
            _ => {}
        }
        k += posters;
    }
    out
}

/// Opens `n` subscribers on `path` and waits (bounded) until each has its
/// `hello` or failed.
pub(crate) async fn connect_all(
    ex: &LocalExecutor<'_>,
    addr: SocketAddr,
    path: &str,
    n: usize,
    shared: &Rc<Shared>,
) -> Vec<smol::Task<Record>> {
    connect_all_to(ex, addr, path, n, n, shared).await
}

/// [`connect_all`] when `shared` counts subscribers of other instances
/// too: waits until `total` have their `hello` or failed.
pub(crate) async fn connect_all_to(
    ex: &LocalExecutor<'_>,
    addr: SocketAddr,
    path: &str,
    n: usize,
    total: usize,
    shared: &Rc<Shared>,
) -> Vec<smol::Task<Record>> {
    let gate = Rc::new(Semaphore::new(CONNECT_AT_ONCE));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            ex.spawn(subscriber(
                addr,
                path.to_string(),
                shared.clone(),
                gate.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + CONNECT;
    while shared.ready.get() + shared.failed.get() < total && Instant::now() < deadline {
        Timer::after(Duration::from_millis(20)).await;
    }
    tasks
}

/// One fan-out load: S subscribers, M messages from P posters, unpaced
/// (`rate` 0) or paced at `rate` msgs/s overall, of `size` bytes.
pub(crate) struct Load {
    pub(crate) subscribers: usize,
    pub(crate) posters: usize,
    pub(crate) messages: usize,
    pub(crate) rate: f64,
    pub(crate) size: usize,
}

pub(crate) fn run(args: &Args) {
    let load = Load {
        subscribers: args.subscribers.first().copied().unwrap_or(100),
        posters: if args.clients == 0 { 4 } else { args.clients },
        messages: if args.messages == 0 {
            1000
        } else {
            args.messages
        },
        rate: args.rate,
        size: args.size_or(64),
    };
    let server = Server::start(
        args,
        &[
            "--max-connections".into(),
            (load.subscribers + load.posters + 64).to_string(),
        ],
    );
    let json = measure(&server, "bench", &load);
    println!("{json}");
    eprintln!("fanout ({}): {}", server.kind, summary(&json));
    if let Some(e) = json["first_error"].as_str() {
        eprintln!("fanout: first subscriber error: {e}");
    }
}

/// Runs `load` on `room` of a running server (whose connection limit
/// must allow it) and checks every subscriber's record: the figures as
/// the JSON object `fanout` prints. `missread` measures a live room with
/// it while other reads run.
pub(crate) fn measure(server: &Server, room: &str, load: &Load) -> serde_json::Value {
    measure_on(&[server], room, load)
}

/// [`measure`] over several instances of one cluster (`--redis`):
/// subscribers and posters spread round robin over `servers`; CPU and
/// peak RSS are their sums.
pub(crate) fn measure_on(servers: &[&Server], room: &str, load: &Load) -> serde_json::Value {
    let &Load {
        subscribers: subs,
        posters,
        messages,
        rate,
        size,
    } = load;
    let ex = LocalExecutor::new();
    let shared = Rc::new(Shared::default());
    epoch();
    let cpu_all = || servers.iter().map(|s| s.cpu()).sum::<Duration>();
    let outcome = smol::block_on(ex.run(async {
        let mut subscribers = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            // Instance i takes subscribers i, i + n, ...
            let mine = (subs + servers.len() - 1 - i) / servers.len();
            let want = shared.ready.get() + shared.failed.get() + mine;
            subscribers.extend(
                connect_all_to(
                    &ex,
                    s.addr,
                    &format!("/rooms/{room}/events"),
                    mine,
                    want,
                    &shared,
                )
                .await,
            );
        }
        let mut online = 0;
        for s in servers {
            online += s.metric("smolchat_subscribers").await;
        }
        let cpu0 = cpu_all();
        let start_us = now_us() + 1000;
        let posts: Vec<_> = (0..posters)
            .map(|p| {
                let addr = servers[p % servers.len()].addr;
                ex.spawn(poster(
                    addr, room, p, posters, messages, rate, start_us, size, None,
                ))
            })
            .collect();
        let Finished {
            posted,
            posted_us,
            accepted,
            max_id,
            records,
        } = finish(posts, subscribers, &shared).await;
        let cpu = cpu_all().saturating_sub(cpu0);
        (
            online, start_us, posted_us, posted, accepted, max_id, records, cpu,
        )
    }));
    let (online, start_us, posted_us, posted, accepted, max_id, records, cpu) = outcome;

    let mut faults = Faults::default();
    let mut seen = Vec::new();
    let mut lat: Vec<u32> = Vec::new();
    let mut deliveries = 0u64;
    let mut last_us = start_us;
    let mut errors = 0;
    let mut first_error = None;
    for r in &records {
        if r.error.is_some() || r.closed {
            errors += 1;
            if first_error.is_none() {
                first_error = r.error.clone().or(Some("closed by the server".into()));
            }
        }
        faults.check(r, &accepted, max_id, &mut seen, false);
        deliveries += r.ids.len() as u64;
        lat.extend_from_slice(&r.lat_us);
        last_us = last_us.max(r.last_us);
    }
    lat.sort_unstable();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    for p in &posted {
        for (s, n) in &p.statuses {
            *statuses.entry(*s).or_insert(0) += n;
        }
    }
    let refused: u64 = statuses
        .iter()
        .filter(|(s, _)| **s != 201)
        .map(|(_, n)| n)
        .sum();
    let secs = (last_us.saturating_sub(start_us)) as f64 / 1e6;
    let post_secs = (posted_us.saturating_sub(start_us)) as f64 / 1e6;
    serde_json::json!({
        "scenario": "fanout",
        "server": servers[0].kind,
        "subscribers": subs,
        "online": online,
        "posters": posters,
        "messages": messages,
        "rate": rate,
        "size": size,
        "accepted": accepted.len(),
        "refused": refused,
        "subscriber_errors": errors,
        "first_error": first_error,
        "missing": faults.missing,
        "duplicate": faults.duplicate,
        "out_of_order": faults.out_of_order,
        "mismatched": faults.mismatched,
        "deliveries": deliveries,
        "seconds": round(secs, 3),
        "deliveries_per_s": round(deliveries as f64 / secs.max(1e-9), 0),
        "posts_per_s": round(accepted.len() as f64 / post_secs.max(1e-9), 0),
        "p50_ms": round(percentile_ms(&lat, 0.5), 3),
        "p90_ms": round(percentile_ms(&lat, 0.9), 3),
        "p99_ms": round(percentile_ms(&lat, 0.99), 3),
        "max_ms": round(percentile_ms(&lat, 1.0), 3),
        "server_cpu_s": round(cpu.as_secs_f64(), 2),
        "server_cpu_pct": round(100.0 * cpu.as_secs_f64() / secs.max(1e-9), 1),
        "server_cpu_us_per_delivery": round(cpu.as_secs_f64() * 1e6 / (deliveries.max(1)) as f64, 2),
        "instances": servers.len(),
        "server_peak_rss_kb": servers.iter().map(|s| s.status_kb("VmHWM")).sum::<u64>(),
        "server_threads": servers.iter().map(|s| s.status_kb("Threads")).sum::<u64>(),
    })
}

/// The one-line human summary of a [`measure`] result.
pub(crate) fn summary(j: &serde_json::Value) -> String {
    let n = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    let rate = n("rate");
    format!(
        "{} subscribers ({} online), {} of {} posts accepted from {} posters{}: \
         {} deliveries in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}; \
         missing {}, duplicate {}, out of order {}, mismatched {}, subscriber errors {}; \
         server CPU {:.2} s, peak RSS {} kB",
        n("subscribers"),
        n("online"),
        n("accepted"),
        n("messages"),
        n("posters"),
        if rate > 0.0 {
            format!(" at {rate} msgs/s")
        } else {
            " unpaced".into()
        },
        n("deliveries"),
        n("seconds"),
        n("deliveries_per_s"),
        n("p50_ms"),
        n("p90_ms"),
        n("p99_ms"),
        n("max_ms"),
        n("missing"),
        n("duplicate"),
        n("out_of_order"),
        n("mismatched"),
        n("subscriber_errors"),
        n("server_cpu_s"),
        n("server_peak_rss_kb"),
    )
}

/// `x` rounded to `digits` decimals, for tidy JSON.
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}
