//! `slow`: one subscriber stops reading while the others read.
//!
//! The stalled subscriber reads its response head, then nothing (its
//! receive buffer is shrunk so it fills soon). Posters post unpaced for
//! `--seconds` (default 8), or, with `--messages M`, until M posts are
//! answered: then `posting_s` is how long the room took to take them,
//! the figure `scripts/bench.sh --compare` sets against the peer's. What
//! the SPEC promises, checked here:
//!
//! - the other subscribers get every accepted message once, in order;
//! - once the stalled socket is full the room queue fills, posts wait, and
//!   after `--publish-timeout` they get `503` (neither stored nor sent, so
//!   accepted ids stay consecutive);
//! - after `--slow-timeout` without progress the stalled stream is cut
//!   (`smolchat_subscribers_evicted_total`), and posting resumes;
//! - the stalled subscriber got a gap-free prefix, then the end of stream;
//! - server RSS stays bounded (sampled every 100 ms).
//!
//! The scenario passes `--publish-timeout 1s --slow-timeout 3s` unless
//! given others after `--`, so it takes seconds rather than the defaults'
//! tens of seconds.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use smol::{LocalExecutor, Timer};

use crate::client::{now_us, Event, Sse};
use crate::fanout::{connect_all, finish, poster, round, Finished, Shared};
use crate::server::Server;
use crate::stats::{percentile_ms, Faults, Record};
use crate::Args;

pub(crate) fn run(args: &Args) {
    let readers = args.subscribers.first().copied().unwrap_or(50);
    let posters = if args.clients == 0 { 4 } else { args.clients };
    let seconds = if args.seconds > 0.0 {
        args.seconds
    } else {
        8.0
    };
    let server = Server::start(
        args,
        &[
            "--max-connections".into(),
            (readers + posters + 64).to_string(),
            "--publish-timeout".into(),
            "1s".into(),
            "--slow-timeout".into(),
            "3s".into(),
        ],
    );
    let addr = server.addr;
    let path = "/rooms/slow/events";
    let ex = LocalExecutor::new();
    let shared = Rc::new(Shared::default());
    let out = smol::block_on(ex.run(async {
        Timer::after(Duration::from_millis(300)).await;
        let base_kb = server.status_kb("VmRSS");
        let subscribers = connect_all(&ex, addr, path, readers, &shared).await;
        let mut stalled = Sse::open(addr, path, Some(4096), 4096)
            .await
            .expect("the stalled subscriber connects");
        // RSS sampler, stopped by the flag.
        let sampling = Rc::new(Cell::new(true));
        let peak = Rc::new(Cell::new(0u64));
        let sampler = {
            let (sampling, peak, pid) = (sampling.clone(), peak.clone(), server.pid());
            ex.spawn(async move {
                while sampling.get() {
                    let s =
                        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    let kb = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
                        .unwrap_or(0);
                    peak.set(peak.get().max(kb));
                    Timer::after(Duration::from_millis(100)).await;
                }
            })
        };
        let start_us = now_us();
        // A count of posts, or a time.
        let (messages, until) = match args.messages {
            0 => (
                usize::MAX,
                Some(Instant::now() + Duration::from_secs_f64(seconds)),
            ),
            m => (m, None),
        };
        let posts: Vec<_> = (0..posters)
            .map(|p| {
                ex.spawn(poster(
                    addr,
                    "slow",
                    p,
                    posters,
                    messages,
                    0.0,
                    start_us,
                    args.size_or(64),
                    until,
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
        // The stalled one: read what the kernel held for it, then expect
        // the end of the stream (or a reset) within a few seconds.
        let mut stalled_rec = Record::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let ended = loop {
            let got = async { Some(stalled.read().await) }
                .or(async {
                    Timer::at(deadline).await;
                    None
                })
                .await;
            stalled.events(|ev| {
                if let Event::Message { id, k, .. } = ev {
                    stalled_rec.ids.push(id as u32);
                    stalled_rec.ks.push(k.map_or(u32::MAX, |k| k as u32));
                }
            });
            match got {
                Some(Ok(true)) => {}
                Some(Ok(false)) | Some(Err(_)) => break true,
                None => break false,
            }
        };
        let evicted = server.metric("smolchat_subscribers_evicted_total").await;
        sampling.set(false);
        sampler.await;
        (
            base_kb,
            peak.get(),
            posted,
            accepted,
            max_id,
            records,
            stalled_rec,
            ended,
            evicted,
            start_us,
            posted_us,
        )
    }));
    let (
        base_kb,
        peak_kb,
        posted,
        accepted,
        max_id,
        records,
        stalled_rec,
        ended,
        evicted,
        start_us,
        posted_us,
    ) = out;

    let mut faults = Faults::default();
    let mut seen = Vec::new();
    let mut errors = 0;
    for r in &records {
        if r.error.is_some() || r.closed {
            errors += 1;
        }
        faults.check(r, &accepted, max_id, &mut seen, false);
    }
    let mut stalled_faults = Faults::default();
    stalled_faults.check(&stalled_rec, &accepted, max_id, &mut seen, true);
    let consecutive = accepted.len() as u64 == max_id;

    let mut timeline: Vec<(u64, u64, u16)> = posted
        .iter()
        .flat_map(|p| p.timeline.iter().copied())
        .collect();
    timeline.sort_unstable();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    for &(_, _, s) in &timeline {
        *statuses.entry(s).or_insert(0) += 1;
    }
    let refused_503 = statuses.get(&503).copied().unwrap_or(0);
    let mut wait_503: Vec<u32> = timeline
        .iter()
        .filter(|t| t.2 == 503)
        .map(|t| (t.1 - t.0) as u32)
        .collect();
    wait_503.sort_unstable();
    let first_503 = timeline.iter().find(|t| t.2 == 503).map(|t| t.1);
    let last_503 = timeline.iter().rev().find(|t| t.2 == 503).map(|t| t.1);
    let accepted_after = last_503.map_or(0, |l| {
        timeline.iter().filter(|t| t.2 == 201 && t.0 > l).count()
    });
    let rel = |t: Option<u64>| t.map(|t| round((t - start_us) as f64 / 1e6, 3));
    let bounded_kb = peak_kb.saturating_sub(base_kb);
    let json = serde_json::json!({
        "scenario": "slow",
        "server": server.kind,
        "subscribers": readers,
        "posters": posters,
        "seconds": if args.messages == 0 { Some(seconds) } else { None },
        "messages": args.messages,
        "posting_s": round(posted_us.saturating_sub(start_us) as f64 / 1e6, 3),
        "accepted": accepted.len(),
        "ids_consecutive": consecutive,
        "refused_503": refused_503,
        "statuses": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<HashMap<_, _>>(),
        "first_503_s": rel(first_503),
        "last_503_s": rel(last_503),
        "wait_503_p50_ms": round(percentile_ms(&wait_503, 0.5), 1),
        "accepted_after_stall": accepted_after,
        "missing": faults.missing,
        "duplicate": faults.duplicate,
        "out_of_order": faults.out_of_order,
        "mismatched": faults.mismatched,
        "subscriber_errors": errors,
        "stalled_received": stalled_rec.ids.len(),
        "stalled_faults": stalled_faults.total(),
        "stalled_disconnected": ended,
        "evicted": evicted,
        "baseline_rss_kb": base_kb,
        "peak_rss_kb": peak_kb,
        "rss_growth_kb": bounded_kb,
        "server_peak_rss_kb": server.status_kb("VmHWM"),
    });
    println!("{json}");
    eprintln!(
        "slow ({}): {readers} readers + 1 stalled, {posters} posters, posting took {:.2} s: {} accepted (ids consecutive: {consecutive}), \
         {refused_503} got 503 (first at {:?} s, waited {:.0} ms), {accepted_after} accepted after the stall; \
         readers: missing {}, duplicate {}, out of order {}, mismatched {}, errors {errors}; \
         stalled: got {} in order ({} faults), disconnected {ended}, evicted metric {evicted}; \
         RSS {base_kb} kB -> peak {peak_kb} kB",
        server.kind,
        posted_us.saturating_sub(start_us) as f64 / 1e6,
        accepted.len(),
        rel(first_503),
        percentile_ms(&wait_503, 0.5),
        faults.missing,
        faults.duplicate,
        faults.out_of_order,
        faults.mismatched,
        stalled_rec.ids.len(),
        stalled_faults.total(),
    );
}
