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
//! Cost: each byte is looked at once, and most cost a comparison or two:
//! after anything but white space or an opening mark, only a `:` before a
//! name can start something. The emoticons are matched as packed integers
//! and the shortcodes through a table hashed while the name is read, so a
//! message of 1000 faces costs no more than one of ordinary prose.
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

use super::scan::{self, AsciiSet, FastMap};

/// `emoticon emoji` per line.
const EMOTICONS: &str = include_str!("data/emoticons.txt");
/// `name emoji` per line.
const SHORTCODES: &str = include_str!("data/shortcodes.txt");

/// The longest shortcode name, in bytes, that the scanner reads.
const MAX_NAME: usize = 32;

/// The parsed tables.
struct Tables {
    emoticons: Faces,
    /// The first two bytes of every emoticon (all ASCII), as a bit set of
    /// second bytes for each first byte: most places fail this test and
    /// skip the lookup.
    pairs: Vec<AsciiSet>,
    shortcodes: Codes,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        // Through a map first, so that a face listed twice counts once.
        let emoticons: FastMap<_, _> = entries(EMOTICONS).collect();
        let mut pairs = vec![AsciiSet::default(); 128];
        for face in emoticons.keys() {
            if let &[first, second, ..] = face.as_bytes() {
                if first.is_ascii() {
                    pairs[usize::from(first)].insert(char::from(second));
                }
            }
        }
        Tables {
            emoticons: Faces::new(emoticons),
            pairs,
            // Through a map first too, for the same reason.
            shortcodes: Codes::new(entries(SHORTCODES).collect()),
        }
    })
}

/// The emoticons, grouped by first byte, longest first, each with its
/// bytes packed into a `u32` (faces are 2 to 4 ASCII bytes, which the
/// table tests check). Finding the face at a place is then a few integer
/// comparisons, where a hash map took a hash and a probe for each of the
/// three lengths.
struct Faces {
    by_first: Vec<Vec<Face>>,
}

/// One emoticon, as [`emoticon`] compares it with the text.
struct Face {
    bytes: u32,
    /// The bits of `bytes` that hold the face: `len` bytes' worth.
    mask: u32,
    len: usize,
    emoji: &'static str,
}

impl Faces {
    fn new(table: FastMap<&'static str, &'static str>) -> Self {
        let mut by_first: Vec<Vec<Face>> = (0..128).map(|_| Vec::new()).collect();
        for (face, emoji) in table {
            let b = face.as_bytes();
            // A face that is not 2 to 4 ASCII bytes is left out rather than
            // read wrong, and the table tests fail on the count.
            if !(face.is_ascii() && (2..=4).contains(&b.len())) {
                continue;
            }
            by_first[usize::from(b[0])].push(Face {
                bytes: pack(b),
                mask: u32::MAX >> (8 * (4 - b.len())),
                len: b.len(),
                emoji,
            });
        }
        for faces in &mut by_first {
            faces.sort_unstable_by_key(|f| std::cmp::Reverse(f.len));
        }
        Faces { by_first }
    }

    /// How many emoticons there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_first.iter().map(Vec::len).sum()
    }
}

/// The shortcodes, by name: open addressing on the FNV-1a hash of the
/// name, which [`shortcode`] works out as it reads the name, so that a
/// lookup costs that one pass and a comparison (a `HashMap` would hash the
/// name again).
struct Codes {
    /// A power of two long, and at most half full, so every probe ends.
    slots: Vec<Option<(&'static str, &'static str)>>,
}

impl Codes {
    fn new(table: FastMap<&'static str, &'static str>) -> Self {
        let mask = (2 * table.len()).next_power_of_two() - 1;
        let mut slots = vec![None; mask + 1];
        for (name, emoji) in table {
            let mut i = hash(name) as usize & mask;
            while slots[i].is_some() {
                i = (i + 1) & mask;
            }
            slots[i] = Some((name, emoji));
        }
        Codes { slots }
    }

    /// The emoji for `name`, whose [`hash`] is `hash`.
    fn get(&self, name: &[u8], hash: u64) -> Option<&'static str> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while let Some((n, emoji)) = self.slots[i] {
            // Byte by byte: names are a few bytes, shorter than the call
            // that comparing slices makes.
            if n.len() == name.len() && n.bytes().zip(name).all(|(a, &b)| a == b) {
                return Some(emoji);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// How many shortcodes there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// The FNV-1a hash of a shortcode's name, as [`shortcode`] works it out.
fn hash(name: &str) -> u64 {
    name.bytes().fold(scan::FNV_OFFSET, scan::fnv_step)
}

/// The first four bytes of `b` (fewer if it is shorter, padded with zeros)
/// as a little-endian `u32`.
fn pack(b: &[u8]) -> u32 {
    let mut word = [0; 4];
    let n = b.len().min(4);
    word[..n].copy_from_slice(&b[..n]);
    u32::from_le_bytes(word)
}

/// The `(from, emoji)` lines of a table text.
fn entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
}

/// An emoticon or shortcode found in a piece of prose: its byte range and
/// the emoji it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    start: usize,
    end: usize,
    emoji: &'static str,
}

/// Turns the emoticons and shortcodes in `prose` into emoji; `None` when
/// there were none. The pipeline calls [`find`] and [`replace`] instead.
#[cfg(test)]
pub(crate) fn apply(prose: &str) -> Option<String> {
    let mut hits = Vec::new();
    find(prose, &mut hits);
    (!hits.is_empty()).then(|| replace(prose, &hits))
}

/// The bytes that end a run of plain ASCII in [`find`]: any byte beyond
/// ASCII, `:`, and every byte after which a token may start.
static STOPS_A_RUN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = !c.is_ascii() || c == b':' || scan::is_token_start_ascii(c);
        b += 1;
    }
    t
};

/// Finds the emoticons and shortcodes in `prose`, in order, appending them
/// to `hits`, and returns the length `prose` would have with them turned
/// into emoji.
///
/// Finding is apart from [`replace`] so that the pipeline can add up the
/// growth of a whole message and build nothing when it would pass the size
/// limit: a screenful of `<3` then costs one scan and no output.
pub(crate) fn find(prose: &str, hits: &mut Vec<Hit>) -> usize {
    find_with(prose, hits, true)
}

/// [`find`], with the runs of plain bytes skipped at once or (a test's
/// reference) a byte at a time.
#[inline(always)]
fn find_with(prose: &str, hits: &mut Vec<Hit>, skip_runs: bool) -> usize {
    let tables = tables();
    let bytes = prose.as_bytes();
    let mut len = prose.len();
    let urls = scan::may_hold_url(prose);
    // The character before `i` (`None` at the start), and whether a token
    // may start after it, which is worked out once per character; or
    // whether an emoji was put in just before `i`, which the rules see
    // instead of the text it replaced.
    let mut prev: Option<char> = None;
    let mut open = true;
    let mut after_emoji = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // After anything but white space or an opening mark, only a
        // shortcode can start, and only at a `:` before its name: most
        // bytes end here.
        if !open && b.is_ascii() && (b != b':' || !bytes.get(i + 1).is_some_and(is_name_byte)) {
            // Each plain ASCII byte after this one that is no `:` and
            // starts no token would take this branch too, and only move
            // `prev` on: the run is skipped at once, a table load per byte.
            let mut j = i + 1;
            if skip_runs && !scan::is_token_start_ascii(b) {
                while bytes.get(j).is_some_and(|&c| !STOPS_A_RUN[usize::from(c)]) {
                    j += 1;
                }
            }
            let last = bytes[j - 1];
            prev = Some(char::from(last));
            open = scan::is_token_start_ascii(last);
            after_emoji = false;
            i = j;
            continue;
        }
        let rest = &prose[i..];
        // The rules in order: a URL, a shortcode, an emoticon.
        if urls && open && b.is_ascii_alphabetic() {
            let run = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
            if let Some(n) = scan::may_be_url(rest.as_bytes(), run)
                .then(|| scan::url_len(rest))
                .flatten()
            {
                prev = rest[..n].chars().next_back();
                open = scan::is_token_start(prev);
                after_emoji = false;
                i += n;
                continue;
            }
        }
        let hit = if b == b':' {
            // No emoji ends in a letter or digit (the table tests check),
            // so after one a shortcode may start, as at the start of the
            // text: saying so skips looking the emoji up in Unicode's
            // tables, which costs more than the rest of the shortcode.
            shortcode(tables, rest, if after_emoji { None } else { prev })
        } else {
            None
        };
        // Nor does an emoji end in white space, so none can start an
        // emoticon.
        let hit = hit.or_else(|| {
            (!after_emoji)
                .then(|| emoticon(tables, rest, prev))
                .flatten()
        });
        if let Some((n, emoji)) = hit {
            hits.push(Hit {
                start: i,
                end: i + n,
                emoji,
            });
            len = len - n + emoji.len();
            // No rule reads `prev` after an emoji: `after_emoji` stands for
            // it, since an emoji is not white space or an opening mark
            // either.
            open = false;
            after_emoji = true;
            i += n;
        } else {
            let c = rest.chars().next().unwrap_or_default();
            prev = Some(c);
            open = scan::is_token_start(prev);
            after_emoji = false;
            i += c.len_utf8();
        }
    }
    len
}

/// `prose` with the `hits` that [`find`] found in it turned into emoji.
pub(crate) fn replace(prose: &str, hits: &[Hit]) -> String {
    let len = hits.iter().fold(prose.len(), |len, h| {
        len - (h.end - h.start) + h.emoji.len()
    });
    let mut out = String::with_capacity(len);
    let mut copied = 0;
    for h in hits {
        if copied < h.start {
            out.push_str(&prose[copied..h.start]);
        }
        out.push_str(h.emoji);
        copied = h.end;
    }
    out.push_str(&prose[copied..]);
    out
}

/// A `:name:` shortcode at the start of `s`: its length and emoji.
fn shortcode(tables: &Tables, s: &str, prev: Option<char>) -> Option<(usize, &'static str)> {
    let b = s.as_bytes();
    if b.first() != Some(&b':') {
        return None;
    }
    // The name, hashed as it is read, for the lookup; `end` is where it
    // ends.
    let mut end = 1;
    let mut name_hash = scan::FNV_OFFSET;
    while let Some(&c) = b.get(end).filter(|c| is_name_byte(c)) {
        if end > MAX_NAME {
            return None;
        }
        name_hash = scan::fnv_step(name_hash, c);
        end += 1;
    }
    if end == 1 || b.get(end) != Some(&b':') {
        return None;
    }
    let left = match prev {
        None => true,
        Some(c) if c.is_ascii() => {
            c.is_ascii_whitespace() || matches!(c, '(' | '[' | '{' | '"' | '\'' | '*' | '_' | '~')
        }
        Some(c) => !c.is_alphanumeric(),
    };
    let len = end + 1;
    let right = match b.get(len) {
        None => true,
        Some(c) if c.is_ascii() => !c.is_ascii_alphanumeric(),
        Some(_) => !s[len..].starts_with(char::is_alphanumeric),
    };
    if !(left && right) {
        return None;
    }
    tables
        .shortcodes
        .get(&b[1..end], name_hash)
        .map(|e| (len, e))
}

/// Whether `c` may be in a shortcode's name.
fn is_name_byte(c: &u8) -> bool {
    NAME_BYTES[usize::from(*c)]
}

/// The bytes a shortcode's name may hold, worked out at compile time: the
/// scan asks about every byte of every name, and one load costs less than
/// the five ranges.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'+' | b'-');
        b += 1;
    }
    table
};

/// An emoticon standing alone at the start of `s`: its length and emoji.
fn emoticon(tables: &Tables, s: &str, prev: Option<char>) -> Option<(usize, &'static str)> {
    if !prev.is_none_or(char::is_whitespace) {
        return None;
    }
    let b = s.as_bytes();
    let &[first, second, ..] = b else {
        return None;
    };
    if !(first.is_ascii() && tables.pairs[usize::from(first)].contains(char::from(second))) {
        return None;
    }
    let word = pack(b);
    // Longest first, so `:-)` wins over `:-`; a face not followed by a
    // boundary gives way to a shorter one.
    tables.emoticons.by_first[usize::from(first)]
        .iter()
        .filter(|f| f.len <= b.len() && word & f.mask == f.bytes)
        .find_map(|f| {
            let after = s[f.len..].trim_start_matches(['.', ',', '!', '?']);
            (after.is_empty() || after.starts_with(char::is_whitespace)).then_some((f.len, f.emoji))
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

    #[test]
    fn no_emoji_ends_in_a_character_a_rule_looks_for() {
        // `find` relies on this after an emoji, for emoticons' emoji as
        // well as shortcodes'.
        for (from, emoji) in entries(EMOTICONS).chain(entries(SHORTCODES)) {
            let last = emoji.chars().next_back();
            assert!(
                !last.is_some_and(char::is_alphanumeric) && !scan::is_token_start(last),
                "{from}"
            );
        }
    }

    #[test]
    fn faces_are_found_longest_first_and_only_before_a_boundary() {
        let t = tables();
        let cases = [
            (":-)", Some((3, "🙂"))),
            (":-) x", Some((3, "🙂"))),
            (":-)!", Some((3, "🙂"))),
            (">:(", Some((3, "😠"))),
            (">:-(", Some((4, "😠"))),
            ("</3", Some((3, "💔"))),
            ("<3", Some((2, "❤️"))),
            ("<3.5", None),
            (":))", None),
            (":-", None),
            (":", None),
            ("<3\0", None),
            ("<", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(emoticon(t, s, None), want, "{s:?}");
            assert_eq!(emoticon(t, s, Some('a')), None, "{s:?}");
        }
    }

    #[test]
    fn find_counts_the_length_that_replace_builds() {
        let texts = [
            "",
            "plain",
            ":) hi <3",
            ":fire::fire:",
            ":heart: is longer than ❤️",
            "<3 <3 <3",
            ":+1::-1:",
            "http://x/:) :)",
            "a:) :)a :)",
            "😀:fire:",
        ];
        for text in texts {
            let mut hits = Vec::new();
            let len = find(text, &mut hits);
            let out = replace(text, &hits);
            assert_eq!(len, out.len(), "{text:?}");
            assert_eq!(
                apply(text).unwrap_or_else(|| text.to_owned()),
                out,
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        /// Skipping a run of plain bytes at once finds what reading them
        /// one at a time finds: emoticons, shortcodes, URLs, words, marks
        /// and characters beyond ASCII in any order.
        #[test]
        fn skipping_runs_finds_what_the_byte_loop_finds(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "word", " ", "\n", ":", ":)", ":-(", "<3", ":smile:", ":+1:", ":x", "(", "\"",
                "'", ".", "é", "😀", "https://x.org", "www.a.b", "w.", "`", "xD", ";)", ":p", "8)",
            ]), 0..16),
        ) {
            let s = parts.concat();
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let fast_len = find_with(&s, &mut fast, true);
            let slow_len = find_with(&s, &mut slow, false);
            proptest::prop_assert_eq!((fast_len, fast), (slow_len, slow), "{:?}", s);
        }
    }
}
