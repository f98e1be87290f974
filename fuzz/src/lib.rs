//! The checks behind smolchat's fuzz targets, and what they share.
//!
//! Each target in `fuzz_targets/` is one line that calls a `check` here, so
//! the same checks also run without a fuzzer: `cargo test` in `fuzz/`
//! replays every file of `corpus/` through them (`tests/corpus.rs`), on a
//! stable toolchain with no flags. What each target feeds and checks is in
//! its module's docs; how to run them is in `docs/fuzzing.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod event_stream;
pub mod input;

/// One module per fuzz target.
pub mod targets {
    pub mod body;
    pub mod chunked;
    pub mod config;
    pub mod head;
    pub mod sse;
    pub mod transform;
}

use std::sync::OnceLock;

use smolchat::transform::{Pipeline, TransformConfig};

/// A pipeline of `code` alone, built once: the reference reading of the
/// code in a text.
pub fn code_pipeline() -> &'static Pipeline {
    static CODE: OnceLock<Pipeline> = OnceLock::new();
    CODE.get_or_init(|| {
        Pipeline::from_config(&TransformConfig {
            names: vec!["code".into()],
            ..Default::default()
        })
        .expect("the code pipeline")
    })
}
