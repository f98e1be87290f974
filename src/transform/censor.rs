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
//! Cost: one pass over the text, a word at a time, into buffers reused for
//! the whole message. A word is looked up only if it is long enough and
//! its first two letters fit some listed word, which few do; a plain ASCII
//! word that fails those tests is passed over a byte at a time without
//! being read into the buffers; and a chain of single letters is read a
//! letter at a time and looked up once, at its end.
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

use super::scan::{AsciiSet, FastMap};
use super::{CensorMode, ConfigError, Refusal};

/// The built-in list, in the `--censor-words` format.
const BUILT_IN: &str = include_str!("data/censor.txt");

/// Characters that may join single letters into one word: `s.h.i.t`.
const SEPARATORS: [u8; 6] = *b" .-_*~";

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
    #[cfg(test)]
    pub(crate) fn apply(&self, prose: &str) -> Result<Option<String>, Refusal> {
        self.apply_with(prose, &mut Scratch::default())
    }

    /// [`Censor::apply`] with buffers that the caller keeps from one piece
    /// of prose to the next, so that a message allocates them once.
    pub(crate) fn apply_with(
        &self,
        prose: &str,
        scratch: &mut Scratch,
    ) -> Result<Option<String>, Refusal> {
        let found = self.words.find::<true>(prose, scratch);
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
    /// The first letter of every key, as a bit set for ASCII letters and a
    /// list for the others: most words fail this test and skip the lookup.
    ascii_firsts: AsciiSet,
    firsts: Vec<char>,
    /// The first two letters of every key, when both are ASCII: a bit set
    /// of second letters for each first one. Most words that pass the
    /// first test fail this one (`fire` starts like `fuck`, not `fi`).
    ascii_pairs: Vec<AsciiSet>,
}

impl WordList {
    /// Reads a word list: one word per line, `#` to the end of a line is a
    /// comment, blank lines are ignored.
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut list = WordList {
            ascii_pairs: vec![AsciiSet::default(); 128],
            ..WordList::default()
        };
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
            let mut words = Words::new(word);
            let mut units = Vec::new();
            let one_word = words.next_into(&mut units) && !words.next_into(&mut Vec::new());
            if !one_word || !units.iter().any(|u| u.src.is_alphabetic()) {
                return Err(problem("has no letters"));
            }
            let mut key = Key::default();
            units.iter().for_each(|u| key.push(u));
            let Key {
                letters, counts, ..
            } = key;
            let chars = counts.len();
            list.shortest = if list.entries.is_empty() {
                chars
            } else {
                list.shortest.min(chars)
            };
            list.longest = list.longest.max(chars);
            if let Some(first) = letters.chars().next().filter(|&c| !list.starts(c)) {
                if first.is_ascii() {
                    list.ascii_firsts.insert(first);
                } else {
                    list.firsts.push(first);
                }
            }
            let mut pair = letters.chars();
            if let (Some(a), Some(b)) = (pair.next(), pair.next()) {
                if a.is_ascii() && b.is_ascii() {
                    list.ascii_pairs[usize::from(a as u8)].insert(b);
                }
            }
            let mins = list.entries.entry(letters).or_default();
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
    ///
    /// One pass, a word at a time: a word of one letter may be part of a
    /// chain (`s.h.i.t`), which is carried along until a word that does not
    /// continue it, and then masked whole or not at all. Nothing is kept per
    /// word, and single letters take a short path, so a message of 2000 of
    /// them costs no more than one of 700 ordinary words.
    ///
    /// `SKIP` lets plain ASCII words that cannot be listed be passed over
    /// without reading them into units ([`Words::skip_unlisted`]); the
    /// tests compare the two ways.
    fn find<const SKIP: bool>(&self, s: &str, scratch: &mut Scratch) -> Vec<Range<usize>> {
        let Scratch { units, key, chain } = scratch;
        let mut found = Vec::new();
        let mut words = Words::new(s);
        loop {
            let letter = match words.next_letter() {
                Some(letter) => letter,
                None => {
                    if SKIP && words.skip_unlisted(self) {
                        // A word of two or more letters ends a chain, if
                        // there is one (`alone` is empty without one).
                        if chain.letters > 0 {
                            self.end_chain(chain, &mut found);
                        }
                        continue;
                    }
                    if !words.next_into(units) {
                        break;
                    }
                    let [letter] = units[..] else {
                        self.end_chain(chain, &mut found);
                        found.extend(self.match_word(units, key));
                        continue;
                    };
                    letter
                }
            };
            if !(chain.letters > 0 && joined(s, chain.end, letter.start)) {
                self.end_chain(chain, &mut found);
                chain.start = letter.start;
            }
            self.add_letter(chain, letter, key);
        }
        self.end_chain(chain, &mut found);
        found
    }

    /// Adds a word of one letter to the end of the chain.
    fn add_letter(&self, chain: &mut Chain, letter: Unit, key: &mut Key) {
        // The key is started only by a second letter: most single letters
        // (`a`, `I`, `3`) stand alone.
        match chain.letters {
            0 => chain.first = letter,
            1 => {
                chain.key.push(&chain.first);
                chain.key.push(&letter);
            }
            _ => chain.key.push(&letter),
        }
        chain.letters += 1;
        chain.end = letter.end();
        // The letter alone is a word only with a list that has one-letter
        // words; `matches` says no at once to the others.
        if self.matches(&[letter], key) {
            chain.alone.push(letter.start..letter.end());
        }
    }

    /// Masks a chain of two or more letters that reads as a listed word,
    /// else the letters in it that are listed words on their own; and
    /// starts a new, empty chain.
    fn end_chain(&self, chain: &mut Chain, found: &mut Vec<Range<usize>>) {
        if chain.letters > 1 {
            if self.holds(&chain.key) {
                found.push(chain.start..chain.end);
                chain.alone.clear();
            }
            chain.key.clear();
        }
        if !chain.alone.is_empty() {
            found.append(&mut chain.alone);
        }
        chain.letters = 0;
    }

    /// The range to mask if `units`, one word, is a listed word, trying it
    /// also without leading symbols (`@shit` is a mention of `shit`, not
    /// `ashit`).
    fn match_word(&self, units: &[Unit], key: &mut Key) -> Option<Range<usize>> {
        let end = units.last()?.end();
        if self.matches(units, key) {
            return Some(units[0].start..end);
        }
        let lead = units
            .iter()
            .take_while(|u| matches!(u.src, '@' | '$' | '!'))
            .count();
        (lead > 0 && lead < units.len() && self.matches(&units[lead..], key))
            .then(|| units[lead].start..end)
    }

    /// Whether `units`, read as one word, is a listed word. `key` is a
    /// buffer, reused so that no word allocates.
    fn matches(&self, units: &[Unit], key: &mut Key) -> bool {
        // A word has at least as many units as its key has letters, so the
        // two cheapest tests settle most words before any collapsing.
        let Some(first) = units.first() else {
            return false;
        };
        let second = || units.iter().map(|u| u.ch).find(|&c| c != first.ch);
        if !self.may_list(units.len(), first.ch, second) {
            return false;
        }
        key.clear();
        units.iter().for_each(|u| key.push(u));
        self.holds(key)
    }

    /// Whether a word of `len` units whose key starts with `first` may be
    /// a listed word, as far as its length and its key's first two letters
    /// can tell. `second` finds the key's second letter (the first unit
    /// that is not `first`; none when the key is one letter long), and is
    /// asked only when the first two tests pass.
    fn may_list(&self, len: usize, first: char, second: impl FnOnce() -> Option<char>) -> bool {
        if len < self.shortest || !self.starts(first) {
            return false;
        }
        match second() {
            None => self.shortest <= 1,
            Some(second) => self.may_follow(first, second),
        }
    }

    /// Whether the word that `key` was collapsed from is a listed word.
    fn holds(&self, key: &Key) -> bool {
        key.alpha
            && (self.shortest..=self.longest).contains(&key.counts.len())
            && key.letters.chars().next().is_some_and(|c| self.starts(c))
            && self.entries.get(key.letters.as_str()).is_some_and(|mins| {
                mins.iter()
                    .any(|m| key.counts.iter().zip(m).all(|(&c, &m)| repeats(c, m)))
            })
    }

    /// Whether some key starts with `a` then `b`, as far as the bit set of
    /// ASCII pairs can tell; other pairs are left to the lookup.
    fn may_follow(&self, a: char, b: char) -> bool {
        !(a.is_ascii() && b.is_ascii())
            || self
                .ascii_pairs
                .get(usize::from(a as u8))
                .is_some_and(|seconds| seconds.contains(b))
    }

    /// Whether some key starts with `c`.
    fn starts(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii_firsts.contains(c)
        } else {
            self.firsts.contains(&c)
        }
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

/// Calls `f` with this thread's [`Scratch`]: kept from one message to the
/// next, so that a message allocates none (a word longer than any before
/// it grows them; past a few KB they are freed again).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let r = f(&mut scratch);
            if scratch.units.capacity() > 256 || scratch.chain.alone.capacity() > 256 {
                *scratch = Scratch::default();
            }
            r
        }
        // Only if `f` itself censored (it does not): a scratch of its own.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Buffers for [`WordList::find`], reused from word to word, from one
/// piece of prose to the next and from message to message, so that no
/// word allocates.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The word being read.
    units: Vec<Unit>,
    key: Key,
    chain: Chain,
}

/// A word as the list is keyed: its letters with repeats collapsed, and how
/// many times each was typed in a row.
#[derive(Default)]
struct Key {
    letters: String,
    counts: Vec<u32>,
    last: Option<char>,
    /// Whether any unit is a letter as written: `455` is a number, not `ass`.
    alpha: bool,
}

impl Key {
    fn clear(&mut self) {
        self.letters.clear();
        self.counts.clear();
        self.last = None;
        self.alpha = false;
    }

    /// Adds the next unit of the word.
    fn push(&mut self, u: &Unit) {
        self.alpha |= u.src.is_alphabetic();
        if self.last == Some(u.ch) {
            if let Some(n) = self.counts.last_mut() {
                *n = n.saturating_add(1);
            }
        } else {
            self.letters.push(u.ch);
            self.counts.push(1);
            self.last = Some(u.ch);
        }
    }
}

/// Single letters joined by one separator each, as read so far: `s.h.i` of
/// `s.h.i.t`.
#[derive(Default)]
struct Chain {
    /// The byte range from the first letter to the last.
    start: usize,
    end: usize,
    letters: usize,
    first: Unit,
    /// The key of the letters read as one word, once there are two.
    key: Key,
    /// The letters that are listed words on their own, masked if the chain
    /// is not a word (only with a list of one-letter words).
    alone: Vec<Range<usize>>,
}

/// One letter of a word as the matcher reads it.
#[derive(Clone, Copy, Debug, Default)]
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

/// Letters, digits, and the symbols that stand in for letters.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '@' | '$' | '!')
}

/// Invisible characters that can hide inside a word: soft hyphen, zero-width
/// space, joiners, word joiner, BOM, and combining diacritical marks.
fn is_glue(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{300}'..='\u{36f}')
}

/// The words of a text, read one at a time into a buffer the caller
/// reuses: a word is a run of word characters (with invisible ones inside
/// it skipped), less any trailing `!`, which is punctuation.
struct Words<'a> {
    s: &'a str,
    /// Where reading goes on, in bytes.
    at: usize,
}

impl<'a> Words<'a> {
    fn new(s: &'a str) -> Self {
        Words { s, at: 0 }
    }

    /// Fills `units` with the next word; `false` when there is none.
    fn next_into(&mut self, units: &mut Vec<Unit>) -> bool {
        units.clear();
        let bytes = self.s.as_bytes();
        let mut at = self.at;
        while let Some(&b) = bytes.get(at) {
            let start = at;
            // Most text is ASCII: one table load per byte.
            let letter = ASCII_LETTERS[usize::from(b)];
            if letter != 0 {
                at += 1;
                units.push(Unit {
                    ch: char::from(letter),
                    src: char::from(b),
                    start,
                });
                continue;
            }
            if b.is_ascii() {
                // No ASCII character is invisible: this one ends the word.
                at += 1;
            } else {
                let c = self.s[start..].chars().next().unwrap_or_default();
                at += c.len_utf8();
                if is_word_char(c) {
                    units.push(Unit {
                        ch: fold(c),
                        src: c,
                        start,
                    });
                    continue;
                }
                if is_glue(c) && !units.is_empty() {
                    continue;
                }
            }
            if end_word(units) {
                self.at = at;
                return true;
            }
        }
        self.at = at;
        end_word(units)
    }

    /// Passes over the next word if it is plain ASCII, two or more
    /// characters long, and cannot be a listed word by the tests
    /// [`WordList::matches`] makes first ([`WordList::may_list`]);
    /// `false`, reading nothing, for any other word, which goes the long
    /// way. Most words of most messages are passed over here, a table load
    /// per byte, without a unit built.
    fn skip_unlisted(&mut self, list: &WordList) -> bool {
        let b = self.s.as_bytes();
        let start = self.at;
        let Some(&lead) = b.get(start) else {
            return false;
        };
        // A word with a leading symbol is tried again without it
        // (`match_word`); a byte beyond ASCII, or none of a word, is not
        // for this path.
        let first = ASCII_LETTERS[usize::from(lead)];
        if first == 0 || matches!(lead, b'@' | b'$' | b'!') {
            return false;
        }
        let mut end = start + 1;
        while b
            .get(end)
            .is_some_and(|&c| ASCII_LETTERS[usize::from(c)] != 0)
        {
            end += 1;
        }
        // A character beyond ASCII may carry the word on (a letter, an
        // invisible character).
        if b.get(end).is_some_and(|c| !c.is_ascii()) {
            return false;
        }
        // A trailing `!` is punctuation; the lead is not one, so a
        // character is left.
        let mut last = end;
        while b[last - 1] == b'!' {
            last -= 1;
        }
        let word = &b[start..last];
        // One letter may be part of a chain (`s.h.i.t`).
        if word.len() < 2 {
            return false;
        }
        let second = || {
            word.iter()
                .map(|&c| ASCII_LETTERS[usize::from(c)])
                .find(|&c| c != first)
                .map(char::from)
        };
        let unlisted = !list.may_list(word.len(), char::from(first), second);
        if unlisted {
            self.at = end;
        }
        unlisted
    }

    /// The next word, if it is one ASCII character: the letters of a chain
    /// (`s.h.i.t`, `a b c`) or the `3` of `<3`, read without the general
    /// loop of [`Words::next_into`], which they leave where it would have.
    /// Either way, the ASCII before the next word is passed over.
    fn next_letter(&mut self) -> Option<Unit> {
        let b = self.s.as_bytes();
        let mut at = self.at;
        while b
            .get(at)
            .is_some_and(|&c| c.is_ascii() && ASCII_LETTERS[usize::from(c)] == 0)
        {
            at += 1;
        }
        self.at = at;
        let src = *b.get(at)?;
        let ch = ASCII_LETTERS[usize::from(src)];
        // A lone `!` is punctuation, not a word.
        if ch == 0 || src == b'!' {
            return None;
        }
        // The character is the whole word if the text ends after it or
        // goes on with ASCII that is not a word character (none is
        // invisible), which `next_into` would read too.
        match b.get(at + 1) {
            None => self.at = at + 1,
            Some(&next) if next.is_ascii() && ASCII_LETTERS[usize::from(next)] == 0 => {
                self.at = at + 2;
            }
            Some(_) => return None,
        }
        Some(Unit {
            ch: char::from(ch),
            src: char::from(src),
            start: at,
        })
    }
}

/// Ends the word in `units` by dropping its trailing `!`; whether a word is
/// left.
fn end_word(units: &mut Vec<Unit>) -> bool {
    while units.last().is_some_and(|u| u.src == '!') {
        units.pop();
    }
    !units.is_empty()
}

/// Whether a word of one letter ending at `end` and one starting at
/// `start` are joined by exactly one separator (all of which are one byte).
fn joined(s: &str, end: usize, start: usize) -> bool {
    start == end + 1
        && s.as_bytes()
            .get(end)
            .is_some_and(|b| SEPARATORS.contains(b))
}

/// Reads one character as the letter it stands for.
fn fold(c: char) -> char {
    look_alike(match c {
        _ if c.is_ascii() => c.to_ascii_lowercase(),
        // Fullwidth forms of ASCII (U+FF01..U+FF5E) sit at a fixed offset.
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0)
            .unwrap_or(c)
            .to_ascii_lowercase(),
        _ => c.to_lowercase().next().unwrap_or(c),
    })
}

/// [`fold`] of each ASCII character that is a word character, and 0 for
/// the other bytes (all of those of characters beyond ASCII among them),
/// worked out at compile time: most text is ASCII, and one load costs less
/// than the tests in `is_word_char` and `fold`.
const ASCII_LETTERS: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 128 {
        // `is_word_char` for ASCII (a test checks the two agree), and
        // `fold`, which maps ASCII to ASCII, so the cast loses nothing.
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'@' | b'$' | b'!') {
            table[b] = look_alike(c.to_ascii_lowercase() as char) as u8;
        }
        b += 1;
    }
    table
};

/// The letter that a lowercase character stands for: the letter under an
/// accent, the letter a digit or symbol looks like, or itself.
const fn look_alike(c: char) -> char {
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

    #[test]
    fn the_ascii_table_agrees_with_is_word_char_and_fold() {
        for b in 0..128u8 {
            let c = char::from(b);
            let letter = ASCII_LETTERS[usize::from(b)];
            let got = (letter != 0).then_some(char::from(letter));
            assert_eq!(got, is_word_char(c).then(|| fold(c)), "{c:?}");
        }
        assert!(ASCII_LETTERS[128..].iter().all(|&l| l == 0));
    }

    #[test]
    fn a_list_of_one_letter_words_masks_letters_outside_a_word_chain() {
        assert_eq!(mask("x", "x y x"), "* y *");
        // The chain is `x.y`, which is listed, then `, ` ends it.
        assert_eq!(mask("x\nxy", "x.y, x"), "***, *");
        // The chain `x.y x` reads `xyx`, which is not.
        assert_eq!(mask("x\nxy", "x.y x"), "*.y *");
        assert_eq!(mask("a", "a.a"), "*.*");
        assert_eq!(mask("a\naa", "a.a"), "***");
    }

    proptest::proptest! {
        // Any text made of listed words, their disguises, near misses,
        // separators and characters beyond ASCII, under lists with and
        // without one-letter words: passing over words that cannot be
        // listed finds exactly what reading every word finds.
        #[test]
        fn passing_over_unlisted_words_finds_what_reading_them_all_finds(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "shit", "sh1t", "$hit", "@ss", "ass", "as", "assess", "a", "s", "h", "i", "t",
                "x", "y", "xy", "hell", "heil", "fuuuck", "455", "the", "quick", "fox", "Ｓhit",
                "shït", "sh\u{200b}it", "\u{308}", "é", "😀", " ", ".", "-", "_", "*", "~", ",",
                "!", "!!", "@", "$", "1", "\n",
            ]), 0..24),
            list in proptest::sample::select(vec![None, Some("x\nxy"), Some("a\naa"), Some("hell\nass\nfox")]),
        ) {
            let text = parts.concat();
            let words = WordList::parse(list.unwrap_or(BUILT_IN)).unwrap();
            let fast = words.find::<true>(&text, &mut Scratch::default());
            let slow = words.find::<false>(&text, &mut Scratch::default());
            proptest::prop_assert_eq!(fast, slow, "{:?}", text);
        }
    }

    #[test]
    fn the_short_path_for_letters_reads_the_words_the_long_one_does() {
        let texts = [
            "a b c",
            "s.h.i.t",
            "<3 <3",
            "a! b",
            "a!! !b",
            "x\u{200b}y z",
            "é a",
            "a",
            "!",
            "! a !",
            "aé b",
            "a😀b",
            "1 2 3",
            "@ $ !",
            "a\u{308} b",
            "ab c",
            "",
            " ",
            "a.",
            "a\u{ad}",
            "Ｓ a",
        ];
        let word = |units: &[Unit]| units.iter().map(|u| (u.src, u.start)).collect::<Vec<_>>();
        for text in texts {
            let mut units = Vec::new();
            let (mut long, mut want) = (Words::new(text), Vec::new());
            while long.next_into(&mut units) {
                want.push(word(&units));
            }
            // As `find` reads: the short path first, the long one if it
            // declines.
            let (mut short, mut got) = (Words::new(text), Vec::new());
            loop {
                if let Some(letter) = short.next_letter() {
                    got.push(word(&[letter]));
                } else if short.next_into(&mut units) {
                    got.push(word(&units));
                } else {
                    break;
                }
            }
            assert_eq!(got, want, "{text:?}");
        }
    }
}
