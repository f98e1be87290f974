//! The message pipeline: small transforms, each a plain function of one
//! message that returns a message or refuses it, run in the order given by
//! `--transforms`.
//!
//! The POST handler calls [`Pipeline::apply`] exactly once, before the message
//! is published and stored; nothing else in the crate changes message text.
//! Because a pipeline is plain data and functions, it runs the same over a
//! `Vec` in a test as over live traffic.
//!
//! ```text
//! --transforms, --censor-words, --censor-mode
//!     -> parse_names / CensorMode::parse -> TransformConfig
//!     -> Pipeline::from_config (checked once at start; an error exits 2)
//! POST text -> Draft::new -> Pipeline::apply -> Ok(Draft { text, spans }) -> stored, sent
//!                                            -> Err(Refusal)             -> 422
//! ```
//!
//! Inside `apply`, the text is first cut into prose and code (`code.rs`
//! always runs its parser, whether or not `code` is in the list). `censor`,
//! `autocorrect` and `emoji` then each rewrite the prose pieces only, in
//! order; the code pieces go back into the text untouched, so code is safe
//! whatever the order, and the `text` keeps its original markdown. Each
//! prose piece is rewritten on its own, so the edge of a code span counts as
//! a word boundary. Last, if `code` is in the list and the text holds code,
//! `spans` are built from the rewritten prose and the code.
//!
//! Each transform is one file and one variant of `Transform`, dispatched
//! in one `match`: the set is closed and known at compile time, so an enum
//! says more than a `dyn Trait` would. The tables they use are text files in
//! `data/`, compiled in with `include_str!` and parsed on first use.
//!
//! # Size limit
//!
//! Emoji are longer than the emoticons they replace (`<3` is 2 bytes, `❤️`
//! is 6), so a message accepted at `--max-message-bytes` could grow. The
//! rule: the output text is at most [`max_output_len`] of the input, twice
//! its length plus 64 bytes. `censor` never lengthens the text; a transform
//! that would take it past the limit (only `emoji` on emoticon spam can) is
//! skipped as a whole for that message, rather than stopping half way, so
//! the result does not depend on where the limit fell and running it again
//! gives the same text. With the default 4096-byte limit, a stored text is
//! at most 8256 bytes. `emoji` finds its changes in every piece and adds up
//! the length they give before it builds anything, so a message it must
//! skip costs one scan.
//!
//! # Adding a transform
//!
//! Write `name.rs` with a `pub(crate) fn apply(prose: &str) -> Option<String>`
//! (or a struct, if it has settings, like `censor`), add a variant to
//! `Transform`, its name to [`NAMES`], one arm to `from_config`, `name` and
//! `apply`, a table test in `tables.rs`, and a section in
//! docs/transforms.md. A transform sees only prose; it must not panic, must cost time
//! linear in its input, and must not add backticks or line breaks, which
//! would move where code is.

use std::borrow::Cow;
use std::fmt;

use crate::message::Span;

mod autocorrect;
mod censor;
mod code;
mod config;
mod emoji;
mod scan;
// The transforms as a user sees them: one table per transform (a unit test
// module so that the ARM in-process run covers it with the library's tests).
#[cfg(test)]
mod tables;

pub use config::{parse_names, CensorMode, ConfigError, TransformConfig, NAMES};

use censor::Censor;
use code::Piece;

/// The most bytes a transformed text may have, given its length before:
/// twice as long plus 64 bytes (so short messages of emoticons convert in
/// full).
///
/// # Examples
///
/// ```
/// use smolchat::transform::{max_output_len, Draft, Pipeline, TransformConfig};
///
/// assert_eq!(max_output_len(4096), 8256);
///
/// let emoji = Pipeline::from_config(&TransformConfig {
///     names: vec!["emoji".into()],
///     ..Default::default()
/// })
/// .unwrap();
/// // Nine hearts fit: 26 bytes become 62, under 2 * 26 + 64.
/// let hearts = ["<3"; 9].join(" ");
/// assert_eq!(emoji.apply(Draft::new(hearts)).unwrap().text, ["❤️"; 9].join(" "));
/// // A screenful of them would pass the limit, so it stays as typed.
/// let spam = ["<3"; 1000].join(" ");
/// assert_eq!(emoji.apply(Draft::new(spam.clone())).unwrap().text, spam);
/// ```
pub fn max_output_len(input_len: usize) -> usize {
    input_len.saturating_mul(2).saturating_add(64)
}

/// The text of a message on its way through the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Draft {
    /// The message text.
    pub text: String,
    /// Code spans, set by the `code` transform when the text holds code.
    pub spans: Option<Vec<Span>>,
}

impl Draft {
    /// A draft of plain text with no spans.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::transform::Draft;
    ///
    /// let d = Draft::new("hi");
    /// assert_eq!((d.text.as_str(), d.spans), ("hi", None));
    /// ```
    pub fn new(text: impl Into<String>) -> Self {
        Draft {
            text: text.into(),
            spans: None,
        }
    }
}

/// A transform's refusal of a message: answered with `422`.
///
/// Its `Display` is what the sender reads: the transform, then why.
///
/// ```
/// use smolchat::transform::Refusal;
///
/// let r = Refusal { transform: "censor", reason: "message contains a blocked word".into() };
/// assert_eq!(r.to_string(), "censor: message contains a blocked word");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The transform that refused.
    pub transform: &'static str,
    /// Why, in words a user understands.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.transform, self.reason)
    }
}

impl std::error::Error for Refusal {}

/// One step of a pipeline.
#[derive(Clone, Debug)]
pub(crate) enum Transform {
    /// Masks or refuses listed words (`censor.rs`).
    Censor(Censor),
    /// Fixes common misspellings (`autocorrect.rs`).
    Autocorrect,
    /// Turns emoticons and shortcodes into emoji (`emoji.rs`).
    Emoji,
    /// Adds `spans` when the text holds code (`code.rs`).
    Code,
}

impl Transform {
    /// The name `--transforms` knows it by.
    fn name(&self) -> &'static str {
        match self {
            Transform::Censor(_) => "censor",
            Transform::Autocorrect => "autocorrect",
            Transform::Emoji => "emoji",
            Transform::Code => "code",
        }
    }
}

/// An ordered list of transforms; cheap to clone.
#[derive(Clone, Debug)]
pub struct Pipeline {
    steps: Vec<Transform>,
}

impl Default for Pipeline {
    /// The same as [`Pipeline::none`]; the default *configuration* is
    /// [`TransformConfig::default`].
    fn default() -> Self {
        Pipeline::none()
    }
}

impl Pipeline {
    /// A pipeline with no transforms: the text passes through unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::transform::{Draft, Pipeline};
    ///
    /// let out = Pipeline::none().apply(Draft::new("shit :) `x`")).unwrap();
    /// assert_eq!(out.text, "shit :) `x`");
    /// assert_eq!(out.spans, None);
    /// ```
    pub fn none() -> Self {
        Pipeline { steps: Vec::new() }
    }

    /// Builds the pipeline the flags describe, refusing unknown or repeated
    /// names and a word list with bad lines.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::transform::{CensorMode, Pipeline, TransformConfig};
    ///
    /// let p = Pipeline::from_config(&TransformConfig::default()).unwrap();
    /// assert_eq!(p.names(), ["censor", "emoji", "code"]);
    ///
    /// let config = TransformConfig {
    ///     names: vec!["censor".into()],
    ///     censor_words: Some("# ours\nheck\n".into()),
    ///     censor_mode: CensorMode::Refuse,
    /// };
    /// assert!(Pipeline::from_config(&config).is_ok());
    ///
    /// let bad = TransformConfig { names: vec!["emojii".into()], ..Default::default() };
    /// assert_eq!(
    ///     Pipeline::from_config(&bad).unwrap_err().to_string(),
    ///     r#"unknown transform "emojii" (valid: censor, autocorrect, emoji, code)"#
    /// );
    /// ```
    pub fn from_config(config: &TransformConfig) -> Result<Self, ConfigError> {
        config::check_names(&config.names)?;
        let censor = || Censor::new(config.censor_words.as_deref(), config.censor_mode);
        let mut steps = Vec::with_capacity(config.names.len());
        for name in &config.names {
            steps.push(match name.as_str() {
                "censor" => Transform::Censor(censor()?),
                "autocorrect" => Transform::Autocorrect,
                "emoji" => Transform::Emoji,
                "code" => Transform::Code,
                other => return Err(ConfigError::UnknownTransform(other.to_owned())),
            });
        }
        if config.censor_words.is_some() && !config.names.iter().any(|n| n == "censor") {
            // Checked anyway: a mistake in the file should show now, not
            // when someone adds `censor` to the list later.
            censor()?;
        }
        Ok(Pipeline { steps })
    }

    /// The names of the transforms, in the order they run.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::transform::{parse_names, Pipeline, TransformConfig};
    ///
    /// let names = parse_names("code,autocorrect").unwrap();
    /// let p = Pipeline::from_config(&TransformConfig { names, ..Default::default() }).unwrap();
    /// assert_eq!(p.names(), ["code", "autocorrect"]);
    /// assert!(Pipeline::none().names().is_empty());
    /// ```
    pub fn names(&self) -> Vec<&'static str> {
        self.steps.iter().map(Transform::name).collect()
    }

    /// Runs every transform in order over the text of `draft`, or stops at
    /// the first refusal. Code in the text is never changed; `spans` are set
    /// when `code` is in the pipeline and the text holds code, and `None`
    /// otherwise (any `spans` the draft came with are not read).
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::message::Span;
    /// use smolchat::transform::{Draft, Pipeline, TransformConfig};
    ///
    /// let p = Pipeline::from_config(&TransformConfig::default()).unwrap();
    ///
    /// let out = p.apply(Draft::new("hi :) `shit :)`")).unwrap();
    /// assert_eq!(out.text, "hi 🙂 `shit :)`");
    /// assert_eq!(
    ///     out.spans.unwrap(),
    ///     [Span::Text { text: "hi 🙂 ".into() }, Span::Code { code: "shit :)".into() }]
    /// );
    ///
    /// assert_eq!(p.apply(Draft::new("oh shit")).unwrap(), Draft::new("oh ****"));
    /// ```
    pub fn apply(&self, draft: Draft) -> Result<Draft, Refusal> {
        let text = draft.text;
        if self.steps.is_empty() {
            return Ok(Draft::new(text));
        }
        let limit = max_output_len(text.len());
        // Most chat has no code: the whole text is the one piece of prose,
        // and the steps run on it without the pieces' lists.
        if !code::may_hold_code(&text) {
            let mut prose = [Cow::Borrowed(text.as_str())];
            self.run_steps(&mut prose, 0, limit)?;
            let [prose] = prose;
            return Ok(match prose {
                Cow::Owned(rewritten) => Draft::new(rewritten),
                Cow::Borrowed(_) => Draft::new(text),
            });
        }
        let pieces = code::split(&text);
        let mut prose: Vec<Cow<'_, str>> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Prose(r) => Some(Cow::Borrowed(&text[r.clone()])),
                Piece::Code { .. } => None,
            })
            .collect();
        let code_len = text.len() - prose.iter().map(|p| p.len()).sum::<usize>();
        let want_spans = self.run_steps(&mut prose, code_len, limit)?;
        let has_code = pieces.iter().any(|p| matches!(p, Piece::Code { .. }));
        let spans = (want_spans && has_code).then(|| code::spans(&pieces, &prose));
        let rewritten = prose.iter().any(|p| matches!(p, Cow::Owned(_))).then(|| {
            let mut out = String::with_capacity(text.len() + 16);
            let mut prose = prose.iter();
            for piece in &pieces {
                match piece {
                    Piece::Prose(_) => out.push_str(prose.next().map_or("", |p| p)),
                    Piece::Code { raw, .. } => out.push_str(&text[raw.clone()]),
                }
            }
            out
        });
        Ok(Draft {
            text: rewritten.unwrap_or(text),
            spans,
        })
    }

    /// Runs every step over the pieces of prose (with `code_len` bytes of
    /// code around them, and the text's `limit`); whether `code` is one of
    /// the steps, which then wants the spans.
    fn run_steps(
        &self,
        prose: &mut [Cow<'_, str>],
        code_len: usize,
        limit: usize,
    ) -> Result<bool, Refusal> {
        let mut want_spans = false;
        for step in &self.steps {
            match step {
                Transform::Censor(censor) => censor::with_scratch(|scratch| {
                    for p in prose.iter_mut() {
                        if let Some(masked) = censor.apply_with(p, scratch)? {
                            *p = Cow::Owned(masked);
                        }
                    }
                    Ok(())
                })?,
                Transform::Autocorrect => rewrite(prose, code_len, limit, autocorrect::apply),
                Transform::Emoji => rewrite_emoji(prose, code_len, limit),
                Transform::Code => want_spans = true,
            }
        }
        Ok(want_spans)
    }
}

/// Runs `f` over every prose piece and keeps the results, unless they would
/// take the text past `limit` bytes (with `code_len` bytes of code): then
/// the step is skipped whole, as the size limit in the module docs says.
fn rewrite(
    prose: &mut [Cow<'_, str>],
    code_len: usize,
    limit: usize,
    f: fn(&str) -> Option<String>,
) {
    let new: Vec<Option<String>> = prose.iter().map(|p| f(p)).collect();
    if new.iter().all(Option::is_none) {
        return;
    }
    let len: usize = prose
        .iter()
        .zip(&new)
        .map(|(old, new)| new.as_ref().map_or(old.len(), String::len))
        .sum();
    if code_len + len > limit {
        return;
    }
    for (p, new) in prose.iter_mut().zip(new) {
        if let Some(new) = new {
            *p = Cow::Owned(new);
        }
    }
}

/// [`rewrite`] for `emoji`, the one step that can pass the limit: finds
/// the changes in every piece first and adds up the length they would give,
/// so that a message of emoticon spam is scanned once and nothing is built.
fn rewrite_emoji(prose: &mut [Cow<'_, str>], code_len: usize, limit: usize) {
    let mut hits = Vec::new();
    // How many of `hits` each piece has.
    let mut counts = Vec::with_capacity(prose.len());
    let mut len = code_len;
    for p in prose.iter() {
        let before = hits.len();
        len += emoji::find(p, &mut hits);
        counts.push(hits.len() - before);
    }
    if hits.is_empty() || len > limit {
        return;
    }
    let mut rest = hits.as_slice();
    for (p, n) in prose.iter_mut().zip(counts) {
        let (mine, others) = rest.split_at(n);
        rest = others;
        if !mine.is_empty() {
            *p = Cow::Owned(emoji::replace(p, mine));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(names: &str) -> Pipeline {
        let names = parse_names(names).unwrap();
        Pipeline::from_config(&TransformConfig {
            names,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn pipelines_are_shareable_across_threads() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Pipeline>();
    }

    #[test]
    fn a_word_list_is_checked_even_without_censor() {
        let config = TransformConfig {
            names: vec!["emoji".into()],
            censor_words: Some("two words".into()),
            ..Default::default()
        };
        assert!(matches!(
            Pipeline::from_config(&config),
            Err(ConfigError::CensorWord { line: 1, .. })
        ));
    }

    #[test]
    fn an_empty_list_is_no_pipeline() {
        let p = pipeline("");
        assert!(p.names().is_empty());
        assert_eq!(
            p.apply(Draft::new("shit `x`")).unwrap(),
            Draft::new("shit `x`")
        );
    }

    #[test]
    fn code_runs_wherever_it_stands() {
        let want = pipeline("censor,emoji,code")
            .apply(Draft::new("shit :) `shit :)`"))
            .unwrap();
        for names in ["code,censor,emoji", "censor,code,emoji"] {
            assert_eq!(
                pipeline(names)
                    .apply(Draft::new("shit :) `shit :)`"))
                    .unwrap(),
                want
            );
        }
    }

    #[test]
    fn a_step_that_would_pass_the_limit_is_skipped_whole() {
        let mut prose = vec![Cow::Borrowed("<3 <3"), Cow::Borrowed(" :)")];
        rewrite(&mut prose, 10, 20, emoji::apply);
        assert_eq!(prose, ["<3 <3", " :)"]);
        rewrite(&mut prose, 10, 40, emoji::apply);
        assert_eq!(prose, ["❤️ ❤️", " 🙂"]);
    }

    #[test]
    fn emoji_decides_at_the_limit_as_any_step_does() {
        let pieces: &[&[&str]] = &[
            &["<3 <3", " :)"],
            &[":heart: :heart:", "<3"],
            &["no faces", " here"],
            &["", ":fire:"],
        ];
        for texts in pieces {
            for (code_len, limit) in [(0, 0), (10, 20), (10, 24), (10, 40), (0, 1000)] {
                let mut want: Vec<Cow<'_, str>> = texts.iter().map(|&t| Cow::Borrowed(t)).collect();
                let mut got = want.clone();
                rewrite(&mut want, code_len, limit, emoji::apply);
                rewrite_emoji(&mut got, code_len, limit);
                assert_eq!(got, want, "{texts:?} within {limit}");
            }
        }
    }
}
