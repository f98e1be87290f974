//! Replays every committed corpus file through its target's check, so a
//! plain `cargo test` in `fuzz/` (stable, no fuzzer) runs the seeds and
//! every input a crash was ever minimized to.

use std::fs;
use std::path::Path;

use smolchat_fuzz::targets;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable corpus dir").path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{target}: only {} seeds", files.len());
    for f in files {
        let data = fs::read(&f).expect("a readable seed");
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: {} fails its check", f.display());
        }
    }
}

#[test]
fn head() {
    replay("head", targets::head::check);
}

#[test]
fn chunked() {
    replay("chunked", targets::chunked::check);
}

#[test]
fn body() {
    replay("body", targets::body::check);
}

#[test]
fn transform() {
    replay("transform", targets::transform::check);
}

#[test]
fn sse() {
    replay("sse", targets::sse::check);
}

#[test]
fn config() {
    replay("config", targets::config::check);
}
