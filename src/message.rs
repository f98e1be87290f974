//! The chat's nouns: validated room and user names, the message as it is
//! stored and sent, the code spans the `code` transform produces, and the
//! timestamp format.
//!
//! Everything here is a plain value: no I/O, no clock reads (the time of a
//! message is passed in), so the rules can be tested on their own. The HTTP
//! layer turns raw strings into these types at the edge and refuses what does
//! not validate; everything further in can trust them.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

/// Longest room name, in bytes (all allowed characters are ASCII).
pub const MAX_ROOM_LEN: usize = 64;
/// Longest user name, in characters.
pub const MAX_USER_CHARS: usize = 32;

/// A validated room name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
///
/// # Examples
///
/// ```
/// use smolchat::message::RoomName;
///
/// assert_eq!(RoomName::parse("kitchen").unwrap().as_str(), "kitchen");
/// assert!(RoomName::parse("no spaces").is_err());
/// assert!(RoomName::parse("").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// The room that `/events` and `/messages` use.
    pub fn lobby() -> Self {
        RoomName(Arc::from("lobby"))
    }

    /// Checks `s` against the room name rules.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > MAX_ROOM_LEN {
            return Err(NameError::RoomLength);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(NameError::RoomChars);
        }
        Ok(RoomName(Arc::from(s)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for RoomName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated user name: 1 to 32 characters after trimming surrounding
/// white space, no control characters.
///
/// # Examples
///
/// ```
/// use smolchat::message::UserName;
///
/// assert_eq!(UserName::parse("  ana ").unwrap().as_str(), "ana");
/// assert_eq!(UserName::parse("Zoë").unwrap().as_str(), "Zoë");
/// assert!(UserName::parse("a\nb").is_err());
/// assert!(UserName::parse(&"x".repeat(33)).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(Arc<str>);

impl UserName {
    /// The name of a poster who gave none.
    pub fn anonymous() -> Self {
        // Made once and shared: most posts from curl have no name.
        static ANONYMOUS: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        UserName(ANONYMOUS.get_or_init(|| Arc::from("anonymous")).clone())
    }

    /// Checks `s` against the user name rules: 1 to 32 characters after
    /// trimming, none of them a control character, an invisible one or one
    /// that changes the direction of text around it (so a name cannot look
    /// like another: `ana` and `ana` + a zero-width space are not both
    /// allowed), and no more than [`MAX_NAME_MARKS`] combining marks on one
    /// letter.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_USER_CHARS {
            return Err(NameError::UserLength);
        }
        if s.chars().any(char::is_control) {
            return Err(NameError::UserChars);
        }
        if s.chars().any(|c| invisible(c) || bidi_control(c)) {
            return Err(NameError::UserInvisible);
        }
        if longest_mark_run(s) > MAX_NAME_MARKS {
            return Err(NameError::UserMarks);
        }
        Ok(UserName(Arc::from(s)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for UserName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a room or user name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty or longer than 64 characters.
    RoomLength,
    /// A character outside `[A-Za-z0-9_.-]`.
    RoomChars,
    /// Empty or longer than 32 characters.
    UserLength,
    /// A control character.
    UserChars,
    /// An invisible or direction-changing character.
    UserInvisible,
    /// Too many combining marks on one letter.
    UserMarks,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::RoomLength => "room name must be 1 to 64 characters",
            NameError::RoomChars => "room name may only contain A-Z, a-z, 0-9, '_', '.' and '-'",
            NameError::UserLength => "user name must be 1 to 32 characters",
            NameError::UserChars => "user name must not contain control characters",
            NameError::UserInvisible => {
                "user name must not contain invisible or text-direction characters"
            }
            NameError::UserMarks => "user name has too many accents on one letter",
        })
    }
}

impl std::error::Error for NameError {}

/// Most combining marks a name may stack on one letter (real scripts need
/// one or two; "zalgo" text stacks dozens).
pub const MAX_NAME_MARKS: usize = 2;
/// Combining marks a text keeps on one letter; the rest are dropped.
pub const MAX_TEXT_MARKS: usize = 8;

/// Characters that show nothing: zero-width spaces and joiners' cousins,
/// the soft hyphen, the byte-order mark, Hangul fillers, the invisible
/// operators and U+2065 (unassigned between them and the bidi isolates,
/// and ignored by renderers like them). The zero-width joiner (U+200D) is
/// not among them: emoji sequences need it.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200C}'
            | '\u{2060}'..='\u{2065}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
    )
}

/// Characters that change the direction of the text around them:
/// embeddings, overrides, isolates and the direction marks.
fn bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// The combining diacritical marks that stacked text is made of (the
/// blocks U+0300, U+1AB0, U+1DC0, U+20D0 and U+FE20). Marks of other
/// scripts (Devanagari vowel signs, Arabic harakat) are left alone: they
/// never stack high.
fn stacking_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

fn longest_mark_run(s: &str) -> usize {
    let (mut run, mut longest) = (0, 0);
    for c in s.chars() {
        run = if stacking_mark(c) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// Why a message text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    /// Nothing but white space.
    Empty,
    /// A control character other than a line break or a tab.
    Control,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextError::Empty => "empty text",
            TextError::Control => "text contains control characters",
        })
    }
}

impl std::error::Error for TextError {}

/// A posted text as smolchat keeps it, or why it is refused.
///
/// - Line ends: CRLF and a lone CR become LF (as browsers and SSE read
///   them), so a stray `\r` can never end a line of the stream.
/// - Control characters other than LF and tab (NUL, escape, ...) are
///   refused: they have no place in a chat line.
/// - More than [`MAX_TEXT_MARKS`] combining marks on one letter are cut to
///   that many, so "zalgo" text cannot spill over the messages around it.
/// - Everything else is kept as sent: direction marks and overrides (the
///   page isolates each message, so they cannot reach past it), zero-width
///   joiners (emoji sequences), any script.
///
/// # Examples
///
/// ```
/// use smolchat::message::{clean_text, TextError};
///
/// assert_eq!(clean_text("a\r\nb\rc").unwrap(), "a\nb\nc");
/// assert_eq!(clean_text("nul\0"), Err(TextError::Control));
/// assert_eq!(clean_text(" \n "), Err(TextError::Empty));
/// let zalgo = format!("z{}", "\u{0301}".repeat(50));
/// assert_eq!(clean_text(&zalgo).unwrap().chars().count(), 1 + 8);
/// ```
pub fn clean_text(text: &str) -> Result<String, TextError> {
    // Most text has no carriage return: one copy, not two replacements.
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_owned()
    };
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    // ASCII (most chat) is checked a byte at a time, and has no marks.
    let ascii = text.is_ascii();
    let control = if ascii {
        text.bytes()
            .any(|b| b.is_ascii_control() && b != b'\n' && b != b'\t')
    } else {
        text.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    };
    if control {
        return Err(TextError::Control);
    }
    if ascii || longest_mark_run(&text) <= MAX_TEXT_MARKS {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut run = 0;
    for c in text.chars() {
        run = if stacking_mark(c) { run + 1 } else { 0 };
        if run <= MAX_TEXT_MARKS {
            out.push(c);
        }
    }
    Ok(out)
}

/// One piece of a message split by the `code` transform.
///
/// Serialized exactly as the SPEC shows:
/// `[{"text":"see "},{"code":"x + 1"},{"block":"fn main() {}","lang":"rust"}]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Span {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// Inline code, written between single backticks.
    Code {
        /// The code, without the backticks.
        code: String,
    },
    /// A fenced code block.
    Block {
        /// The code, without the fences.
        block: String,
        /// The language named after the opening fence, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lang: Option<String>,
    },
}

/// A moment in time, as whole seconds since the Unix epoch (UTC).
///
/// Rendered as RFC 3339 (`2026-11-22T10:00:00Z`) in JSON.
///
/// # Examples
///
/// ```
/// use smolchat::message::Timestamp;
///
/// assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
/// assert_eq!(Timestamp(1_795_341_600).to_string(), "2026-11-22T10:00:00Z");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time from the system clock; only the edges call this.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 20];
        if let Some(text) = self.four_digit_year(&mut buf) {
            return f.write_str(text);
        }
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 20];
        match self.four_digit_year(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
    }
}

impl Timestamp {
    /// Appends what `Display` writes (no quotes).
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        // Messages posted in the same second share their text: the last
        // one is kept per thread (the calendar arithmetic is ~200
        // instructions).
        thread_local! {
            static LAST: std::cell::Cell<Option<(i64, [u8; 20])>> = const { std::cell::Cell::new(None) };
        }
        if let Some((secs, text)) = LAST.get() {
            if secs == self.0 {
                out.extend_from_slice(&text);
                return;
            }
        }
        let text = self.four_digit_year_bytes();
        if let Some(text) = text {
            LAST.set(Some((self.0, text)));
        }
        match text {
            Some(text) => out.extend_from_slice(&text),
            None => {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
    }

    /// What `Display` writes, for the years 0 to 9999 (every clock's),
    /// written digit by digit: once per message, where the formatting
    /// machinery cost ~2,000 instructions.
    fn four_digit_year<'b>(&self, buf: &'b mut [u8; 20]) -> Option<&'b str> {
        *buf = self.four_digit_year_bytes()?;
        std::str::from_utf8(buf).ok()
    }

    /// [`Self::four_digit_year`] as bytes, without the UTF-8 check.
    fn four_digit_year_bytes(&self) -> Option<[u8; 20]> {
        let (y, m, d) = civil_from_days(self.0.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            return None;
        }
        let secs = self.0.rem_euclid(86_400);
        let two = |n: i64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        let [y0, y1] = two(y / 100);
        let [y2, y3] = two(y % 100);
        let [m0, m1] = two(m.into());
        let [d0, d1] = two(d.into());
        let [h0, h1] = two(secs / 3600);
        let [n0, n1] = two(secs / 60 % 60);
        let [s0, s1] = two(secs % 60);
        Some([
            y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', n0, n1, b':', s0, s1,
            b'Z',
        ])
    }
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`, exact for every `i64` day
/// count that fits a year in `i64`.
impl Timestamp {
    /// Parses what `Display` writes (`2026-11-22T10:00:00Z`), and nothing
    /// else.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::message::Timestamp;
    ///
    /// assert_eq!(Timestamp::parse("2026-11-22T10:00:00Z"), Some(Timestamp(1_795_341_600)));
    /// assert_eq!(Timestamp::parse("2026-11-22 10:00"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'Z'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            s.get(r)?.bytes().try_fold(0i64, |n, c| {
                c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
            })
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let t =
            Timestamp(days_from_civil(y, m as u32, d as u32) * 86_400 + hh * 3600 + mm * 60 + ss);
        (t.to_string() == s).then_some(t)
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm, the
/// inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A message as stored in history and sent to subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Per-room id: consecutive and strictly increasing.
    pub id: u64,
    /// The room it was posted to.
    pub room: RoomName,
    /// Who posted it.
    pub user: UserName,
    /// The text after transforms.
    pub text: String,
    /// When the server accepted it.
    pub time: Timestamp,
    /// The text split into code and prose, when it holds code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// Posted without an account on a server that has accounts: the name
    /// is whatever the poster typed (`"guest":true`, only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub guest: bool,
    /// Deleted by its author or an admin: its text and spans are gone
    /// (`"deleted":true`, only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub deleted: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_341_600, "2026-11-22T10:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(Timestamp(secs).to_string(), want, "{secs}");
            assert_eq!(
                serde_json::to_string(&Timestamp(secs)).unwrap(),
                format!("\"{want}\"")
            );
        }
    }

    /// The digit-by-digit writer and the formatting machinery agree on
    /// every year they both write, and past 9999 the machinery takes over.
    #[test]
    fn timestamps_render_alike_both_ways() {
        let formatted = |t: i64| {
            let (y, m, d) = civil_from_days(t.div_euclid(86_400));
            let secs = t.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
        };
        let first = -62_167_219_200; // 0000-01-01T00:00:00Z
        let last = 253_402_300_799; // 9999-12-31T23:59:59Z
        let mut t = first - 86_400 * 400;
        while t < last + 86_400 * 400 {
            assert_eq!(Timestamp(t).to_string(), formatted(t), "{t}");
            let mut bytes = Vec::new();
            Timestamp(t).write_to(&mut bytes);
            assert_eq!(bytes, formatted(t).as_bytes(), "{t}");
            t += 86_399 * 7 + 3_607;
        }
        // The same second again, the next, and back (the kept text).
        for t in [1_700_000_000, 1_700_000_000, 1_700_000_001, 1_700_000_000] {
            let mut bytes = Vec::new();
            Timestamp(t).write_to(&mut bytes);
            assert_eq!(bytes, formatted(t).as_bytes(), "{t}");
        }
        for t in [first, first - 1, last, last + 1, i64::MIN / 2, i64::MAX / 2] {
            assert_eq!(Timestamp(t).to_string(), formatted(t), "{t}");
        }
        assert_eq!(Timestamp(first).to_string(), "0000-01-01T00:00:00Z");
        assert_eq!(Timestamp(last).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp(last + 1).to_string(), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn room_names_follow_the_spec() {
        for ok in ["lobby", "a", "A-Z_0.9", &"r".repeat(64)] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a?", &"r".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_that_could_pass_for_another_are_refused() {
        let cases = [
            ("ana", Ok("ana")),
            ("Zoë", Ok("Zoë")),
            ("José", Ok("José")),
            ("علي", Ok("علي")),
            ("👩\u{200D}💻", Ok("👩\u{200D}💻")),
            ("ana\u{200B}", Err(NameError::UserInvisible)),
            ("\u{FEFF}ana", Err(NameError::UserInvisible)),
            ("an\u{00AD}a", Err(NameError::UserInvisible)),
            ("\u{202E}ana", Err(NameError::UserInvisible)),
            ("ana\u{2066}", Err(NameError::UserInvisible)),
            // Found by the `sse` fuzz target (docs/fuzzing.md): unassigned,
            // default-ignorable, shown as nothing.
            ("\u{2065}ana", Err(NameError::UserInvisible)),
            ("\u{200F}ana", Err(NameError::UserInvisible)),
            ("a\0na", Err(NameError::UserChars)),
            ("a\rna", Err(NameError::UserChars)),
            ("a\u{0301}\u{0302}", Ok("a\u{0301}\u{0302}")),
            ("a\u{0301}\u{0302}\u{0303}", Err(NameError::UserMarks)),
        ];
        for (input, want) in cases {
            let got = UserName::parse(input);
            assert_eq!(
                got.as_ref().map(UserName::as_str).map_err(|e| *e),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn texts_are_normalized_or_refused_by_rule() {
        let marks = |n| format!("e{}", "\u{0300}".repeat(n));
        let cases = [
            ("hi", Ok("hi".to_string())),
            ("a\r\nb", Ok("a\nb".into())),
            ("a\rb", Ok("a\nb".into())),
            ("tab\there", Ok("tab\there".into())),
            ("\u{202E}gnp.exe", Ok("\u{202E}gnp.exe".into())),
            (
                "👩\u{200D}💻 and \u{200B}",
                Ok("👩\u{200D}💻 and \u{200B}".into()),
            ),
            ("nul \0", Err(TextError::Control)),
            ("esc \u{1b}[31m", Err(TextError::Control)),
            ("a\u{85}b", Err(TextError::Control)),
            ("  \r\n\t", Err(TextError::Empty)),
            (&*marks(8), Ok(marks(8))),
            (&*marks(9), Ok(marks(8))),
            (
                &*format!("{} {}", marks(40), marks(3)),
                Ok(format!("{} {}", marks(8), marks(3))),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(clean_text(input), want, "{input:?}");
        }
    }

    #[test]
    fn each_ascii_character_is_judged_as_the_char_rules_say() {
        for b in 0..=127u8 {
            let c = char::from(b);
            let input = format!("a{c}b");
            let want = match c {
                '\r' => Ok("a\nb".to_string()),
                '\n' | '\t' => Ok(input.clone()),
                c if c.is_control() => Err(TextError::Control),
                _ => Ok(input.clone()),
            };
            assert_eq!(clean_text(&input), want, "{b:#04x}");
        }
    }

    #[test]
    fn timestamps_parse_back_from_what_they_print() {
        for t in [0, 1, 1_795_341_600, 951_782_400, 4_102_444_799, -86_400] {
            let ts = Timestamp(t);
            assert_eq!(Timestamp::parse(&ts.to_string()), Some(ts), "{ts}");
        }
        for bad in [
            "",
            "2026-02-30T00:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T24:00:00Z",
            "20x6-11-22T10:00:00Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_names_count_characters_not_bytes() {
        assert!(UserName::parse(&"é".repeat(32)).is_ok());
        assert!(UserName::parse(&"é".repeat(33)).is_err());
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse("tab\there").is_err());
    }

    #[test]
    fn spans_serialize_as_the_spec_shows() {
        let spans = vec![
            Span::Text {
                text: "see ".into(),
            },
            Span::Code {
                code: "x + 1".into(),
            },
            Span::Block {
                block: "fn main() {}".into(),
                lang: Some("rust".into()),
            },
            Span::Block {
                block: "plain".into(),
                lang: None,
            },
        ];
        assert_eq!(
            serde_json::to_string(&spans).unwrap(),
            r#"[{"text":"see "},{"code":"x + 1"},{"block":"fn main() {}","lang":"rust"},{"block":"plain"}]"#
        );
        let back: Vec<Span> =
            serde_json::from_str(&serde_json::to_string(&spans).unwrap()).unwrap();
        assert_eq!(back, spans);
    }

    #[test]
    fn messages_serialize_without_spans_when_there_is_no_code() {
        let m = Message {
            id: 42,
            room: RoomName::lobby(),
            user: UserName::parse("ana").unwrap(),
            text: "hi 🙂".into(),
            time: Timestamp(1_795_341_600),
            spans: None,
            guest: false,
            deleted: false,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":42,"room":"lobby","user":"ana","text":"hi 🙂","time":"2026-11-22T10:00:00Z","spans":null}"#
                .replace(r#","spans":null"#, "")
        );
    }
}
