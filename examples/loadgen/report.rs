//! `report`: reads the JSON lines of many runs on stdin, groups runs of the
//! same scenario and parameters, and prints a markdown table of medians
//! (loss counts: the worst run) against the targets of issue 7, and for
//! `fill` and `missread` those of the memory budget (docs/performance.md,
//! "Memory budget").

use std::collections::BTreeMap;
use std::io::BufRead;

use serde_json::Value;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn get(run: &Value, path: &str) -> f64 {
    let mut v = run;
    for key in path.split('.') {
        v = match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        };
    }
    match v {
        Value::Bool(b) => f64::from(u8::from(*b)),
        v => v.as_f64().unwrap_or(f64::NAN),
    }
}

fn label(run: &Value) -> String {
    let s = run["scenario"].as_str().unwrap_or("?");
    match s {
        "fanout" => {
            let rate = get(run, "rate");
            format!(
                "fanout {} subscribers, {}",
                get(run, "subscribers"),
                if rate > 0.0 {
                    format!("{rate} msgs/s")
                } else {
                    "unpaced".into()
                }
            )
        }
        "post" => {
            let db = run["db"].as_str().unwrap_or("?");
            if db == ":memory:" {
                format!("post :memory:, {} clients", get(run, "clients"))
            } else {
                format!(
                    "post file --sync {}, {} clients",
                    run["sync"].as_str().unwrap_or("?"),
                    get(run, "clients")
                )
            }
        }
        "fill" => format!(
            "fill {}, {} rooms × {} × {} B",
            if run["db"].as_str() == Some("file") {
                "SQLite (default store)"
            } else {
                ":memory:"
            },
            fmt(get(run, "rooms")),
            fmt(get(run, "messages_per_room")),
            fmt(get(run, "size"))
        ),
        "missread" => format!(
            "missread, {} × {} B on disk",
            fmt(get(run, "messages")),
            fmt(get(run, "size"))
        ),
        other => other.to_string(),
    }
}

pub(crate) fn fmt(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else if x.abs() >= 1000.0 {
        let s = format!("{:.0}", x);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// A target: `at_least` or not, and the bound.
enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
    Zero,
}

fn verdict(value: f64, t: &Target) -> (String, String) {
    match t {
        Target::None => ("—".into(), "—".into()),
        Target::Zero => (
            "0".into(),
            if value == 0.0 {
                "met".into()
            } else {
                format!("not met: {}", fmt(value))
            },
        ),
        Target::AtLeast(b) => (
            format!("≥ {}", fmt(*b)),
            if value >= *b {
                "met".into()
            } else {
                format!("not met: {:.0}% short", 100.0 * (b - value) / b)
            },
        ),
        Target::AtMost(b) => (
            format!("≤ {}", fmt(*b)),
            if value <= *b {
                "met".into()
            } else {
                format!("not met: {:.0}% over", 100.0 * (value - b) / b)
            },
        ),
    }
}

pub(crate) fn run() {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if v.get("scenario").is_some() {
            groups.entry(label(&v)).or_default().push(v);
        }
    }
    // Durable posts are compared with in-memory ones from as many clients.
    let mem_post = |clients: f64| {
        groups
            .get(&format!("post :memory:, {clients} clients"))
            .map(|runs| median(runs.iter().map(|r| get(r, "requests_per_s")).collect()))
    };
    println!("| scenario | figure | result | target | met or distance |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, runs) in &groups {
        let n = runs.len();
        let med = |path: &str| median(runs.iter().map(|r| get(r, path)).collect());
        let worst = |path: &str| {
            runs.iter()
                .map(|r| get(r, path))
                .fold(0.0f64, |a, b| if b.is_nan() { a } else { a.max(b) })
        };
        let row = |figure: &str, value: f64, shown: String, target: Target| {
            let (t, v) = verdict(value, &target);
            println!("| {name} | {figure} | {shown} | {t} | {v} |");
        };
        // Delivery faults of the worst run; any fault (or subscriber
        // error) fails the zero target.
        let loss_row = |figure: &str| {
            let loss = worst("missing")
                + worst("duplicate")
                + worst("out_of_order")
                + worst("mismatched")
                + worst("subscriber_errors");
            let shown = format!(
                "{} / {} / {} / {}",
                fmt(worst("missing")),
                fmt(worst("duplicate")),
                fmt(worst("out_of_order")),
                fmt(worst("mismatched"))
            );
            row(figure, loss, shown, Target::Zero);
        };
        let runs_note = if n > 1 {
            format!(" (median of {n})")
        } else {
            String::new()
        };
        match runs[0]["scenario"].as_str().unwrap_or("") {
            "fanout" => {
                let subs = get(&runs[0], "subscribers");
                let rate = get(&runs[0], "rate");
                loss_row("missing / duplicate / out of order / mismatched (worst run)");
                let d = med("deliveries_per_s");
                let target = if subs == 1000.0 && rate == 0.0 {
                    Target::AtLeast(250_000.0)
                } else {
                    Target::None
                };
                row("deliveries/s", d, format!("{}{runs_note}", fmt(d)), target);
                let p99 = med("p99_ms");
                let target = if subs == 1000.0 && rate == 50.0 {
                    Target::AtMost(20.0)
                } else {
                    Target::None
                };
                row(
                    "latency p50 / p90 / p99 / max (ms); target on p99",
                    p99,
                    format!(
                        "{} / {} / {} / {}",
                        fmt(med("p50_ms")),
                        fmt(med("p90_ms")),
                        fmt(p99),
                        fmt(med("max_ms"))
                    ),
                    target,
                );
                row(
                    "server CPU s, per delivery µs / peak RSS kB",
                    0.0,
                    format!(
                        "{}, {} / {}",
                        fmt(med("server_cpu_s")),
                        fmt(med("server_cpu_us_per_delivery")),
                        fmt(med("server_peak_rss_kb"))
                    ),
                    Target::None,
                );
            }
            "idle" => {
                let base = med("baseline_rss_kb");
                row(
                    "server RSS with no connection (KiB)",
                    base,
                    format!("{}{runs_note}", fmt(base)),
                    Target::AtMost(4096.0),
                );
                let levels = runs[0]["levels"].as_array().map_or(0, Vec::len);
                for i in 0..levels {
                    let subs = get(&runs[0], &format!("levels.{i}.subscribers"));
                    let b = med(&format!("levels.{i}.bytes_per_stream"));
                    let target = if subs >= 10000.0 {
                        Target::AtMost(8192.0)
                    } else {
                        Target::None
                    };
                    row(
                        &format!("RSS per idle stream at {} streams (bytes)", fmt(subs)),
                        b,
                        fmt(b),
                        target,
                    );
                }
                let cpu = med("idle_cpu_ms");
                row(
                    &format!(
                        "server CPU over {} s, {} idle streams, --keepalive 15 (ms)",
                        fmt(get(&runs[0], "idle_seconds")),
                        fmt(get(&runs[0], "idle_subscribers"))
                    ),
                    cpu,
                    format!("{} ({} wake-ups)", fmt(cpu), fmt(med("idle_wakeups"))),
                    Target::Zero,
                );
            }
            "post" => {
                let rps = med("requests_per_s");
                let file = runs[0]["db"].as_str() != Some(":memory:");
                let target = match (file, mem_post(get(&runs[0], "clients"))) {
                    (false, _) => Target::AtLeast(25_000.0),
                    (true, Some(m)) => Target::AtLeast(m / 2.0),
                    _ => Target::None,
                };
                row(
                    if file {
                        "requests/s (target: half of :memory: with as many clients)"
                    } else {
                        "requests/s"
                    },
                    rps,
                    format!(
                        "{}{runs_note}; p50 {} ms, p99 {} ms; CPU per request: server {} µs, loadgen {} µs",
                        fmt(rps),
                        fmt(med("p50_ms")),
                        fmt(med("p99_ms")),
                        fmt(med("server_cpu_us_per_request")),
                        fmt(med("loadgen_cpu_us_per_request"))
                    ),
                    target,
                );
                if file {
                    let c = med("commits_per_message");
                    row(
                        "commits per message",
                        c,
                        format!("{c:.3}"),
                        Target::AtMost(0.2),
                    );
                }
            }
            "slow" => {
                loss_row("readers: missing / duplicate / out of order / mismatched (worst run)");
                let got503 = runs
                    .iter()
                    .map(|r| get(r, "refused_503"))
                    .fold(f64::MAX, f64::min);
                row(
                    "posts stall, then 503 (fewest 503s in a run; wait before 503 ms)",
                    got503,
                    format!("{} ({} ms)", fmt(got503), fmt(med("wait_503_p50_ms"))),
                    Target::AtLeast(1.0),
                );
                let cut = runs
                    .iter()
                    .map(|r| {
                        get(r, "stalled_disconnected")
                            * f64::from(u8::from(get(r, "evicted") == 1.0))
                    })
                    .fold(1.0, f64::min);
                row(
                    "stalled stream cut and counted (every run)",
                    cut,
                    if cut == 1.0 {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    Target::AtLeast(1.0),
                );
                let after = runs
                    .iter()
                    .map(|r| get(r, "accepted_after_stall"))
                    .fold(f64::MAX, f64::min);
                row(
                    "posts accepted after the cut (fewest in a run)",
                    after,
                    fmt(after),
                    Target::AtLeast(1.0),
                );
                let consecutive = runs
                    .iter()
                    .map(|r| get(r, "ids_consecutive"))
                    .fold(1.0, f64::min);
                row(
                    "accepted ids consecutive (every run)",
                    consecutive,
                    if consecutive == 1.0 {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    Target::AtLeast(1.0),
                );
                let growth = worst("rss_growth_kb");
                row(
                    "server RSS growth during the stall (KiB, worst run)",
                    growth,
                    fmt(growth),
                    Target::None,
                );
            }
            "fill" => fill_rows(runs, &row, &runs_note),
            "missread" => missread_rows(runs, &row, &runs_note),
            "tls" => tls_rows(runs, &row, &runs_note),
            _ => {}
        }
    }
}

/// The rows of `tls`: connections/s and server CPU per connection, plain
/// and over TLS (full and resumed handshakes, per key type), and server CPU
/// per keep-alive post, each TLS figure as a ratio to plain in the same run.
fn tls_rows(runs: &[Value], row: &dyn Fn(&str, f64, String, Target), runs_note: &str) {
    let med = |p: &str| med_of(runs, p);
    let conn_us = med("plain.connections.server_cpu_us_per_connection");
    let post_us = med("plain.posts.server_cpu_us_per_post");
    row(
        "plain HTTP: connections/s (one GET each); server CPU µs per connection",
        conn_us,
        format!(
            "{}{runs_note}; {} µs",
            fmt(med("plain.connections.per_s")),
            fmt(conn_us)
        ),
        Target::None,
    );
    row(
        "plain HTTP: keep-alive posts/s; server CPU µs per post",
        post_us,
        format!("{}; {} µs", fmt(med("plain.posts.per_s")), fmt(post_us)),
        Target::None,
    );
    let keys: Vec<&str> = runs
        .first()
        .and_then(|r| r["tls"].as_array())
        .map(|keys| {
            keys.iter()
                .map(|k| k["key"].as_str().unwrap_or("?"))
                .collect()
        })
        .unwrap_or_default();
    for (i, key) in keys.into_iter().enumerate() {
        for (what, path) in [
            ("full handshakes", "full"),
            ("resumed handshakes", "resumed"),
        ] {
            let us = med(&format!("tls.{i}.{path}.server_cpu_us_per_connection"));
            row(
                &format!("HTTPS {key}, {what}: per s; server CPU µs per connection (× plain)"),
                us,
                format!(
                    "{}; {} µs (× {:.1})",
                    fmt(med(&format!("tls.{i}.{path}.per_s"))),
                    fmt(us),
                    us / conn_us
                ),
                Target::None,
            );
        }
        let us = med(&format!("tls.{i}.posts.server_cpu_us_per_post"));
        row(
            &format!("HTTPS {key}, keep-alive posts/s; server CPU µs per post (× plain)"),
            us,
            format!(
                "{}; {} µs (× {:.2})",
                fmt(med(&format!("tls.{i}.posts.per_s"))),
                fmt(us),
                us / post_us
            ),
            Target::None,
        );
    }
}

/// The median of `path` over `runs`.
fn med_of(runs: &[Value], path: &str) -> f64 {
    median(runs.iter().map(|r| get(r, path)).collect())
}

/// The largest `path` over `runs`.
fn worst_of(runs: &[Value], path: &str) -> f64 {
    runs.iter()
        .map(|r| get(r, path))
        .fold(0.0f64, |a, b| if b.is_nan() { a } else { a.max(b) })
}

/// The rows of `fill`: posts/s, RSS against the limit, the budget, RSS per
/// text byte, and the read-back check.
fn fill_rows(runs: &[Value], row: &dyn Fn(&str, f64, String, Target), runs_note: &str) {
    let med = |p: &str| med_of(runs, p);
    let mib = |kb: f64| kb / 1024.0;
    let rps = med("posts_per_s");
    row(
        "posts/s during the fill",
        rps,
        format!(
            "{}{runs_note}; p50 {} ms, p99 {} ms; {} clients, {} s",
            fmt(rps),
            fmt(med("p50_ms")),
            fmt(med("p99_ms")),
            fmt(med("clients")),
            fmt(med("fill_seconds"))
        ),
        Target::None,
    );
    let peak = mib(worst_of(runs, "peak_rss_kb"));
    row(
        "peak RSS (VmHWM, MiB; worst run), target --memory-limit + 16 MiB",
        peak,
        format!(
            "{} (RSS at start {}, after the fill {}, peak during the read-back {})",
            fmt(peak),
            fmt(mib(med("start_rss_kb"))),
            fmt(mib(med("after_rss_kb"))),
            fmt(mib(med("check_sampled_peak_rss_kb")))
        ),
        Target::AtMost(mib(med("rss_bound_kb"))),
    );
    let limit = med("limit_bytes");
    let bytes = med("peak_memory_bytes");
    row(
        "peak smolchat_memory_bytes (MiB) of --memory-limit; messages held after",
        bytes,
        format!(
            "{} of {} ({:.1}%); {}",
            fmt(bytes / 1048576.0),
            fmt(limit / 1048576.0),
            100.0 * bytes / limit,
            fmt(med("after_memory_messages"))
        ),
        Target::None,
    );
    let per = med("rss_per_text_byte");
    // Only a full budget says what a message costs in RSS; a small fill
    // is mostly the fixed costs.
    let full = bytes >= 0.9 * limit;
    row(
        "RSS per byte of message text, budget full: (RSS after − at start) / (messages held × size)",
        per,
        if full {
            format!("{per:.3}")
        } else {
            format!("{per:.3} (budget not full: not comparable)")
        },
        if full {
            Target::AtMost(1.25)
        } else {
            Target::None
        },
    );
    let bad =
        worst_of(runs, "mismatched") + worst_of(runs, "refused") + worst_of(runs, "post_errors");
    let complete = runs[0]["db"].as_str() == Some("file");
    row(
        if complete {
            "read back, every room: ids 1..=M with their texts; mismatched / refused posts (worst run)"
        } else {
            "read back, every room: consecutive, ending at M, right texts; mismatched / refused posts (worst run)"
        },
        bad,
        format!(
            "{} / {}; {} messages returned in {} s",
            fmt(worst_of(runs, "mismatched")),
            fmt(worst_of(runs, "refused")),
            fmt(med("returned")),
            fmt(med("check_seconds"))
        ),
        Target::Zero,
    );
}

/// The rows of `missread`: what a resume from the file costs, and the
/// paced fan-out's p99 alone and next to a loop of them.
fn missread_rows(runs: &[Value], row: &dyn Fn(&str, f64, String, Target), runs_note: &str) {
    let med = |p: &str| med_of(runs, p);
    for (how, pre) in [
        ("browser-like client", ""),
        ("client ACKing at once", "quickack_"),
    ] {
        let p50 = med(&format!("{pre}resume_p50_ms"));
        row(
            &format!(
                "resume from id 0 ({how}): wall ms first / median / max; server CPU ms per resume"
            ),
            p50,
            format!(
                "{} / {} / {}{runs_note}; CPU {}",
                fmt(med(&format!("{pre}resume_first_ms"))),
                fmt(p50),
                fmt(med(&format!("{pre}resume_max_ms"))),
                fmt(med(&format!("{pre}server_cpu_ms_per_resume")))
            ),
            Target::None,
        );
    }
    let alone = med("p99_alone_ms");
    let shape = format!(
        "{} subscribers × {} msgs/s",
        fmt(med("alone.subscribers")),
        fmt(med("alone.rate"))
    );
    for (what, key, ratio, count) in [
        ("alone", "alone", None, None),
        (
            "next to a resume loop, browser-like",
            "loaded",
            Some("p99_ratio"),
            Some("loop_resumes"),
        ),
        (
            "next to a resume loop, ACKing at once",
            "loaded_quickack",
            Some("p99_ratio_quickack"),
            Some("quickack_loop_resumes"),
        ),
    ] {
        let p99 = med(&format!("{key}.p99_ms"));
        let mut shown = format!(
            "{} / {} / {} / {}",
            fmt(med(&format!("{key}.p50_ms"))),
            fmt(med(&format!("{key}.p90_ms"))),
            fmt(p99),
            fmt(med(&format!("{key}.max_ms")))
        );
        if let (Some(r), Some(n)) = (ratio, count) {
            shown += &format!(
                "; p99 ×{:.2} of alone ({} ms); {} resumes during it",
                med(r),
                fmt(alone),
                fmt(med(n))
            );
        }
        row(
            &format!("paced fan-out, {shape}, {what}: latency p50 / p90 / p99 / max (ms)"),
            p99,
            shown,
            Target::AtMost(20.0),
        );
        let loss = [
            "missing",
            "duplicate",
            "out_of_order",
            "mismatched",
            "subscriber_errors",
        ]
        .iter()
        .map(|f| worst_of(runs, &format!("{key}.{f}")))
        .sum();
        row(
            &format!(
                "paced fan-out {what}: missing / duplicate / out of order / mismatched (worst run)"
            ),
            loss,
            format!(
                "{} / {} / {} / {}",
                fmt(worst_of(runs, &format!("{key}.missing"))),
                fmt(worst_of(runs, &format!("{key}.duplicate"))),
                fmt(worst_of(runs, &format!("{key}.out_of_order"))),
                fmt(worst_of(runs, &format!("{key}.mismatched")))
            ),
            Target::Zero,
        );
    }
    row(
        "resume errors (all runs)",
        runs.iter().map(|r| get(r, "resume_errors")).sum(),
        fmt(runs.iter().map(|r| get(r, "resume_errors")).sum()),
        Target::Zero,
    );
}
