//! What the transform pipeline costs per message: `cargo bench --bench transforms`.
//!
//! A plain binary instead of criterion, which would pull dozens of crates
//! into every dev build for a handful of numbers. Each case runs in batches
//! of about 20 ms, and the median batch is reported as nanoseconds per
//! message, with the message size, for the default pipeline
//! (`censor,emoji,code`) and for all four transforms.
//!
//! The pathological cases check that cost stays linear: a 4 KiB message of
//! colons, backticks or single letters should cost about what any 4 KiB
//! message costs. Under `cargo test --benches` each case runs once, as a
//! smoke test. A word after `--` runs only the cases whose name holds it:
//! `cargo bench --bench transforms -- 4096`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use smolchat::transform::{parse_names, Draft, Pipeline, TransformConfig};

/// About 100 bytes of ordinary chat: a mention, a typo, an emoticon, inline
/// code, a listed word and a shortcode.
const LINE: &str = "@ana teh pi build is done :) run `cargo test` again, the shit flaky one passed :fire: see you 10:30";

/// A paragraph of a longer message, with a fenced block.
const PARAGRAPH: &str = "Here is what I found while looking at the slow subscriber issue: \
the room fills up when one browser tab stops reading, so every POST waits :( \
The fix is in `room.rs`, see below. Thanks for the help <3\n\
```rust\nlet sent = room.publish(msg).await?;\n```\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    // `cargo bench --bench transforms -- colons` runs the cases matching "colons".
    let filter = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    let default = Pipeline::from_config(&TransformConfig::default()).expect("default config");
    let all = Pipeline::from_config(&TransformConfig {
        names: parse_names("censor,autocorrect,emoji,code").expect("names"),
        ..Default::default()
    })
    .expect("all four");

    let only = |name: &str| {
        Pipeline::from_config(&TransformConfig {
            names: vec![name.to_owned()],
            ..Default::default()
        })
        .expect("one transform")
    };
    let (censor, autocorrect, emoji, code) = (
        only("censor"),
        only("autocorrect"),
        only("emoji"),
        only("code"),
    );
    let message_4k = fill(PARAGRAPH, 4096);
    let cases: Vec<(&str, &Pipeline, String)> = vec![
        ("chat line, default", &default, LINE.to_owned()),
        ("chat line, all four", &all, LINE.to_owned()),
        ("4 KiB message, default", &default, message_4k.clone()),
        ("4 KiB message, all four", &all, message_4k.clone()),
        ("4 KiB message, censor", &censor, message_4k.clone()),
        (
            "4 KiB message, autocorrect",
            &autocorrect,
            message_4k.clone(),
        ),
        ("4 KiB message, emoji", &emoji, message_4k.clone()),
        ("4 KiB message, code", &code, message_4k),
        ("4096 colons", &default, ":".repeat(4096)),
        ("4096 backticks", &default, "`".repeat(4096)),
        ("2048 `x` spans", &default, "`x`".repeat(1365)),
        ("runs of 1..90 backticks", &default, ragged_backticks(4096)),
        ("2048 ': '", &default, ": ".repeat(2048)),
        ("2048 '<3 ' (limit hit)", &default, "<3 ".repeat(1365)),
        ("2048 single letters 'a '", &all, "a ".repeat(2048)),
        ("4096 'a' in one word", &all, "a".repeat(4096)),
    ];

    println!("{:<28} {:>6} {:>12}", "case", "bytes", "ns/message");
    for (name, pipeline, text) in cases.iter().filter(|c| c.0.contains(filter.as_str())) {
        if quick {
            run(pipeline, text);
            println!("{name:<28} {:>6} {:>12}", text.len(), "-");
        } else {
            let ns = measure(pipeline, text);
            println!("{name:<28} {:>6} {ns:>12.0}", text.len());
        }
    }
    if quick {
        println!("(smoke run: `cargo bench --bench transforms` for figures)");
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
