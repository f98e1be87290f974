//! The `censor` transform: masks listed words with `*`, or refuses the
//! message (`--censor-mode refuse`).
//!
//! The list is whole words (`--censor-words FILE` replaces the built-in one,
//! `data/censor.txt`). Matching is whole-word because substring matching is
//! the Scunthorpe problem: `class`, `assistant`, `Scunthorpe`, `cocktail`,
//! `Dickens`, `shitake`, `Sussex`, `Penistone`, `therapist` and `grapes` all
//! contain a word someone would list. Instead, a word is a run of letters,
//! digits and the look-alike symbols `@ $ !`, and it is masked only when the
//! whole of it, read through the obfuscations people use, is a listed word:
//!
//! - case and width: `SHIT`, `Ｓｈｉｔ`; common Latin accents: `shït`;
//! - look-alikes: `1 ! l` read as `i`, `3` as `e`, `0` as `o`, `@ 4` as `a`,
//!   `$ 5` as `s`, `7` as `t`: `sh1t`, `$hit`, `@ss`, `bu11sh!t` (since `1`
//!   stands for both `i` and `l`, those two are one letter here: a list
//!   with `hell` masks `heil` too);
//! - repeated letters: a letter typed three or more times (`shiiit`,
//!   `fuuuck`, `asss`) stands for one or two of it. A double is spelling,
//!   not disguise: `asses` never masks `assess`, nor `ass` the word `as`;
//! - invisible characters (zero-width spaces, soft hyphens, combining marks)
//!   inside a word;
//! - single letters joined by one separator each (space `.` `-` `_` `*` `~`),
//!   read as one word: `s.h.i.t`, `f-u-c-k`, `a s s`.
//!
//! Deliberately not caught, because every rule that would catch them also
//! masks innocent text: words glued to other words (`shitpost`; list the
//! compound to mask it), letters split unevenly (`sh it`, which would make
//! `pen is` read as `penis`), and homoglyphs from other scripts (Cyrillic
//! `ѕ`). Trailing `!` is punctuation (`shit!!` masks as `****!!`). Words
//! made only of digits and symbols are never masked (`455` is a number).
//!
//! URLs are not skipped, unlike in `autocorrect` and `emoji`: a listed word
//! between a URL's slashes and dots is masked like any other, or pasting a
//! link would be a way around the filter.
//!
//! A mask is one `*` per character of the matched text, separators
//! included: `s.h.i.t` becomes `*******`. Masking never lengthens the text.
//!
//! # Examples
//!
//! ```
//! use smolchat::transform::{Draft, Pipeline, TransformConfig};
//!
//! let config = TransformConfig { names: vec!["censor".into()], ..Default::default() };
//! let censor = Pipeline::from_config(&config).unwrap();
//! let run = |s: &str| censor.apply(Draft::new(s)).unwrap().text;
//!
//! assert_eq!(run("oh shit, a classic"), "oh ****, a classic");
//! assert_eq!(run("sh1iit and s.h.i.t"), "****** and *******");
//! assert_eq!(run("`shit` in code stays"), "`shit` in code stays");
//! ```

use std::ops::Range;
use std::sync::Arc;

use super::scan::FastMap;
use super::{CensorMode, ConfigError, Refusal};

/// The built-in list, in the `--censor-words` format.
const BUILT_IN: &str = include_str!("data/censor.txt");

/// Characters that may join single letters into one word: `s.h.i.t`.
const SEPARATORS: [char; 6] = [' ', '.', '-', '_', '*', '~'];

/// The censor, ready to run: a word list and what to do on a match.
#[derive(Clone, Debug)]
pub(crate) struct Censor {
    // An `Arc` because a pipeline is cloned into every connection's handle.
    words: Arc<WordList>,
    mode: CensorMode,
}

impl Censor {
    /// A censor over `list` (the text of a `--censor-words` file), or over
    /// the built-in list.
    pub(crate) fn new(list: Option<&str>, mode: CensorMode) -> Result<Self, ConfigError> {
        Ok(Censor {
            words: Arc::new(WordList::parse(list.unwrap_or(BUILT_IN))?),
            mode,
        })
    }

    /// Masks or refuses `prose`; `None` when nothing matched.
    pub(crate) fn apply(&self, prose: &str) -> Result<Option<String>, Refusal> {
        let found = self.words.find(prose);
        if found.is_empty() {
            return Ok(None);
        }
        if self.mode == CensorMode::Refuse {
            return Err(Refusal {
                transform: "censor",
                reason: "message contains a blocked word".into(),
            });
        }
        let mut out = String::with_capacity(prose.len());
        let mut copied = 0;
        for r in found {
            out.push_str(&prose[copied..r.start]);
            out.extend(prose[r.clone()].chars().map(|_| '*'));
            copied = r.end;
        }
        out.push_str(&prose[copied..]);
        Ok(Some(out))
    }
}

/// Listed words, keyed by their letters with repeats collapsed (`ass` is
/// `as`), each with how many times every letter must at least appear
/// (`[1, 2]`). Keying on the collapsed form makes `shiiiit` one lookup.
#[derive(Debug, Default)]
pub(crate) struct WordList {
    entries: FastMap<String, Vec<Vec<u32>>>,
    /// The shortest and longest key, in characters: other words are not
    /// looked up.
    shortest: usize,
    longest: usize,
    /// The first letter of every key: most words fail this test and skip
    /// the lookup.
    firsts: Vec<char>,
}

impl WordList {
    /// Reads a word list: one word per line, `#` to the end of a line is a
    /// comment, blank lines are ignored.
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut list = WordList::default();
        for (n, line) in text.lines().enumerate() {
            let word = line.split('#').next().unwrap_or_default().trim();
            if word.is_empty() {
                continue;
            }
            let problem = |problem| ConfigError::CensorWord {
                line: n + 1,
                word: word.to_owned(),
                problem,
            };
            if !word.chars().all(|c| is_word_char(c) || is_glue(c)) {
                return Err(problem("is not a single word of letters"));
            }
            let (units, words) = tokenize(word);
            if words.len() != 1 || !units.iter().any(|u| u.src.is_alphabetic()) {
                return Err(problem("has no letters"));
            }
            let mut key = String::new();
            let mut counts = Vec::new();
            collapse(&units, &mut key, &mut counts);
            let chars = key.chars().count();
            list.shortest = if list.entries.is_empty() {
                chars
            } else {
                list.shortest.min(chars)
            };
            list.longest = list.longest.max(chars);
            if let Some(first) = key.chars().next().filter(|c| !list.firsts.contains(c)) {
                list.firsts.push(first);
            }
            let mins = list.entries.entry(key).or_default();
            if !mins.contains(&counts) {
                mins.push(counts);
            }
        }
        if list.entries.is_empty() {
            return Err(ConfigError::EmptyWordList);
        }
        Ok(list)
    }

    /// The byte ranges of `s` to mask, in order and not overlapping.
    fn find(&self, s: &str) -> Vec<Range<usize>> {
        let (units, words) = tokenize(s);
        let mut found = Vec::new();
        let mut scratch = Scratch::default();
        let mut i = 0;
        while i < words.len() {
            // A chain: single letters, each joined to the next by one separator.
            let mut j = i;
            while j + 1 < words.len() && joined(s, &words[j], &words[j + 1]) {
                j += 1;
            }
            let chain = &units[words[i].units.start..words[j].units.end];
            if j > i && self.matches(chain, &mut scratch) {
                found.push(words[i].start..words[j].end);
            } else {
                for w in &words[i..=j] {
                    if let Some(r) = self.match_word(&units, w, &mut scratch) {
                        found.push(r);
                    }
                }
            }
            i = j + 1;
        }
        found
    }

    /// The range to mask if `w` is a listed word, trying it also without
    /// leading symbols (`@shit` is a mention of `shit`, not `ashit`).
    fn match_word(&self, units: &[Unit], w: &Word, scratch: &mut Scratch) -> Option<Range<usize>> {
        let u = &units[w.units.clone()];
        if self.matches(u, scratch) {
            return Some(w.start..w.end);
        }
        let lead = u
            .iter()
            .take_while(|u| matches!(u.src, '@' | '$' | '!'))
            .count();
        (lead > 0 && lead < u.len() && self.matches(&u[lead..], scratch))
            .then(|| u[lead].start..w.end)
    }

    /// Whether `units`, read as one word, is a listed word.
    fn matches(&self, units: &[Unit], scratch: &mut Scratch) -> bool {
        let Some(first) = units.first() else {
            return false;
        };
        if !self.firsts.contains(&first.ch) || !units.iter().any(|u| u.src.is_alphabetic()) {
            return false;
        }
        let runs = 1 + units.windows(2).filter(|w| w[0].ch != w[1].ch).count();
        if runs < self.shortest || runs > self.longest {
            return false;
        }
        let Scratch { key, counts } = scratch;
        collapse(units, key, counts);
        self.entries.get(key.as_str()).is_some_and(|mins| {
            mins.iter()
                .any(|m| counts.iter().zip(m).all(|(&c, &m)| repeats(c, m)))
        })
    }
}

/// Whether a letter typed `typed` times matches one listed `listed` times:
/// exactly, or as a deliberate stretch of three or more.
///
/// Found by running every word of an English dictionary through the built-in
/// list: with "at least as many" instead, `asses` masked `assess`.
fn repeats(typed: u32, listed: u32) -> bool {
    typed == listed || (typed >= 3 && typed >= listed)
}

/// Buffers reused across the lookups of one message.
#[derive(Default)]
struct Scratch {
    key: String,
    counts: Vec<u32>,
}

/// One letter of a word as the matcher reads it.
#[derive(Clone, Copy, Debug)]
struct Unit {
    /// The letter after folding case, width, accents and look-alikes.
    ch: char,
    /// The character as written.
    src: char,
    /// Where it starts in the text, in bytes.
    start: usize,
}

impl Unit {
    /// Where it ends in the text, in bytes.
    fn end(&self) -> usize {
        self.start + self.src.len_utf8()
    }
}

/// A word: its units and the byte range from its first to its last unit.
#[derive(Clone, Debug)]
struct Word {
    units: Range<usize>,
    start: usize,
    end: usize,
}

/// Letters, digits, and the symbols that stand in for letters.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '@' | '$' | '!')
}

/// Invisible characters that can hide inside a word: soft hyphen, zero-width
/// space, joiners, word joiner, BOM, and combining diacritical marks.
fn is_glue(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{300}'..='\u{36f}')
}

/// Splits `s` into words (with trailing `!` left out as punctuation).
fn tokenize(s: &str) -> (Vec<Unit>, Vec<Word>) {
    let mut units: Vec<Unit> = Vec::new();
    let mut words = Vec::new();
    let mut open: Option<usize> = None;
    let mut close = |units: &mut Vec<Unit>, open: &mut Option<usize>| {
        if let Some(first) = open.take() {
            while units.len() > first && units.last().is_some_and(|u| u.src == '!') {
                units.pop();
            }
            if units.len() > first {
                words.push(Word {
                    units: first..units.len(),
                    start: units[first].start,
                    end: units[units.len() - 1].end(),
                });
            }
        }
    };
    for (i, c) in s.char_indices() {
        if is_word_char(c) {
            open.get_or_insert(units.len());
            units.push(Unit {
                ch: fold(c),
                src: c,
                start: i,
            });
        } else if !(is_glue(c) && open.is_some()) {
            close(&mut units, &mut open);
        }
    }
    close(&mut units, &mut open);
    (units, words)
}

/// Whether two words are single letters joined by exactly one separator.
fn joined(s: &str, a: &Word, b: &Word) -> bool {
    let single = |w: &Word| w.units.len() == 1;
    let mut gap = s[a.end..b.start].chars();
    single(a)
        && single(b)
        && gap.next().is_some_and(|c| SEPARATORS.contains(&c))
        && gap.next().is_none()
}

/// Writes the collapsed key of `units`, and each key letter's repeat count.
fn collapse(units: &[Unit], key: &mut String, counts: &mut Vec<u32>) {
    key.clear();
    counts.clear();
    let mut last = None;
    for u in units {
        if last == Some(u.ch) {
            if let Some(n) = counts.last_mut() {
                *n = n.saturating_add(1);
            }
        } else {
            key.push(u.ch);
            counts.push(1);
            last = Some(u.ch);
        }
    }
}

/// Reads one character as the letter it stands for.
fn fold(c: char) -> char {
    let c = match c {
        _ if c.is_ascii() => c.to_ascii_lowercase(),
        // Fullwidth forms of ASCII (U+FF01..U+FF5E) sit at a fixed offset.
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0)
            .unwrap_or(c)
            .to_ascii_lowercase(),
        _ => c.to_lowercase().next().unwrap_or(c),
    };
    match c {
        'à'..='å' | '@' | '4' => 'a',
        'ç' => 'c',
        'è'..='ë' | '3' => 'e',
        // `1` and `!` stand for both `i` and `l`, so `i` and `l` are one letter.
        'ì'..='ï' | 'l' | '1' | '!' => 'i',
        'ñ' => 'n',
        'ò'..='ö' | 'ø' | '0' => 'o',
        'ù'..='ü' => 'u',
        'ý' | 'ÿ' => 'y',
        '$' | '5' => 's',
        '7' => 't',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(list: &str, s: &str) -> String {
        let c = Censor::new(Some(list), CensorMode::Mask).unwrap();
        c.apply(s).unwrap().unwrap_or_else(|| s.to_owned())
    }

    #[test]
    fn the_built_in_list_parses() {
        let list = WordList::parse(BUILT_IN).unwrap();
        assert!((30..=60).contains(
            &BUILT_IN
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count()
        ));
        assert!(list.longest >= 5);
    }

    #[test]
    fn list_words_collapse_to_keys_and_counts() {
        let list = WordList::parse("ass\nboob\nshit # comment\n\n  # only a comment\n").unwrap();
        assert_eq!(list.entries["as"], [vec![1, 2]]);
        assert_eq!(list.entries["bob"], [vec![1, 2, 1]]);
        assert_eq!(list.entries["shit"], [vec![1, 1, 1, 1]]);
    }

    #[test]
    fn bad_list_lines_are_named() {
        let err = |s| WordList::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("ok\nfuck off"),
            "censor word list, line 2: \"fuck off\" is not a single word of letters"
        );
        assert_eq!(
            err("f*ck"),
            "censor word list, line 1: \"f*ck\" is not a single word of letters"
        );
        assert_eq!(
            err("123"),
            "censor word list, line 1: \"123\" has no letters"
        );
        assert_eq!(err("# nothing\n\n"), "the censor word list holds no words");
    }

    #[test]
    fn folding_reads_look_alikes_as_letters() {
        let cases = [
            ('A', 'a'),
            ('Ｓ', 's'),
            ('ï', 'i'),
            ('L', 'i'),
            ('1', 'i'),
            ('!', 'i'),
            ('@', 'a'),
            ('$', 's'),
            ('0', 'o'),
            ('3', 'e'),
            ('7', 't'),
            ('İ', 'i'),
            ('ß', 'ß'),
            ('😀', '😀'),
        ];
        for (c, want) in cases {
            assert_eq!(fold(c), want, "{c}");
        }
    }

    #[test]
    fn a_double_letter_is_spelling_and_a_triple_is_a_stretch() {
        let cases = [
            ("asses", "assess", false),
            ("ass", "as", false),
            ("ass", "asss", true),
            ("shit", "shiit", false),
            ("shit", "shiiit", true),
            ("boob", "bob", false),
        ];
        for (listed, typed, masked) in cases {
            assert_eq!(mask(listed, typed) != typed, masked, "{listed} vs {typed}");
        }
    }

    #[test]
    fn masks_cover_exactly_the_matched_characters() {
        assert_eq!(mask("shit", "shit\u{200b}"), "****\u{200b}");
        assert_eq!(mask("shit", "sh\u{200b}it"), "*****");
        assert_eq!(mask("shit", "SHİT"), "****");
        assert_eq!(mask("shit", "shit!!!"), "****!!!");
        assert_eq!(mask("shit", "!!!shit"), "!!!****");
        assert_eq!(mask("shit", "s.h.i.t."), "*******.");
        assert_eq!(mask("scheiße", "Scheiße"), "*******");
    }

    #[test]
    fn a_chain_that_is_not_a_word_leaves_its_letters_alone() {
        assert_eq!(mask("ass", "a b c"), "a b c");
        // The whole chain is one word: "xass" is not listed.
        assert_eq!(mask("ass", "x a s s"), "x a s s");
        assert_eq!(mask("ass", "so a s s"), "so *****");
    }
}
