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
    /// Shortest and longest misspelling, in bytes: other words skip the lookup.
    shortest: usize,
    longest: usize,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let fixes: FastMap<_, _> = entries(DICTIONARY).collect();
        Table {
            shortest: fixes.keys().map(|k| k.len()).min().unwrap_or(0),
            longest: fixes.keys().map(|k| k.len()).max().unwrap_or(0),
            fixes,
        }
    })
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
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut key = String::new();
    let mut prev = None;
    let mut i = 0;
    while let Some(c) = prose[i..].chars().next() {
        if scan::is_token_start(prev) {
            if let Some(n) = scan::url_len(&prose[i..]) {
                prev = prose[i..i + n].chars().next_back();
                i += n;
                continue;
            }
        }
        if !c.is_alphabetic() {
            prev = Some(c);
            i += c.len_utf8();
            continue;
        }
        let end = word_end(prose, i);
        let word = &prose[i..end];
        let fix = (scan::is_token_start(prev) && ends_word(&prose[end..]))
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
    if !word.is_ascii() || word.len() < table.shortest || word.len() > table.longest {
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
