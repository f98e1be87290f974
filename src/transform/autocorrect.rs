//! The `autocorrect` transform: fixes common misspellings from a built-in
//! dictionary (`data/autocorrect.txt`, close to 300 entries).
//!
//! It is careful rather than clever. A word is fixed only when all of these
//! hold, and otherwise left exactly as typed:
//!
//! - it is a whole prose word: it starts after white space, an opening
//!   bracket or quote (so `@teh`, `#teh`, `/teh` and `file_teh` are names,
//!   not prose) and ends at white space or the end, possibly after closing
//!   punctuation (`teh.` and `teh,` are fixed; `teh.com` and `teh2` are not);
//! - it is not part of a URL (`http://…`, `www.…`) or of code (the pipeline
//!   never shows code to a transform);
//! - the dictionary knows it, and none of its misspellings is an English
//!   word in its own right (`thru`, `alright` and British spellings stay);
//! - its capitalisation is one of `teh`, `Teh` or `TEH`, which the fix
//!   keeps (`the`, `The`, `THE`); `tEh` is someone's deliberate choice.
//!
//! A fix is at most twice as long as the misspelling, which keeps this
//! transform well inside the pipeline's size limit.
//!
//! # Examples
//!
//! ```
//! use smolchat::transform::{Draft, Pipeline, TransformConfig};
//!
//! let config = TransformConfig { names: vec!["autocorrect".into()], ..Default::default() };
//! let autocorrect = Pipeline::from_config(&config).unwrap();
//! let run = |s: &str| autocorrect.apply(Draft::new(s)).unwrap().text;
//!
//! assert_eq!(run("Teh cat, TEH dog, teh end."), "The cat, THE dog, the end.");
//! assert_eq!(run("i dont recieve @teh at teh.com"), "i don't receive @teh at teh.com");
//! ```

use std::sync::OnceLock;

use super::scan::{self, FastMap};

/// The dictionary: `misspelling fix` per line.
const DICTIONARY: &str = include_str!("data/autocorrect.txt");

/// Punctuation that may follow a word before the white space that ends it.
const CLOSING: &[char] = &[
    '.', ',', '!', '?', ';', ':', ')', ']', '}', '"', '\'', '”', '’', '…',
];

/// The parsed dictionary.
struct Table {
    fixes: FastMap<&'static str, &'static str>,
    /// For each first letter `a` to `z`, the lengths in bytes of its
    /// misspellings, as a bit set: most words fail this test and skip
    /// lowercasing and the lookup.
    lengths: [u64; 26],
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let fixes: FastMap<_, _> = entries(DICTIONARY).collect();
        let mut lengths = [0; 26];
        for wrong in fixes.keys() {
            // The dictionary tests check that misspellings are lowercase
            // ASCII; any other line could never match, and is not counted.
            if let Some(first @ b'a'..=b'z') = wrong.bytes().next() {
                if wrong.len() < 64 {
                    lengths[usize::from(first - b'a')] |= 1 << wrong.len();
                }
            }
        }
        Table { fixes, lengths }
    })
}

impl Table {
    /// Whether the dictionary may hold `word`, in any case: whether it has
    /// a misspelling as long, starting with the same letter.
    fn may_hold(&self, word: &str) -> bool {
        let Some(first @ b'a'..=b'z') = word.bytes().next().map(|b| b.to_ascii_lowercase()) else {
            return false;
        };
        word.len() < 64 && self.lengths[usize::from(first - b'a')] & (1 << word.len()) != 0
    }
}

/// The `(misspelling, fix)` lines of a dictionary text.
fn entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
}

/// Fixes the misspellings in `prose`; `None` when there were none.
pub(crate) fn apply(prose: &str) -> Option<String> {
    let table = table();
    let bytes = prose.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut key = String::new();
    let urls = scan::may_hold_url(prose);
    let mut prev = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let c = if b.is_ascii() {
            char::from(b)
        } else {
            prose[i..].chars().next().unwrap_or_default()
        };
        if !c.is_alphabetic() {
            prev = Some(c);
            i += c.len_utf8();
            continue;
        }
        let end = word_end(prose, i);
        // A URL starts with an ASCII letter (`www.` or a scheme).
        if urls
            && b.is_ascii_alphabetic()
            && scan::is_token_start(prev)
            && scan::may_be_url(&bytes[i..], end - i)
        {
            if let Some(n) = scan::url_len(&prose[i..]) {
                prev = prose[i..i + n].chars().next_back();
                i += n;
                continue;
            }
        }
        let word = &prose[i..end];
        // Cheapest test first: most words are not in the dictionary.
        let fix = (table.may_hold(word) && scan::is_token_start(prev) && ends_word(&prose[end..]))
            .then(|| lookup(table, word, &mut key))
            .flatten()
            .and_then(|fix| recase(word, fix));
        if let Some(fix) = fix {
            out.push_str(&prose[copied..i]);
            out.push_str(&fix);
            copied = end;
            changed = true;
        }
        prev = word.chars().next_back();
        i = end;
    }
    if !changed {
        return None;
    }
    out.push_str(&prose[copied..]);
    Some(out)
}

/// The end of the word starting at `i`: letters, and apostrophes between
/// letters (`don't` is one word, so the fix for `dont` never touches it).
fn word_end(s: &str, i: usize) -> usize {
    // ASCII letters first, a byte at a time; anything else that may go on
    // a word (a letter beyond ASCII, an apostrophe) goes the long way.
    let ascii = s.as_bytes()[i..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let i = i + ascii;
    match s.as_bytes().get(i) {
        None => return i,
        Some(&b) if b.is_ascii() && b != b'\'' => return i,
        Some(_) => {}
    }
    let mut chars = s[i..].char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let inner_apostrophe =
            matches!(c, '\'' | '’') && chars.peek().is_some_and(|&(_, n)| n.is_alphabetic());
        if !(c.is_alphabetic() || inner_apostrophe) {
            return i + at;
        }
    }
    s.len()
}

/// Whether what follows a word ends it as prose: the end, white space, or
/// closing punctuation followed by either.
fn ends_word(rest: &str) -> bool {
    let after = rest.trim_start_matches(CLOSING);
    after.is_empty() || after.starts_with(char::is_whitespace)
}

/// The dictionary's fix for `word`, whatever its case.
fn lookup(table: &Table, word: &str, key: &mut String) -> Option<&'static str> {
    if !word.is_ascii() {
        return None;
    }
    key.clear();
    key.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    table.fixes.get(key.as_str()).copied()
}

/// `fix` in the capitalisation of `word`: `teh`, `Teh` and `TEH` give `the`,
/// `The` and `THE`; any other mix gives `None`.
fn recase(word: &str, fix: &str) -> Option<String> {
    let mut letters = word.chars().filter(|c| c.is_alphabetic());
    let first = letters.next()?;
    let rest: Vec<char> = letters.collect();
    let lower = |c: &char| c.is_lowercase();
    let upper = |c: &char| c.is_uppercase();
    if first.is_lowercase() && rest.iter().all(lower) {
        Some(fix.to_owned())
    } else if first.is_uppercase() && rest.iter().all(lower) {
        let mut f = fix.chars();
        Some(
            f.next()
                .map(|c| c.to_uppercase().chain(f).collect())
                .unwrap_or_default(),
        )
    } else if first.is_uppercase() && !rest.is_empty() && rest.iter().all(upper) {
        Some(fix.to_uppercase())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_keeps_its_rules() {
        let lines: Vec<&str> = DICTIONARY
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        let parsed: Vec<(&str, &str)> = entries(DICTIONARY).collect();
        assert_eq!(parsed.len(), lines.len(), "every line is `misspelling fix`");
        assert!(parsed.len() >= 200, "{} entries", parsed.len());
        for pair in parsed.windows(2) {
            assert!(pair[0].0 < pair[1].0, "sorted and unique: {:?}", pair);
        }
        for (wrong, fix) in parsed {
            assert!(
                wrong.bytes().all(|b| b.is_ascii_lowercase() || b == b'\''),
                "{wrong}"
            );
            assert!(!fix.is_empty() && fix != wrong, "{wrong}");
            assert!(
                fix.len() <= 2 * wrong.len(),
                "{wrong} -> {fix} grows too much"
            );
        }
    }

    #[test]
    fn case_follows_the_writer() {
        let cases = [
            ("teh", Some("the")),
            ("Teh", Some("The")),
            ("TEH", Some("THE")),
            ("tEh", None),
            ("TEh", None),
            ("Alot", Some("A lot")),
            ("ALOT", Some("A LOT")),
            ("Dont", Some("Don't")),
        ];
        for (word, want) in cases {
            let fix = table().fixes[word.to_ascii_lowercase().as_str()];
            assert_eq!(recase(word, fix).as_deref(), want, "{word}");
        }
    }

    #[test]
    fn words_end_at_anything_but_letters_and_inner_apostrophes() {
        let cases = [
            ("teh cat", 3),
            ("don't", 5),
            ("dont'", 4),
            ("rock’n’roll", 15),
            ("teh.com", 3),
            ("naïve", 6),
            ("teh2", 3),
        ];
        for (s, want) in cases {
            assert_eq!(word_end(s, 0), want, "{s}");
        }
    }
}
