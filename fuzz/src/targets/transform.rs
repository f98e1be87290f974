//! Target `transform`: the message pipeline and its invariants.
//!
//! Input: one byte picks the pipeline (any ordered subset of the
//! transforms, `censor` masking or refusing: 130 pipelines), the rest is
//! the text (invalid UTF-8 replaced). Checked, for any text:
//!
//! - no panic, and the same answer twice (for texts up to 256 bytes);
//! - only `censor` in refuse mode refuses;
//! - the output is at most [`max_output_len`] of the input;
//! - no transform adds or removes a backtick or a line break;
//! - code is never changed: the code the output holds, read again, is the
//!   code of the input; with `code` in the pipeline, `spans` carry that
//!   same code, and only then are there `spans`;
//! - an empty pipeline, or `code` alone, leaves the text as it is;
//! - `censor` alone only ever puts stars over characters.

use std::sync::OnceLock;

use smolchat::message::Span;
use smolchat::transform::{max_output_len, CensorMode, Draft, Pipeline, TransformConfig, NAMES};

struct Choice {
    names: Vec<&'static str>,
    refuse: bool,
    pipeline: Pipeline,
}

/// Every pipeline: each ordered subset of [`NAMES`], in both censor modes.
fn choices() -> &'static [Choice] {
    static ALL: OnceLock<Vec<Choice>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut lists: Vec<Vec<&'static str>> = vec![Vec::new()];
        let mut frontier = lists.clone();
        for _ in 0..NAMES.len() {
            let mut next = Vec::new();
            for list in &frontier {
                for name in NAMES.iter().filter(|n| !list.contains(n)) {
                    let mut longer = list.clone();
                    longer.push(name);
                    next.push(longer);
                }
            }
            lists.extend(next.iter().cloned());
            frontier = next;
        }
        let mut all = Vec::new();
        for refuse in [false, true] {
            for names in &lists {
                let config = TransformConfig {
                    names: names.iter().map(|n| n.to_string()).collect(),
                    censor_words: None,
                    censor_mode: if refuse {
                        CensorMode::Refuse
                    } else {
                        CensorMode::Mask
                    },
                };
                all.push(Choice {
                    names: names.clone(),
                    refuse,
                    pipeline: Pipeline::from_config(&config).expect("a valid pipeline"),
                });
            }
        }
        all
    })
}

/// The code and block spans of a draft, in order.
fn code_of(d: &Draft) -> Vec<Span> {
    d.spans
        .iter()
        .flatten()
        .filter(|s| !matches!(s, Span::Text { .. }))
        .cloned()
        .collect()
}

fn count(text: &str, c: char) -> usize {
    text.chars().filter(|&x| x == c).count()
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let all = choices();
    let choice = &all[usize::from(pick) % all.len()];
    let text = String::from_utf8_lossy(text).into_owned();

    let got = choice.pipeline.apply(Draft::new(text.clone()));
    // Determinism on short texts only: a second run of a long one would
    // halve the executions for a property the proptests check as well.
    if text.len() <= 256 {
        assert_eq!(got, choice.pipeline.apply(Draft::new(text.clone())));
    }
    let out = match got {
        Ok(out) => out,
        Err(refusal) => {
            assert!(
                choice.refuse && choice.names.contains(&"censor"),
                "{refusal}"
            );
            return;
        }
    };
    let names = &choice.names;
    assert!(out.text.len() <= max_output_len(text.len()));
    for c in ['`', '\n', '\r'] {
        assert_eq!(
            count(&out.text, c),
            count(&text, c),
            "{c:?} in {:?}",
            out.text
        );
    }

    let reference = crate::code_pipeline()
        .apply(Draft::new(text.clone()))
        .expect("code never refuses");
    let reread = crate::code_pipeline()
        .apply(Draft::new(out.text.clone()))
        .expect("code never refuses");
    assert_eq!(code_of(&reread), code_of(&reference), "{:?}", out.text);
    if names.contains(&"code") {
        assert_eq!(out.spans.is_some(), reference.spans.is_some());
        assert_eq!(code_of(&out), code_of(&reference));
    } else {
        assert_eq!(out.spans, None);
    }

    if names.is_empty() || names == &["code"] {
        assert_eq!(out.text, text);
    }
    if names == &["censor"] {
        assert_eq!(out.text.chars().count(), text.chars().count());
        for (a, b) in text.chars().zip(out.text.chars()) {
            assert!(a == b || b == '*', "{a:?} became {b:?}");
        }
    }
}
