//! Small character tests shared by the prose transforms: where a token
//! starts, and how long a URL is.
//!
//! Also the hash the transforms' tables use: [`FastMap`].
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
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
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

/// The length in bytes of the URL that `s` starts with, if it starts with
/// one: `scheme://` or `www.` followed by at least one character, up to the
/// next white space. Called only where [`is_token_start`] holds, so
/// `xhttp://` is not a URL but `(http://` is.
pub(crate) fn url_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let after = if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"www.") {
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
        if !b[n..].starts_with(b"://") {
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
}
