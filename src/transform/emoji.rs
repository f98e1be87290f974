//! The `emoji` transform: emoticons (`:)`, `<3`, `:'(`, … in
//! `data/emoticons.txt`) and `:shortcodes:` (`:heart:`, `:+1:`, `:fire:`, …
//! in `data/shortcodes.txt`, GitHub's and Slack's names) become emoji.
//!
//! Colons and brackets mean many things besides faces, so both only count at
//! word boundaries:
//!
//! - an emoticon stands alone: white space or the start before it; white
//!   space or the end after it, possibly after `.` `,` `!` `?` (`:).` is a
//!   face, `<3.5` is a number). So `10:30`, `1:1`, `std::io`, `C:\`,
//!   `x:/path` and `:Penguin` stay as typed;
//! - a shortcode is `:name:` with a lowercase name from the table, with no
//!   letter or digit right before or after it and no `:` right before it
//!   (`std::fire::x` is a path); shortcodes may touch each other
//!   (`:fire::fire:` is two) or an emoji;
//! - nothing inside a URL changes (`http://x/:)`), nor inside code, which
//!   the pipeline never shows to a transform.
//!
//! The boundary rules look at the text already written, emoji included, and
//! no emoji is a letter, a digit, white space or punctuation that a rule
//! looks for, so running the transform on its own output changes nothing:
//! it is idempotent, which the property tests check.
//!
//! # Examples
//!
//! ```
//! use smolchat::transform::{Draft, Pipeline, TransformConfig};
//!
//! let config = TransformConfig { names: vec!["emoji".into()], ..Default::default() };
//! let emoji = Pipeline::from_config(&config).unwrap();
//! let run = |s: &str| emoji.apply(Draft::new(s)).unwrap().text;
//!
//! assert_eq!(run(":) hi"), "🙂 hi");
//! assert_eq!(run("I <3 this :fire::fire:"), "I ❤️ this 🔥🔥");
//! assert_eq!(run("at 10:30 use std::io, not :Penguin"), "at 10:30 use std::io, not :Penguin");
//! ```

use std::sync::OnceLock;

use super::scan::{self, FastMap};

/// `emoticon emoji` per line.
const EMOTICONS: &str = include_str!("data/emoticons.txt");
/// `name emoji` per line.
const SHORTCODES: &str = include_str!("data/shortcodes.txt");

/// The longest shortcode name, in bytes, that the scanner reads.
const MAX_NAME: usize = 32;

/// The parsed tables.
struct Tables {
    emoticons: FastMap<&'static str, &'static str>,
    /// Emoticon lengths in bytes, longest first, so `:-)` wins over `:-`.
    lengths: Vec<usize>,
    /// The first two bytes of every emoticon: most places fail this test
    /// and skip the lookups.
    prefixes: Vec<[u8; 2]>,
    shortcodes: FastMap<&'static str, &'static str>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let emoticons: FastMap<_, _> = entries(EMOTICONS).collect();
        let mut lengths: Vec<usize> = emoticons.keys().map(|k| k.len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        let mut prefixes: Vec<[u8; 2]> = emoticons
            .keys()
            .filter_map(|k| Some([*k.as_bytes().first()?, *k.as_bytes().get(1)?]))
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        Tables {
            emoticons,
            lengths,
            prefixes,
            shortcodes: entries(SHORTCODES).collect(),
        }
    })
}

/// The `(from, emoji)` lines of a table text.
fn entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
}

/// Turns the emoticons and shortcodes in `prose` into emoji; `None` when
/// there were none.
pub(crate) fn apply(prose: &str) -> Option<String> {
    let tables = tables();
    // Filled only from the first change on; until then it equals the input.
    let mut out: Option<String> = None;
    let mut prev: Option<char> = None;
    let mut i = 0;
    while let Some(c) = prose[i..].chars().next() {
        let rest = &prose[i..];
        let url = scan::is_token_start(prev)
            .then(|| scan::url_len(rest))
            .flatten();
        let (len, emoji) = if let Some(n) = url {
            (n, None)
        } else if let Some(hit) = shortcode(tables, rest, prev) {
            (hit.0, Some(hit.1))
        } else if let Some(hit) = emoticon(tables, rest, prev) {
            (hit.0, Some(hit.1))
        } else if c.is_ascii_alphanumeric() {
            // The rest of the word cannot start anything: every rule wants
            // white space, punctuation or a colon before it.
            let run = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
            (run, None)
        } else {
            (c.len_utf8(), None)
        };
        match (emoji, &mut out) {
            (Some(e), Some(o)) => o.push_str(e),
            (Some(e), None) => {
                let mut o = String::with_capacity(prose.len() + 16);
                o.push_str(&prose[..i]);
                o.push_str(e);
                out = Some(o);
            }
            (None, Some(o)) => o.push_str(&rest[..len]),
            (None, None) => {}
        }
        prev = match emoji {
            Some(e) => e.chars().next_back(),
            None => rest[..len].chars().next_back(),
        };
        i += len;
    }
    out
}

/// A `:name:` shortcode at the start of `s`: its length and emoji.
fn shortcode(tables: &Tables, s: &str, prev: Option<char>) -> Option<(usize, &'static str)> {
    let b = s.as_bytes();
    if b.first() != Some(&b':') {
        return None;
    }
    let name_len = b[1..]
        .iter()
        .take(MAX_NAME + 1)
        .take_while(|&&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'+' | b'-')
        })
        .count();
    if name_len == 0 || name_len > MAX_NAME || b.get(1 + name_len) != Some(&b':') {
        return None;
    }
    let left = match prev {
        None => true,
        Some(c) if c.is_ascii() => {
            c.is_ascii_whitespace() || matches!(c, '(' | '[' | '{' | '"' | '\'' | '*' | '_' | '~')
        }
        Some(c) => !c.is_alphanumeric(),
    };
    let len = name_len + 2;
    let right = !s[len..].starts_with(char::is_alphanumeric);
    if !(left && right) {
        return None;
    }
    tables.shortcodes.get(&s[1..len - 1]).map(|&e| (len, e))
}

/// An emoticon standing alone at the start of `s`: its length and emoji.
fn emoticon(tables: &Tables, s: &str, prev: Option<char>) -> Option<(usize, &'static str)> {
    if !prev.is_none_or(char::is_whitespace) {
        return None;
    }
    let prefix = s.as_bytes().get(..2)?;
    if !tables.prefixes.iter().any(|p| p == prefix) {
        return None;
    }
    tables.lengths.iter().find_map(|&n| {
        let face = s.get(..n)?;
        let emoji = tables.emoticons.get(face)?;
        let after = s[n..].trim_start_matches(['.', ',', '!', '?']);
        (after.is_empty() || after.starts_with(char::is_whitespace)).then_some((n, *emoji))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_keep_their_rules() {
        let faces: Vec<_> = entries(EMOTICONS).collect();
        let codes: Vec<_> = entries(SHORTCODES).collect();
        assert!(faces.len() >= 30, "{} emoticons", faces.len());
        assert!(codes.len() >= 100, "{} shortcodes", codes.len());
        assert_eq!(tables().emoticons.len(), faces.len(), "no emoticon twice");
        assert_eq!(tables().shortcodes.len(), codes.len(), "no shortcode twice");
        for (face, emoji) in &faces {
            // ASCII, so `s.get(..n)` lands on character boundaries; no
            // white space or `.,!?`, which end a face; no emoji in a face.
            assert!(face.is_ascii() && face.len() >= 2, "{face}");
            assert!(
                !face.contains(|c: char| c.is_whitespace() || c == '`'),
                "{face}"
            );
            assert!(!face.ends_with(['.', ',', '!', '?']), "{face}");
            assert!(
                !emoji.is_ascii() && !emoji.contains(char::is_whitespace),
                "{face}"
            );
            assert!(emoji.len() <= 3 * face.len(), "{face} grows too much");
        }
        for (name, emoji) in &codes {
            assert!(name.len() <= MAX_NAME, "{name}");
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_+-".contains(&c)),
                "{name}"
            );
            assert!(
                !emoji.is_ascii() && !emoji.contains(char::is_whitespace),
                "{name}"
            );
            assert!(emoji.len() <= 2 * (name.len() + 2), "{name} grows too much");
            // An emoji never ends in something a boundary rule looks for.
            let last = emoji.chars().next_back().unwrap_or(' ');
            assert!(!last.is_alphanumeric() && !last.is_whitespace(), "{name}");
        }
    }

    #[test]
    fn shortcode_boundaries() {
        let t = tables();
        let cases = [
            (":fire:", None, Some(6)),
            (":fire:", Some(' '), Some(6)),
            (":fire:", Some('('), Some(6)),
            (":fire:", Some('🔥'), Some(6)),
            (":fire:", Some('a'), None),
            (":fire:", Some(':'), None),
            (":fire:", Some('é'), None),
            (":fire:s", None, None),
            (":fire::", None, Some(6)),
            (":Fire:", None, None),
            (":nosuchcode:", None, None),
            ("::", None, None),
            (":fire", None, None),
        ];
        for (s, prev, want) in cases {
            assert_eq!(
                shortcode(t, s, prev).map(|h| h.0),
                want,
                "{s:?} after {prev:?}"
            );
        }
    }
}
