//! The `code` transform, and the parser that keeps code away from the others.
//!
//! Code is found before any transform runs, whatever `--transforms` says:
//! [`split`] cuts the text into prose and code [`Piece`]s, the pipeline hands
//! only the prose to `censor`, `autocorrect` and `emoji`, and the code goes
//! back into the text byte for byte. Being in the pipeline only decides
//! whether the message also carries `spans` ([`spans`]), so where `code`
//! stands in the list makes no difference.
//!
//! The rules are CommonMark's, cut down to what a chat line holds:
//!
//! - A fence is a line of three or more backticks (indented by at most three
//!   spaces), optionally followed by a language; the block ends at a line of
//!   at least as many backticks and nothing else, or at the end of the text
//!   when no such line comes. Backticks inside a block are literal.
//! - Outside blocks, a run of N backticks opens inline code that the next run
//!   of exactly N backticks closes, within one paragraph (a blank line ends
//!   it). A run with no partner is literal text. Line breaks inside inline code
//!   become spaces, and one space is trimmed from each end when both ends have
//!   one (so ``` `` `x` `` ``` shows `` `x` ``).
//! - Backslash escapes are not interpreted: the text is stored as typed.
//!
//! A block owns the line break before its opening fence and after its closing
//! one, so `spans` show no stray `"\n"` text around blocks.
//!
//! Every byte is looked at a bounded number of times. Matching backtick runs
//! uses a "next run of the same length" table built right to left, instead
//! of scanning ahead from every opener, which would be quadratic on input
//! such as "`` ` `` ` ``` ` ````" repeated.
//!
//! # Examples
//!
//! ```
//! use smolchat::message::Span;
//! use smolchat::transform::{Draft, Pipeline, TransformConfig};
//!
//! let config = TransformConfig { names: vec!["code".into()], ..Default::default() };
//! let pipeline = Pipeline::from_config(&config).unwrap();
//!
//! let out = pipeline.apply(Draft::new("see `x + 1`\n```rust\nfn main() {}\n```")).unwrap();
//! assert_eq!(out.text, "see `x + 1`\n```rust\nfn main() {}\n```");
//! assert_eq!(
//!     out.spans.unwrap(),
//!     [
//!         Span::Text { text: "see ".into() },
//!         Span::Code { code: "x + 1".into() },
//!         Span::Block { block: "fn main() {}".into(), lang: Some("rust".into()) },
//!     ]
//! );
//!
//! // No code, no spans.
//! assert_eq!(pipeline.apply(Draft::new("plain")).unwrap().spans, None);
//! ```

use std::ops::Range;

use crate::message::Span;

/// A stretch of a message's text: prose that transforms may rewrite, or code
/// that they never see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Prose, as a byte range of the text.
    Prose(Range<usize>),
    /// Code: the byte range of its markdown (backticks and fences included)
    /// and the span it renders as.
    Code { raw: Range<usize>, span: Span },
}

/// Whether `text` may hold code: fences and code spans both need a
/// backtick, and most chat has none (one `memchr`).
pub(crate) fn may_hold_code(text: &str) -> bool {
    text.as_bytes().contains(&b'`')
}

/// Cuts `text` into pieces that cover it exactly, in order. (The pipeline
/// calls it only when [`may_hold_code`]; a text without code is one piece.)
pub(crate) fn split(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    // Start of the prose region not yet handed to `inline`.
    let mut region = 0;
    let mut line = 0;
    while line < text.len() {
        let line_end = find_newline(text, line);
        let Some(fence) = open_fence(&text[line..line_end]) else {
            line = line_end + 1;
            continue;
        };
        // The block takes the line break that ends the previous line, unless
        // the previous block took it already.
        let raw_start = if line > region { line - 1 } else { line };
        inline(text, region..raw_start, &mut pieces);

        let body = (line_end + 1).min(text.len());
        let mut close = None;
        let mut l = body;
        while l < text.len() {
            let e = find_newline(text, l);
            if is_closing_fence(&text[l..e], fence.ticks) {
                close = Some((l, e));
                break;
            }
            l = e + 1;
        }
        let (content, raw_end) = match close {
            Some((cl, ce)) => (
                &text[body..cl.saturating_sub(1).max(body)],
                (ce + 1).min(text.len()),
            ),
            None => {
                let rest = &text[body..];
                (rest.strip_suffix('\n').unwrap_or(rest), text.len())
            }
        };
        pieces.push(Piece::Code {
            raw: raw_start..raw_end,
            span: Span::Block {
                block: dedent(content, fence.indent),
                lang: fence.lang.map(str::to_owned),
            },
        });
        region = raw_end;
        line = raw_end;
    }
    inline(text, region..text.len(), &mut pieces);
    pieces
}

/// Builds the `spans` of a message from its pieces and the transformed prose
/// (one string per [`Piece::Prose`], in order). Empty prose is left out.
pub(crate) fn spans<S: AsRef<str>>(pieces: &[Piece], prose: &[S]) -> Vec<Span> {
    let mut prose = prose.iter();
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece {
            Piece::Prose(_) => {
                if let Some(p) = prose.next() {
                    let p = p.as_ref();
                    if !p.is_empty() {
                        out.push(Span::Text { text: p.to_owned() });
                    }
                }
            }
            Piece::Code { span, .. } => out.push(span.clone()),
        }
    }
    out
}

/// The byte index of the `\n` ending the line that starts at `from`, or the
/// text's length for the last line.
fn find_newline(text: &str, from: usize) -> usize {
    text.as_bytes()[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |p| from + p)
}

/// What an opening fence line says.
struct Fence<'a> {
    indent: usize,
    ticks: usize,
    lang: Option<&'a str>,
}

/// Reads `line` as an opening fence: up to three spaces, three or more
/// backticks, then an info string without backticks whose first word is
/// the language.
fn open_fence(line: &str) -> Option<Fence<'_>> {
    let indent = line.bytes().take_while(|&b| b == b' ').count();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ticks = rest.bytes().take_while(|&b| b == b'`').count();
    if ticks < 3 {
        return None;
    }
    let info = &rest[ticks..];
    if info.contains('`') {
        return None;
    }
    Some(Fence {
        indent,
        ticks,
        lang: info.split_whitespace().next(),
    })
}

/// Whether `line` closes a fence of `ticks` backticks: up to three spaces, at
/// least as many backticks, then only white space.
fn is_closing_fence(line: &str, ticks: usize) -> bool {
    let indent = line.bytes().take_while(|&b| b == b' ').count();
    if indent > 3 {
        return false;
    }
    let rest = &line[indent..];
    let n = rest.bytes().take_while(|&b| b == b'`').count();
    n >= ticks && rest[n..].chars().all(char::is_whitespace)
}

/// Removes up to `indent` leading spaces from every line of a block, as
/// CommonMark does for an indented fence.
fn dedent(content: &str, indent: usize) -> String {
    if indent == 0 {
        return content.to_owned();
    }
    let mut out = String::with_capacity(content.len());
    for (i, line) in content.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let spaces = line.bytes().take(indent).take_while(|&b| b == b' ').count();
        out.push_str(&line[spaces..]);
    }
    out
}

/// Finds inline code in the prose region `range` of `text` and pushes prose
/// and code pieces covering it.
fn inline(text: &str, range: Range<usize>, pieces: &mut Vec<Piece>) {
    let mut cursor = range.start;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut line = range.start;
    while line < range.end {
        let end = find_newline(text, line).min(range.end);
        let l = &text[line..end];
        if l.chars().all(char::is_whitespace) {
            // A blank line ends the paragraph: no code span crosses it.
            match_runs(text, &runs, &mut cursor, pieces);
            runs.clear();
        } else {
            let bytes = l.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'`' {
                    let n = bytes[i..].iter().take_while(|&&b| b == b'`').count();
                    runs.push((line + i, n));
                    i += n;
                } else {
                    i += 1;
                }
            }
        }
        line = end + 1;
    }
    match_runs(text, &runs, &mut cursor, pieces);
    if cursor < range.end {
        pieces.push(Piece::Prose(cursor..range.end));
    }
}

/// Pairs the backtick runs of one paragraph, `(start, length)` in text
/// order, each opener with the next run of the same length, and pushes the
/// pieces up to the last code span. `cursor` is where unclaimed prose starts.
fn match_runs(text: &str, runs: &[(usize, usize)], cursor: &mut usize, pieces: &mut Vec<Piece>) {
    if runs.len() < 2 {
        return;
    }
    const NONE: usize = usize::MAX;
    let longest = runs.iter().map(|r| r.1).max().unwrap_or(0);
    // Both tables in one buffer, on the stack for a paragraph of a few
    // runs (nearly every one).
    let mut small = [NONE; 32];
    let mut big;
    let tables = if longest + 1 + runs.len() <= small.len() {
        &mut small[..]
    } else {
        big = vec![NONE; longest + 1 + runs.len()];
        &mut big[..]
    };
    let (last_of_len, next_same) = tables.split_at_mut(longest + 1);
    for (i, &(_, n)) in runs.iter().enumerate().rev() {
        next_same[i] = last_of_len[n];
        last_of_len[n] = i;
    }
    let mut i = 0;
    while i < runs.len() {
        let j = next_same[i];
        if j == NONE {
            i += 1;
            continue;
        }
        let (open, n) = runs[i];
        let (close, _) = runs[j];
        if *cursor < open {
            pieces.push(Piece::Prose(*cursor..open));
        }
        pieces.push(Piece::Code {
            raw: open..close + n,
            span: Span::Code {
                code: inline_content(&text[open + n..close]),
            },
        });
        *cursor = close + n;
        i = j + 1;
    }
}

/// The content of inline code as CommonMark shows it: line breaks become
/// spaces, then one space comes off each end if both ends have one and the
/// content is not all spaces.
fn inline_content(raw: &str) -> String {
    let s = if raw.contains('\n') {
        raw.replace("\r\n", " ").replace('\n', " ")
    } else {
        raw.to_owned()
    };
    let trim =
        s.len() >= 2 && s.starts_with(' ') && s.ends_with(' ') && s.bytes().any(|b| b != b' ');
    if trim {
        s[1..s.len() - 1].to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Span {
        Span::Code { code: s.into() }
    }

    fn block(s: &str, lang: Option<&str>) -> Span {
        Span::Block {
            block: s.into(),
            lang: lang.map(Into::into),
        }
    }

    /// A piece as the slice of text it covers, and its span if it is code.
    type Cut<'a> = (&'a str, Option<Span>);

    fn cut(text: &str) -> Vec<Cut<'_>> {
        split(text)
            .into_iter()
            .map(|p| match p {
                Piece::Prose(r) => (&text[r], None),
                Piece::Code { raw, span } => (&text[raw], Some(span)),
            })
            .collect()
    }

    #[test]
    fn pieces_cover_the_text_exactly() {
        for text in [
            "",
            "a",
            "`",
            "``",
            "```",
            "a `b` c",
            "\n```\nx\n```\n",
            "a\n```\nx",
            "``` ``` ```",
            "a\n\n`b\n\nc`",
        ] {
            let mut joined = String::new();
            let mut end = 0;
            for p in split(text) {
                let r = match p {
                    Piece::Prose(r) => r,
                    Piece::Code { raw, .. } => raw,
                };
                assert_eq!(r.start, end, "{text:?}");
                end = r.end;
                joined.push_str(&text[r]);
            }
            assert_eq!(joined, text);
        }
    }

    #[test]
    fn text_without_a_backtick_is_one_piece_of_prose() {
        assert_eq!(cut(""), []);
        for text in ["a", "a\n\nb", "   ", "~~~\nx\n~~~", "\n"] {
            assert_eq!(cut(text), [(text, None)], "{text:?}");
        }
    }

    #[test]
    fn a_paragraph_of_many_runs_pairs_them_as_one_of_few() {
        // Up to 31 table slots the runs are paired on the stack, past that
        // in a buffer: the same pairing either way.
        for n in [1, 2, 15, 16, 40] {
            let text = "`a` ``b`` ".repeat(n);
            let got = cut(&text);
            let mut want = Vec::new();
            for _ in 0..n {
                want.extend([
                    ("`a`", Some(code("a"))),
                    (" ", None),
                    ("``b``", Some(code("b"))),
                    (" ", None),
                ]);
            }
            assert_eq!(got, want, "{n} pairs");
        }
        // A long run and many short ones: the table of lengths grows too.
        let text = format!("{} x{}", "`a` ".repeat(20), "`".repeat(40));
        let got = cut(&text);
        assert_eq!(got.iter().filter(|c| c.1.is_some()).count(), 20);
        assert_eq!(got.last(), Some(&(&text[79..], None)), "{got:?}");
    }

    #[test]
    fn inline_code_follows_commonmark() {
        let cases: &[(&str, &[Cut<'_>])] = &[
            (
                "a `b` c",
                &[("a ", None), ("`b`", Some(code("b"))), (" c", None)],
            ),
            ("``a ` b``", &[("``a ` b``", Some(code("a ` b")))]),
            ("`` `x` ``", &[("`` `x` ``", Some(code("`x`")))]),
            ("` `", &[("` `", Some(code(" ")))]),
            ("`a\nb`", &[("`a\nb`", Some(code("a b")))]),
            // An opener with no partner is literal, and a later run may open.
            ("`` a `b`", &[("`` a ", None), ("`b`", Some(code("b")))]),
            ("no `close", &[("no `close", None)]),
            // A closer must be exactly as long as the opener.
            ("`a``b`", &[("`a``b`", Some(code("a``b")))]),
            // A blank line ends the paragraph.
            ("`a\n\nb`", &[("`a\n\nb`", None)]),
        ];
        for (text, want) in cases {
            assert_eq!(cut(text), *want, "{text:?}");
        }
    }

    #[test]
    fn fences_follow_commonmark() {
        let cases: &[(&str, &[Cut<'_>])] = &[
            (
                "see\n```rust\nfn main() {}\n```\nbye",
                &[
                    ("see", None),
                    (
                        "\n```rust\nfn main() {}\n```\n",
                        Some(block("fn main() {}", Some("rust"))),
                    ),
                    ("bye", None),
                ],
            ),
            // Unclosed: runs to the end; backticks inside are literal.
            (
                "```\na `b` ```c",
                &[("```\na `b` ```c", Some(block("a `b` ```c", None)))],
            ),
            ("```\nx\n", &[("```\nx\n", Some(block("x", None)))]),
            ("```", &[("```", Some(block("", None)))]),
            // A longer fence needs a closer at least as long.
            (
                "````\n```\n````",
                &[("````\n```\n````", Some(block("```", None)))],
            ),
            // An info string with a backtick makes it inline code instead.
            ("```a```", &[("```a```", Some(code("a")))]),
            // Indented fences lose that indentation from the content.
            (
                "  ```\n  x\n   y\n  ```",
                &[("  ```\n  x\n   y\n  ```", Some(block("x\n y", None)))],
            ),
            // Four spaces is not a fence.
            ("    ```\nx", &[("    ```\nx", None)]),
            // Only the first word of the info string is the language.
            (
                "```py title\nx\n```",
                &[("```py title\nx\n```", Some(block("x", Some("py"))))],
            ),
            (
                "```\r\nx\r\n```\r\n",
                &[("```\r\nx\r\n```\r\n", Some(block("x\r", None)))],
            ),
            (
                "```\na\n```\n```\nb\n```",
                &[
                    ("```\na\n```\n", Some(block("a", None))),
                    ("```\nb\n```", Some(block("b", None))),
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(cut(text), *want, "{text:?}");
        }
    }

    #[test]
    fn a_fence_interrupts_inline_code() {
        assert_eq!(
            cut("`a\n```\nb`"),
            [("`a", None), ("\n```\nb`", Some(block("b`", None)))]
        );
    }
}
