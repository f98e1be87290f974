//! Small character tests shared by the prose transforms: where a token
//! starts, and how long a URL is.
//!
//! Also the hash the transforms' tables use, [`FastMap`], and the bit set
//! of their cheap first tests, [`AsciiSet`].
//!
//! The transforms are hand-written scanners over `char`s rather than
//! regular expressions: the regex crate would add a few hundred kilobytes to
//! a binary meant for a Raspberry Pi, and every rule here is a one-character
//! look behind or a short look ahead that reads plainly as code.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map for the transforms' tables, hashed with FNV-1a.
///
/// The keys are a few bytes long, and SipHash, std's default, spent more time
/// per lookup than the scanning around it. SipHash defends a map against
/// keys chosen to collide, but these tables are built from our own data (or
/// the operator's word list) and never take keys from a message; a message
/// can only look keys up, which costs it one probe sequence of a table it
/// cannot change.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The 64-bit FNV-1a hash.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(FNV_OFFSET)
    }
}

/// Where an FNV-1a hash starts.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// An FNV-1a hash `hash` with one more byte.
pub(crate) fn fnv_step(hash: u64, b: u8) -> u64 {
    (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = fnv_step(self.0, b);
        }
    }
}

/// A set of ASCII characters, for the tables' cheap first tests. Two
/// `u64`s rather than a `u128`, whose shifts cost several instructions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AsciiSet([u64; 2]);

impl AsciiSet {
    /// Adds `c`, if it is ASCII.
    pub(crate) fn insert(&mut self, c: char) {
        if let Ok(b) = u8::try_from(c) {
            if b.is_ascii() {
                self.0[usize::from(b >> 6)] |= 1 << (b & 63);
            }
        }
    }

    /// Whether `c` was added.
    pub(crate) fn contains(&self, c: char) -> bool {
        u8::try_from(c)
            .is_ok_and(|b| b.is_ascii() && self.0[usize::from(b >> 6)] >> (b & 63) & 1 != 0)
    }
}

/// Whether a token may start after `prev` (the character before it, `None`
/// at the start of a piece of prose): after white space or an opening
/// bracket or quote, as in `(http://x)` or `"teh"`.
pub(crate) fn is_token_start(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(c) => c.is_whitespace() || matches!(c, '(' | '[' | '{' | '<' | '"' | '\'' | '“' | '‘'),
    }
}

/// [`is_token_start`] after the ASCII character `b`, for a loop over
/// bytes: a comparison or two instead of a call per byte.
#[inline]
pub(crate) const fn is_token_start_ascii(b: u8) -> bool {
    matches!(
        b,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | b'(' | b'[' | b'{' | b'<' | b'"' | b'\''
    )
}

/// Whether `s` may hold a URL at all, so that a piece of prose without one
/// (most chat) skips testing each word. [`url_len`] finds one only before
/// `://` or at `www.` in any case, which holds `w.` or `W.`; a false
/// alarm costs only those tests.
pub(crate) fn may_hold_url(s: &str) -> bool {
    // One vectorised search for the two bytes that matter (memchr), then
    // a look at their neighbours: cheaper than three substring searches
    // (each with its set-up) on a short message.
    let b = s.as_bytes();
    memchr::memchr2_iter(b':', b'.', b).any(|i| {
        if b[i] == b':' {
            b[i + 1..].starts_with(b"//")
        } else {
            i > 0 && b[i - 1].eq_ignore_ascii_case(&b'w')
        }
    })
}

/// Whether a URL may start at a word of which `s` holds `run` ASCII
/// letters or digits first: the test that lets almost every word skip
/// [`url_len`]. A URL starts with `www.`, or with a scheme, which either
/// ends at `:` right after those letters or goes on with another of its
/// characters (a digit, `+`, `.` or `-`).
pub(crate) fn may_be_url(s: &[u8], run: usize) -> bool {
    matches!(s.first(), Some(b'w' | b'W'))
        || matches!(s.get(run), Some(b':' | b'+' | b'.' | b'-' | b'0'..=b'9'))
}

/// The length in bytes of the URL that `s` starts with, if it starts with
/// one: `scheme://` or `www.` followed by at least one character, up to the
/// next white space. Called only where [`is_token_start`] holds, so
/// `xhttp://` is not a URL but `(http://` is.
pub(crate) fn url_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    // Slice patterns rather than comparisons of slices, which would call
    // `memcmp` for a few bytes.
    let after = if let [b'w' | b'W', b'w' | b'W', b'w' | b'W', b'.', ..] = b {
        4
    } else {
        // A scheme: a letter, then letters, digits, `+`, `.` or `-`
        // (RFC 3986), bounded so that a long word costs little.
        if !b.first()?.is_ascii_alphabetic() {
            return None;
        }
        let n = b
            .iter()
            .take(32)
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
            .count();
        if !matches!(b[n..], [b':', b'/', b'/', ..]) {
            return None;
        }
        n + 3
    };
    let rest = &s[after..];
    let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    (len > 0).then_some(after + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_run_to_white_space() {
        let cases = [
            ("http://x", Some(8)),
            ("https://example.com/a:b:) next", Some(25)),
            ("HTTPS://X.ORG", Some(13)),
            ("git+ssh://host/repo", Some(19)),
            ("www.example.com/teh", Some(19)),
            ("WWW.x", Some(5)),
            ("http://", None),
            ("http:// x", None),
            ("www.", None),
            ("mailto:bob@x.org", None),
            ("10:30", None),
            ("std::io", None),
            ("://x", None),
            ("", None),
            ("é://x", None),
        ];
        for (s, want) in cases {
            assert_eq!(url_len(s), want, "{s:?}");
        }
    }

    #[test]
    fn tokens_start_after_space_or_an_opening_mark() {
        for prev in [
            None,
            Some(' '),
            Some('\n'),
            Some('('),
            Some('"'),
            Some('\u{a0}'),
        ] {
            assert!(is_token_start(prev), "{prev:?}");
        }
        for prev in [
            Some('a'),
            Some('1'),
            Some('/'),
            Some(':'),
            Some('@'),
            Some('é'),
        ] {
            assert!(!is_token_start(prev), "{prev:?}");
        }
    }

    #[test]
    fn the_ascii_test_agrees_with_the_general_one() {
        for b in 0..=127u8 {
            assert_eq!(
                is_token_start_ascii(b),
                is_token_start(Some(char::from(b))),
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn may_be_url_never_misses_a_url() {
        let urls = [
            "http://x",
            "HTTPS://X.ORG",
            "git+ssh://host",
            "web2://x",
            "a-b.c://x",
            "x://y",
            "www.x.org",
            "WwW.x",
        ];
        for url in urls {
            assert!(url_len(url).is_some(), "{url}");
            let b = url.as_bytes();
            // The runs `emoji` and `autocorrect` pass: letters and digits,
            // or letters alone.
            let alnum = b.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
            let alpha = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            assert!(may_be_url(b, alnum) && may_be_url(b, alpha), "{url}");
        }
        assert!(!may_be_url(b"hello world", 5));
        assert!(!may_be_url(b"a", 1));
        assert!(!may_be_url(b"don't", 3));
        assert!(!may_be_url(b"teh,", 3));
    }

    #[test]
    fn may_hold_url_never_misses_a_url() {
        for s in ["see http://x", "www.x", "(WWW.x.org)", "a wWw.b", "x://y"] {
            assert!(may_hold_url(s), "{s}");
        }
        for s in ["", "plain text. more", "10:30 std::io", ":/ :/", "www"] {
            assert!(!may_hold_url(s), "{s}");
        }
    }

    proptest::proptest! {
        /// The byte search finds what the three substring searches find.
        #[test]
        fn may_hold_url_is_the_three_searches(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "w", "W", ".", ":", "/", "//", "a", " ", "é", "w.", "://",
            ]), 0..12),
        ) {
            let s = parts.concat();
            let searches = s.contains("://") || s.contains("w.") || s.contains("W.");
            proptest::prop_assert_eq!(may_hold_url(&s), searches, "{:?}", s);
        }
    }
}
