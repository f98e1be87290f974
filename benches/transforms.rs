//! What the transform pipeline costs per message: `cargo bench --bench transforms`.
//!
//! A plain binary instead of criterion, which would pull dozens of crates
//! into every dev build for a handful of numbers. Each case runs in batches
//! of about 20 ms, and the median batch is reported as nanoseconds per
//! message, with the message size, for the default pipeline
//! (`censor,emoji,code`), for all four transforms, and for the ordinary
//! message through each transform alone.
//!
//! The pathological cases check that cost stays linear and small: a 4 KiB
//! message of colons, backticks, emoticons or single letters must cost no
//! more than an ordinary 4 KiB message (prose, inline code, a fenced block)
//! through the same pipeline. The `× 4 KiB` column is that ratio, and the
//! last line names the worst; above 1 is a regression. Under
//! `cargo test --benches` each case runs once, as a smoke test. A word after
//! `--` runs only the cases whose name and pipeline hold it:
//! `cargo bench --bench transforms -- colons`.
//!
//! Wall time on a shared VM wobbles by half; instruction counts do not. To
//! count them, run a case under callgrind with `--calls 1` and `--calls 101`
//! (a smoke run that applies the pipeline that many times) and divide the
//! difference by 100, which leaves out the set-up both runs share:
//!
//! ```text
//! B=$(ls target/release/deps/transforms-* | grep -v '\.d$')
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B --calls 101 "colons, default"
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use smolchat::transform::{parse_names, Draft, Pipeline, TransformConfig};

/// About 100 bytes of ordinary chat: a mention, a typo, an emoticon, inline
/// code, a listed word and a shortcode.
const LINE: &str = "@ana teh pi build is done :) run `cargo test` again, the shit flaky one passed :fire: see you 10:30";

/// The name of the ordinary 4 KiB message cases, which the pathological
/// ones are compared with.
const NORMAL: &str = "4 KiB message";

/// A paragraph of a longer message, with a fenced block.
const PARAGRAPH: &str = "Here is what I found while looking at the slow subscriber issue: \
the room fills up when one browser tab stops reading, so every POST waits :( \
The fix is in `room.rs`, see below. Thanks for the help <3\n\
```rust\nlet sent = room.publish(msg).await?;\n```\n";

/// Which pipeline a case runs through; the pathological inputs run
/// through both, and each is compared with the ordinary 4 KiB message run
/// through the same one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Through {
    Default,
    AllFour,
    Only(&'static str),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    // `--calls N` runs each case N times in a smoke run, for counting
    // instructions under callgrind (see the module docs).
    let calls: u32 = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |n| n.parse().expect("--calls N"));
    // `cargo bench --bench transforms -- colons` runs the cases matching "colons".
    let filter = args
        .iter()
        .enumerate()
        .find(|&(i, a)| !a.starts_with("--") && (i == 0 || args[i - 1] != "--calls"))
        .map(|(_, a)| a.clone())
        .unwrap_or_default();
    let pipeline = |names: &str| {
        Pipeline::from_config(&TransformConfig {
            names: parse_names(names).expect("names"),
            ..Default::default()
        })
        .expect("pipeline")
    };
    let default = Pipeline::from_config(&TransformConfig::default()).expect("default config");
    let all = pipeline("censor,autocorrect,emoji,code");
    let through = |t: Through| match t {
        Through::Default => default.clone(),
        Through::AllFour => all.clone(),
        Through::Only(name) => pipeline(name),
    };
    let label = |t: Through| match t {
        Through::Default => "default",
        Through::AllFour => "all four",
        Through::Only(name) => name,
    };

    let message_4k = fill(PARAGRAPH, 4096);
    let mut cases: Vec<(String, Through, String)> = vec![
        ("chat line".into(), Through::Default, LINE.into()),
        ("chat line".into(), Through::AllFour, LINE.into()),
    ];
    for t in [
        Through::Default,
        Through::AllFour,
        Through::Only("censor"),
        Through::Only("autocorrect"),
        Through::Only("emoji"),
        Through::Only("code"),
    ] {
        cases.push((NORMAL.into(), t, message_4k.clone()));
    }
    // 4 KiB each, or just under.
    let pathological = [
        ("4096 colons", ":".repeat(4096)),
        ("4096 backticks", "`".repeat(4096)),
        ("1365 `x` spans", "`x`".repeat(1365)),
        ("runs of 1..90 backticks", ragged_backticks(4096)),
        ("2048 ': '", ": ".repeat(2048)),
        ("1365 '<3 ' (limit hit)", "<3 ".repeat(1365)),
        ("2048 single letters 'a '", "a ".repeat(2048)),
        ("2048 's.' (one chain)", "s.".repeat(2048)),
        ("4096 'a' in one word", "a".repeat(4096)),
        ("682 ':fire:'", ":fire:".repeat(682)),
    ];
    for (name, text) in pathological {
        for t in [Through::Default, Through::AllFour] {
            cases.push((name.into(), t, text.clone()));
        }
    }

    println!(
        "{:<26} {:<12} {:>6} {:>12} {:>8}",
        "case", "pipeline", "bytes", "ns/message", "× 4 KiB"
    );
    let mut normal_ns: Vec<(Through, f64)> = Vec::new();
    let mut worst = 0.0f64;
    for (name, t, text) in &cases {
        let row = format!("{name}, {}", label(*t));
        if !row.contains(filter.as_str()) {
            continue;
        }
        let p = through(*t);
        let head = format!("{name:<26} {:<12} {:>6}", label(*t), text.len());
        if quick {
            for _ in 0..calls {
                run(&p, text);
            }
            println!("{head} {:>12}", "-");
            continue;
        }
        let ns = measure(&p, text);
        if name == NORMAL {
            normal_ns.push((*t, ns));
        }
        if name == NORMAL || text.len() <= 4000 {
            println!("{head} {ns:>12.0}");
            continue;
        }
        // Relative to the ordinary 4 KiB message through the same pipeline
        // (measured now if a filter left it out): at most 1, or the
        // pathological input is a regression.
        let base = match normal_ns.iter().find(|n| n.0 == *t) {
            Some(n) => n.1,
            None => {
                let ns = measure(&p, &message_4k);
                normal_ns.push((*t, ns));
                ns
            }
        };
        worst = worst.max(ns / base);
        println!("{head} {ns:>12.0} {:>8.2}", ns / base);
    }
    if quick {
        println!("(smoke run: `cargo bench --bench transforms` for figures)");
    } else if worst > 0.0 {
        println!("worst pathological case: {worst:.2} × the ordinary 4 KiB message");
    }
}

fn run(pipeline: &Pipeline, text: &str) {
    black_box(pipeline.apply(Draft::new(black_box(text))).ok());
}

/// The median, over 15 batches of about 20 ms, of the time per message.
fn measure(pipeline: &Pipeline, text: &str) -> f64 {
    let mut iters = 1u32;
    loop {
        let t = time(pipeline, text, iters);
        if t > Duration::from_millis(20) || iters >= 1 << 24 {
            break;
        }
        iters *= 2;
    }
    let mut per: Vec<f64> = (0..15)
        .map(|_| time(pipeline, text, iters).as_nanos() as f64 / f64::from(iters))
        .collect();
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

fn time(pipeline: &Pipeline, text: &str, iters: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        run(pipeline, text);
    }
    start.elapsed()
}

/// `s` repeated up to `len` bytes, cut at a character boundary.
fn fill(s: &str, len: usize) -> String {
    let mut out = s.repeat(len / s.len() + 1);
    let mut cut = len;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}

/// Backtick runs of every length from 1 up, separated by a letter: no run
/// has a partner, the worst case for a matcher that scans ahead.
fn ragged_backticks(len: usize) -> String {
    let mut out = String::new();
    let mut n = 1;
    while out.len() + n < len {
        out.push_str(&"`".repeat(n));
        out.push('x');
        n += 1;
    }
    out
}
