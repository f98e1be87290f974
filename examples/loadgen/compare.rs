//! `compare`: reads the JSON lines of `scripts/bench.sh --compare` on
//! stdin (each tagged with its `load`, and with the `server` that ran it:
//! smolchat or the axum + tokio peer of `benches/peer`) and prints one
//! markdown table: for each load and figure, the median over the runs of
//! each server and the ratio smolchat / peer, with which side it favours.
//!
//! The two servers ran the same loads interleaved in the same minutes, so
//! the ratio is the figure to read on a noisy machine; the absolute
//! figures move with whatever else the machine is doing. Loss counts show
//! the median and the worst run, and no ratio: any loss is a finding.

use std::io::BufRead;

use serde_json::Value;

use crate::report::{fmt, get, median};

/// Whether a larger figure is better (rates) or a smaller one (CPU time,
/// latency, memory).
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// How a figure is shown.
#[derive(Clone, Copy)]
enum Kind {
    /// Medians and their ratio.
    Ratio(Better),
    /// Median and worst run of a count where 0 is the only good value.
    Loss,
    /// In how many runs a yes/no figure was yes.
    Runs,
}

/// One figure of a load: its name, JSON path, scale and kind.
struct Figure {
    name: &'static str,
    path: &'static str,
    scale: f64,
    kind: Kind,
}

const fn fig(name: &'static str, path: &'static str, kind: Kind) -> Figure {
    Figure {
        name,
        path,
        scale: 1.0,
        kind,
    }
}

/// The figures shown for a run of `scenario` (paced or not).
fn figures(run: &Value) -> Vec<Figure> {
    use Better::*;
    use Kind::*;
    match run["scenario"].as_str().unwrap_or("") {
        "post" => vec![
            fig("posts/s", "requests_per_s", Ratio(Higher)),
            fig(
                "server CPU µs per post",
                "server_cpu_us_per_request",
                Ratio(Lower),
            ),
            fig("latency p99 ms", "p99_ms", Ratio(Lower)),
        ],
        "fanout" if get(run, "rate") > 0.0 => vec![
            fig("latency p99 ms", "p99_ms", Ratio(Lower)),
            fig("latency p50 ms", "p50_ms", Ratio(Lower)),
            fig(
                "server CPU µs per delivery",
                "server_cpu_us_per_delivery",
                Ratio(Lower),
            ),
            fig("missing deliveries", "missing", Loss),
        ],
        "fanout" => vec![
            fig("deliveries/s", "deliveries_per_s", Ratio(Higher)),
            fig(
                "server CPU µs per delivery",
                "server_cpu_us_per_delivery",
                Ratio(Lower),
            ),
            fig("latency p99 ms", "p99_ms", Ratio(Lower)),
            fig("missing deliveries", "missing", Loss),
        ],
        "idle" => vec![Figure {
            name: "server RSS per stream, KiB",
            path: "levels.0.bytes_per_stream",
            scale: 1.0 / 1024.0,
            kind: Ratio(Lower),
        }],
        "slow" => vec![
            fig("posting time, s", "posting_s", Ratio(Lower)),
            fig("posts answered 503", "refused_503", Loss),
            fig("readers' missing deliveries", "missing", Loss),
            fig(
                "stalled stream: messages skipped before its end",
                "stalled_faults",
                Loss,
            ),
            fig("stalled stream cut (runs)", "stalled_disconnected", Runs),
        ],
        _ => Vec::new(),
    }
}

pub(crate) fn run() {
    // Loads in the order they first appear: the order bench.sh ran them.
    let mut loads: Vec<(String, Vec<Value>)> = Vec::new();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(load) = v["load"].as_str().map(str::to_string) else {
            continue;
        };
        match loads.iter_mut().find(|(l, _)| *l == load) {
            Some((_, runs)) => runs.push(v),
            None => loads.push((load, vec![v])),
        }
    }
    println!("| load | figure | smolchat | axum + tokio | smolchat / peer |");
    println!("| --- | --- | --- | --- | --- |");
    for (load, runs) in &loads {
        let of = |server: &str| -> Vec<&Value> {
            runs.iter()
                .filter(|r| r["server"].as_str() == Some(server))
                .collect()
        };
        let (ours, peer) = (of("smolchat"), of("peer"));
        let name = format!("{load} ({} + {} runs)", ours.len(), peer.len());
        for f in figures(&runs[0]) {
            let values = |runs: &[&Value]| -> Vec<f64> {
                runs.iter()
                    .map(|r| get(r, f.path) * f.scale)
                    .filter(|v| !v.is_nan())
                    .collect()
            };
            let (a, b) = (values(&ours), values(&peer));
            let (shown_a, shown_b, ratio) = match f.kind {
                Kind::Ratio(better) => {
                    let (ma, mb) = (median(a), median(b));
                    (fmt(ma), fmt(mb), ratio(ma, mb, better))
                }
                Kind::Loss => (loss(&a), loss(&b), "—".to_string()),
                Kind::Runs => (yes_runs(&a), yes_runs(&b), "—".to_string()),
            };
            println!("| {name} | {} | {shown_a} | {shown_b} | {ratio} |", f.name);
        }
    }
}

/// `a / b`, and which side it favours (within 2 % is even).
fn ratio(a: f64, b: f64, better: Better) -> String {
    if !(a.is_finite() && b.is_finite()) || b == 0.0 {
        return "—".into();
    }
    let r = a / b;
    let ahead = match better {
        _ if (r - 1.0).abs() < 0.02 => "even",
        Better::Higher if r > 1.0 => "smolchat ahead",
        Better::Lower if r < 1.0 => "smolchat ahead",
        _ => "peer ahead",
    };
    format!("{r:.2}× ({ahead})")
}

/// A loss count: the median and the worst run.
fn loss(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let worst = v.iter().copied().fold(0.0, f64::max);
    format!("{} (worst {})", fmt(median(v.to_vec())), fmt(worst))
}

/// In how many runs a yes/no figure was yes.
fn yes_runs(v: &[f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let yes = v.iter().filter(|&&x| x == 1.0).count();
    format!("{yes} of {}", v.len())
}
