//! The guard between the socket and async-h1's decoder: find the end of a
//! request head within a bound, refuse what the decoder would mishandle, and
//! hand it a sanitized head.
//!
//! async-h1 2.3 and http-types 2.12 are unmaintained and trip over hostile
//! input (see `../shared/notes/stack.md`): a non-ASCII header byte panics in
//! `Headers::insert`; a head line without a newline grows memory without
//! bound; the decoder's `BufReader` swallows pipelined requests; a
//! `Transfer-Encoding` other than exactly `chunked` is read as "no body"; the
//! last of duplicate `Content-Length`s wins; `Host` is pasted in front of the
//! path, so `Host: x/threads?` reroutes a request. This module makes each of
//! those impossible before async-h1 sees a byte:
//!
//! - [`find_end`] bounds the head at [`MAX_HEAD`] bytes, whatever the lines;
//! - [`parse`] refuses bytes outside printable ASCII (plus tab), ambiguous
//!   framing (CL with TE, repeated CL, any TE but `chunked`) and a `Host` that
//!   is not a plain authority, and works out the body framing itself;
//! - the decoder then gets a rebuilt head with no framing or `Expect`
//!   headers, from a buffer that holds nothing else, so it can neither read
//!   ahead into the next request nor start its `100 Continue` task on
//!   async-global-executor. The connection reads the body itself, bounded.
//!
//! HTTP/1.0 is served too (ApacheBench, nginx's default `proxy_pass`,
//! microcontrollers, shell scripts), although async-h1's decoder refuses
//! it: the guard rebuilds a 1.0 head as the 1.1 head that means the same
//! (a `Host` when the client sent none, `Connection: close` unless it asked
//! for `keep-alive`) and remembers the version in [`Head::version`], so the
//! connection frames its answer for 1.0 (a length, or the end of the
//! connection; never chunks). A 1.0 request cannot carry a chunked body,
//! and a 1.0 post must say its length (RFC 9112 sections 6.1 and 6.3).
//!
//! Everything here is a pure function over bytes.

/// Request heads must be shorter than this, request line and headers
/// together, both as sent and as rebuilt for async-h1 (whose own limit it
/// is): rebuilding can lengthen a head (bare LF becomes CRLF, `X:y`
/// becomes `X: y`).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields accepted.
pub const MAX_HEADERS: usize = 64;

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: answered with a length or by closing, never chunked.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// The authority a request without `Host` is built with (HTTP/1.0 only;
/// 1.1 requires the header). Only its path and query route a request.
pub const DEFAULT_HOST: &str = "localhost";

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed the guard.
#[derive(Debug)]
pub struct Head {
    /// The request method, as sent.
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client asked for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The connection closes after this request: the client sent
    /// `Connection: close`, or spoke HTTP/1.0 without `keep-alive`.
    pub close: bool,
    /// HTTP/1.0 or 1.1, as sent.
    pub version: Version,
    /// The client sent a `Host` (a 1.0 request may not have).
    pub has_host: bool,
    /// The head rebuilt for async-h1 as HTTP/1.1: same request line and
    /// fields, minus `Content-Length`, `Transfer-Encoding` and `Expect`;
    /// for a 1.0 request with a `Host` ([`DEFAULT_HOST`] if it sent none)
    /// and `Connection: close` when it did not ask to keep the connection.
    pub sanitized: Vec<u8>,
    /// Where each field of `sanitized` is: its name from the first offset
    /// to the second minus 2 (`: `), its value from there to the third.
    spans: Vec<[u16; 3]>,
}

impl Head {
    /// The fields of [`sanitized`](Self::sanitized), as (name, value), in
    /// order: found where the guard wrote them, not parsed again.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        // Only printable ASCII got into it: one check makes it a `str`.
        let text = std::str::from_utf8(&self.sanitized).unwrap_or_default();
        self.spans.iter().map(move |&[name, value, end]| {
            let at = |a: u16, b: u16| text.get(a as usize..b as usize).unwrap_or_default();
            (at(name, value.saturating_sub(2)), at(value, end))
        })
    }

    /// The target as the URL is built from it: `OPTIONS *` asks about
    /// the server, and the router answers OPTIONS the same on every path.
    pub fn url_target(&self) -> &str {
        url_target(&self.target)
    }
}

/// See [`Head::url_target`]: async-h1 cannot build a URL from `*`.
fn url_target(target: &str) -> &str {
    if target == "*" {
        "/"
    } else {
        target
    }
}

/// Why a head was refused. Each maps to a status and a short message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`] fields.
    TooLarge,
    /// A byte outside printable ASCII and tab.
    BadByte,
    /// Not an HTTP/1.x request head.
    Malformed,
    /// Neither HTTP/1.0 nor HTTP/1.1.
    Version,
    /// No `Host`, several, or one that is not `host[:port]`.
    BadHost,
    /// A request target that is neither `/path`, `*` nor `http(s)://...`.
    BadTarget,
    /// `Content-Length` repeated, not a number, or sent with `Transfer-Encoding`.
    AmbiguousLength,
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding,
    /// An `Expect` other than `100-continue`.
    BadExpect,
    /// `Transfer-Encoding` in an HTTP/1.0 request, which has no chunks.
    EncodingOnHttp10,
    /// An HTTP/1.0 post without `Content-Length`.
    LengthRequired,
}

impl HeadError {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Version => 505,
            HeadError::UnsupportedEncoding => 501,
            HeadError::BadExpect => 417,
            HeadError::LengthRequired => 411,
            _ => 400,
        }
    }

    /// What the client is told, lowercase, no trailing period.
    pub fn message(self) -> &'static str {
        match self {
            HeadError::TooLarge => "request head too large (limit 8 KiB and 64 fields)",
            HeadError::BadByte => "request head contains a byte outside printable ascii; percent-encode non-ascii values",
            HeadError::Malformed => "malformed request head",
            HeadError::Version => "only HTTP/1.1 and HTTP/1.0 are supported",
            HeadError::BadHost => "missing or invalid host header",
            HeadError::BadTarget => "invalid request target",
            HeadError::AmbiguousLength => "ambiguous or invalid content-length",
            HeadError::UnsupportedEncoding => "only transfer-encoding: chunked is supported",
            HeadError::BadExpect => "only expect: 100-continue is supported",
            HeadError::EncodingOnHttp10 => "transfer-encoding is not allowed in HTTP/1.0",
            HeadError::LengthRequired => "an HTTP/1.0 post needs a content-length",
        }
    }
}

/// Finds the end of the head in `buf`: the length up to and including the
/// blank line. `Ok(None)` means "need more bytes"; once [`MAX_HEAD`] bytes
/// hold no blank line the head is refused, however it is split into lines.
///
/// # Examples
///
/// ```
/// use smolchat::http::head::{find_end, HeadError, MAX_HEAD};
///
/// assert_eq!(find_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET"), Ok(Some(27)));
/// assert_eq!(find_end(b"GET / HTTP/1.1\r\nHo"), Ok(None));
/// assert_eq!(find_end(&vec![b'a'; MAX_HEAD + 1]), Err(HeadError::TooLarge));
/// ```
pub fn find_end(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    // Accept bare LF line ends as RFC 9112 allows; httparse does too.
    let mut i = 0;
    while let Some(off) = window[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if window.get(next) == Some(&b'\n') {
            return Ok(Some(next + 1));
        }
        if window.get(next) == Some(&b'\r') && window.get(next + 1) == Some(&b'\n') {
            return Ok(Some(next + 2));
        }
        i = next;
    }
    if buf.len() >= MAX_HEAD {
        Err(HeadError::TooLarge)
    } else {
        Ok(None)
    }
}

/// Whether `buf` holds a byte no request head may contain. Checked on every
/// read, so a TLS handshake or binary junk is refused at once instead of
/// waiting for a blank line that never comes.
///
/// # Examples
///
/// ```
/// use smolchat::http::head::has_bad_byte;
///
/// assert!(!has_bad_byte(b"GET / HTTP/1.1\r\n"));
/// assert!(has_bad_byte(b"\x16\x03\x01"));
/// ```
pub fn has_bad_byte(buf: &[u8]) -> bool {
    buf.iter()
        .any(|&b| !(b == b'\t' || b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b)))
}

/// Number of bytes of blank lines before the request line, which RFC 9112
/// says a server should ignore (some clients send a CRLF after a POST body).
pub fn leading_blank_lines(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Checks a complete head (as delimited by [`find_end`]) and works out its
/// framing.
///
/// # Examples
///
/// ```
/// use smolchat::http::head::{parse, Framing, HeadError};
///
/// let h = parse(b"POST /messages HTTP/1.1\r\nHost: pi:8080\r\nContent-Length: 5\r\n\r\n").unwrap();
/// assert_eq!(h.framing, Framing::Length(5));
/// assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nX: caf\xc3\xa9\r\n\r\n").unwrap_err(), HeadError::BadByte);
/// assert_eq!(parse(b"GET /public HTTP/1.1\r\nHost: x/threads?\r\n\r\n").unwrap_err(), HeadError::BadHost);
/// ```
pub fn parse(head: &[u8]) -> Result<Head, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    if has_bad_byte(head) {
        return Err(HeadError::BadByte);
    }
    // Fields left uninitialised for httparse to fill: initialising all 64
    // first cost more than parsing the few a request has.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut fields) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(HeadError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => return Err(HeadError::Malformed),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(HeadError::Version),
    };
    let http10 = version == Version::Http10;
    let target_ok =
        target.starts_with('/') || (target == "*" && method == "OPTIONS") || valid_absolute(target);
    if !target_ok {
        return Err(HeadError::BadTarget);
    }

    let mut host = None;
    let mut length = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut sanitized = Vec::with_capacity(head.len());
    let mut spans = Vec::with_capacity(req.headers.len() + 2);
    let mut kept = 0;
    for part in [method, " ", url_target(target), " HTTP/1.1\r\n"] {
        sanitized.extend_from_slice(part.as_bytes());
    }
    // Only printable ASCII got this far (`has_bad_byte`): one check makes
    // the whole head a `str`, and each value is a slice of it, found by
    // where httparse's slice of `head` starts.
    let text = std::str::from_utf8(head).map_err(|_| HeadError::BadByte)?;
    for f in req.headers.iter() {
        let start = (f.value.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
        let value = text
            .get(start..start.wrapping_add(f.value.len()))
            .ok_or(HeadError::BadByte)?
            .trim();
        let name = f.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() || !valid_authority(value) {
                return Err(HeadError::BadHost);
            }
            host = Some(());
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::AmbiguousLength);
            }
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| HeadError::AmbiguousLength)?,
            );
            continue;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(HeadError::UnsupportedEncoding);
            }
            chunked = true;
            continue;
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(HeadError::BadExpect);
            }
            // A 1.0 client cannot know `100 Continue`: RFC 9110 says to
            // ignore its expectation.
            expect_continue = !http10;
            continue;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        add_field(&mut sanitized, &mut spans, name, value);
        kept += 1;
    }
    if http10 {
        if host.is_none() {
            add_field(&mut sanitized, &mut spans, "Host", DEFAULT_HOST);
            kept += 1;
        }
        // HTTP/1.0 closes after each response unless asked otherwise; the
        // rebuilt 1.1 head says so.
        if !keep_alive && !close {
            add_field(&mut sanitized, &mut spans, "Connection", "close");
            kept += 1;
        }
        close |= !keep_alive;
    }
    sanitized.extend_from_slice(b"\r\n");
    // async-h1 refuses a head of MAX_HEAD bytes or more as a malformed
    // request (400); the client should hear that its head is too large.
    if sanitized.len() >= MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    // The same for the number of fields: a 1.0 head of 63 or 64 fields
    // gains `Host` and `Connection`, and the rebuilt head must still parse
    // within MAX_HEADERS (the request is built from it).
    if kept > MAX_HEADERS {
        return Err(HeadError::TooLarge);
    }
    if host.is_none() && !http10 {
        return Err(HeadError::BadHost);
    }
    if http10 && chunked {
        return Err(HeadError::EncodingOnHttp10);
    }
    if http10 && method == "POST" && length.is_none() {
        return Err(HeadError::LengthRequired);
    }
    let framing = match (length, chunked) {
        (Some(_), true) => return Err(HeadError::AmbiguousLength),
        (Some(0), false) | (None, false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
    };
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        framing,
        expect_continue,
        close,
        version,
        has_host: host.is_some(),
        sanitized,
        spans,
    })
}

/// Writes `name: value` CRLF into a sanitized head, and where it is into
/// `spans` (within [`MAX_HEAD`], which `parse` checks after: a longer head
/// is refused before its spans are read).
fn add_field(sanitized: &mut Vec<u8>, spans: &mut Vec<[u16; 3]>, name: &str, value: &str) {
    let at = |n: usize| n.min(u16::MAX as usize) as u16;
    let start = sanitized.len();
    sanitized.extend_from_slice(name.as_bytes());
    sanitized.extend_from_slice(b": ");
    let value_start = sanitized.len();
    sanitized.extend_from_slice(value.as_bytes());
    spans.push([at(start), at(value_start), at(sanitized.len())]);
    sanitized.extend_from_slice(b"\r\n");
}

/// An absolute-form target, `http(s)://host[:port]...`, becomes the request
/// URL as it is, so it must parse as one, or async-h1 would refuse it in the
/// URL parser's words. Its authority follows the `Host` rule first: the URL
/// parser is only ever handed a plain ASCII host (with a percent-encoded
/// one, `http://A%C3%A9/`, idna_adapter 1.0.0 trips a debug assertion).
fn valid_absolute(target: &str) -> bool {
    let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    valid_authority(&rest[..end]) && http_types::Url::parse(target).is_ok()
}

/// `host[:port]`: letters, digits, `-._~`, IPv6 brackets and colons; nothing
/// that could end the authority of the URL async-h1 builds from it. And a
/// URL must build from it (no stray bracket or colon, a port that fits 16
/// bits, an IPv4 address in range), or async-h1 would refuse the request
/// with the URL parser's words instead of ours.
fn valid_authority(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'[' | b']')
        })
        && with_base_url(v, |_| ()).is_some()
}

/// `f` of `http://{authority}/` as a URL, if one builds from it. The last
/// one is remembered per thread: nearly every request a server gets names
/// the same host, and the URL parser's host rules (IPv4 forms, IDNA,
/// ports) cost more than the rest of the head. `f` borrows it, so a check
/// costs no copy.
pub(crate) fn with_base_url<R>(
    authority: &str,
    f: impl FnOnce(&http_types::Url) -> R,
) -> Option<R> {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(String, http_types::Url)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if !matches!(&*last, Some((a, _)) if a == authority) {
            let mut full = String::with_capacity(8 + authority.len());
            full.push_str("http://");
            full.push_str(authority);
            full.push('/');
            let url = http_types::Url::parse(&full).ok()?;
            *last = Some((authority.to_owned(), url));
        }
        last.as_ref().map(|(_, url)| f(url))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    #[test]
    fn the_end_is_found_however_the_head_is_split() {
        let full = head(&["GET / HTTP/1.1", "Host: x"]);
        for cut in 0..full.len() {
            assert_eq!(find_end(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(find_end(&full), Ok(Some(full.len())));
        assert_eq!(find_end(b"GET / HTTP/1.1\nHost: x\n\nrest"), Ok(Some(24)));
    }

    /// Found by the `head` fuzz target (docs/fuzzing.md): an HTTP/1.0 head
    /// of 63 fields without `Host` passed the guard, and its rebuilt copy,
    /// with `Host` and `Connection` added, had 65: more than the request
    /// can be built from (a 400 for a head the guard had accepted).
    #[test]
    fn regression_a_10_head_that_gains_fields_past_the_limit_is_too_large() {
        let with = |n: usize| {
            let mut lines = vec!["GET / HTTP/1.0".to_string()];
            lines.extend((0..n).map(|i| format!("X-{i}: v")));
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            head(&lines)
        };
        assert_eq!(parse(&with(63)).unwrap_err(), HeadError::TooLarge);
        assert_eq!(parse(&with(64)).unwrap_err(), HeadError::TooLarge);
        let h = parse(&with(62)).unwrap();
        assert!(crate::http::conn::build_request(h.sanitized.clone()).is_ok());
        assert_eq!(parse(&h.sanitized).unwrap().sanitized, h.sanitized);
    }

    #[test]
    fn regression_a_head_line_with_no_newline_is_cut_at_the_limit() {
        assert_eq!(find_end(&vec![b'x'; MAX_HEAD - 1]), Ok(None));
        assert_eq!(find_end(&vec![b'x'; MAX_HEAD]), Err(HeadError::TooLarge));
        assert_eq!(find_end(&vec![b'x'; 1 << 20]), Err(HeadError::TooLarge));
    }

    #[test]
    fn regression_non_ascii_and_control_bytes_are_refused() {
        for bad in [
            &b"X: caf\xc3\xa9"[..],
            b"X: \x80",
            b"X: a\x00b",
            b"X: \x7f",
            b"X: a\x1bb",
        ] {
            let mut h = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
            h.extend_from_slice(bad);
            h.extend_from_slice(b"\r\n\r\n");
            assert_eq!(parse(&h).unwrap_err(), HeadError::BadByte, "{bad:?}");
        }
        assert!(parse(&head(&["GET / HTTP/1.1", "Host: x", "X: tab\there"])).is_ok());
    }

    #[test]
    fn regression_host_cannot_change_the_route() {
        for host in ["x/threads?", "x?y", "x#y", "u@x", "x\\y", "x y", ""] {
            let h = head(&["GET /public HTTP/1.1", &format!("Host: {host}")]);
            assert!(parse(&h).is_err(), "{host:?}");
        }
        for host in ["localhost", "pi.local:8080", "[::1]:80", "10.0.0.2"] {
            assert!(
                parse(&head(&["GET / HTTP/1.1", &format!("Host: {host}")])).is_ok(),
                "{host}"
            );
        }
        assert_eq!(
            parse(&head(&["GET / HTTP/1.1"])).unwrap_err(),
            HeadError::BadHost
        );
        assert_eq!(
            parse(&head(&["GET / HTTP/1.1", "Host: a", "Host: b"])).unwrap_err(),
            HeadError::BadHost
        );
    }

    /// Found by the `head` fuzz target (docs/fuzzing.md): `Host: .[::1]:80`
    /// passed the guard, then async-h1 could not build a URL from it and
    /// answered "malformed request: invalid international domain name".
    #[test]
    fn regression_a_host_no_url_can_be_built_from_is_refused() {
        for host in [
            ".[::1]:80",
            "[",
            "[::1",
            "a]",
            ":",
            "a:b:c",
            "x:99999",
            "1.2.3.999",
        ] {
            let h = head(&["GET / HTTP/1.1", &format!("Host: {host}")]);
            assert_eq!(
                parse(&h).map(|h| h.target),
                Err(HeadError::BadHost),
                "{host:?}"
            );
        }
        for host in ["[::1]", "x:65535", "0x7f.1", "a_b.local:80"] {
            let h = parse(&head(&["GET / HTTP/1.1", &format!("Host: {host}")])).unwrap();
            assert!(
                crate::http::conn::build_request(h.sanitized).is_ok(),
                "{host:?}"
            );
        }
    }

    /// Found by the `head` fuzz target (docs/fuzzing.md): the target
    /// `http://?x.events` passed the guard, then async-h1 could not build
    /// a URL from it and answered "malformed request: empty host".
    #[test]
    fn regression_an_absolute_target_no_url_can_be_built_from_is_refused() {
        for target in [
            "http://?x.events",
            "http://",
            "https://[/",
            "http://x:99999/",
        ] {
            let h = head(&[&format!("GET {target} HTTP/1.1"), "Host: x"]);
            assert_eq!(
                parse(&h).map(|h| h.target),
                Err(HeadError::BadTarget),
                "{target:?}"
            );
        }
        let h = parse(&head(&["GET http://x/events?since=1 HTTP/1.1", "Host: x"])).unwrap();
        let req = crate::http::conn::build_request(h.sanitized).unwrap();
        assert_eq!(req.url().as_str(), "http://x/events?since=1");
    }

    /// Found by the `head` fuzz target's long run (docs/fuzzing.md): the
    /// guard handed `http://A%C3%A9/` to the URL parser, whose idna adapter
    /// asserts that ASCII reaching it is lowercase: a panic in debug builds
    /// (and in async-h1's own parse before the guard looked at the URL).
    #[test]
    fn regression_a_percent_encoded_host_in_the_target_is_refused_unparsed() {
        for target in [
            "http://A%C3%A9/",
            "http://cA%BB/x",
            "https://u@x/",
            "http://x\\y/",
        ] {
            let h = head(&[&format!("GET {target} HTTP/1.1"), "Host: x"]);
            assert_eq!(
                parse(&h).map(|h| h.target),
                Err(HeadError::BadTarget),
                "{target:?}"
            );
        }
        for target in [
            "http://X/",
            "https://Pi.local:8080/rooms?since=%C3%A9",
            "http://[::1]",
        ] {
            let h = head(&[&format!("GET {target} HTTP/1.1"), "Host: x"]);
            assert_eq!(parse(&h).map(|h| h.target).as_deref(), Ok(target));
        }
    }

    #[test]
    fn regression_framing_must_be_unambiguous() {
        let cases: &[(&[&str], Result<Framing, HeadError>)] = &[
            (&["Content-Length: 5"], Ok(Framing::Length(5))),
            (&["Content-Length: 0"], Ok(Framing::None)),
            (&[], Ok(Framing::None)),
            (&["Transfer-Encoding: chunked"], Ok(Framing::Chunked)),
            (&["Transfer-Encoding: Chunked"], Ok(Framing::Chunked)),
            (
                &["Content-Length: 5", "Content-Length: 5"],
                Err(HeadError::AmbiguousLength),
            ),
            (
                &["Content-Length: 5", "Content-Length: 6"],
                Err(HeadError::AmbiguousLength),
            ),
            (&["Content-Length: 5, 5"], Err(HeadError::AmbiguousLength)),
            (&["Content-Length: +5"], Err(HeadError::AmbiguousLength)),
            (
                &["Content-Length: 99999999999999999999999"],
                Err(HeadError::AmbiguousLength),
            ),
            (
                &["Content-Length: 5", "Transfer-Encoding: chunked"],
                Err(HeadError::AmbiguousLength),
            ),
            (
                &["Transfer-Encoding: gzip, chunked"],
                Err(HeadError::UnsupportedEncoding),
            ),
            (
                &["Transfer-Encoding: identity"],
                Err(HeadError::UnsupportedEncoding),
            ),
            (
                &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                Err(HeadError::UnsupportedEncoding),
            ),
        ];
        for (fields, want) in cases {
            let mut lines = vec!["POST /messages HTTP/1.1", "Host: x"];
            lines.extend_from_slice(fields);
            assert_eq!(parse(&head(&lines)).map(|h| h.framing), *want, "{fields:?}");
        }
    }

    #[test]
    fn the_sanitized_head_drops_framing_and_expect() {
        let h = parse(&head(&[
            "POST /messages HTTP/1.1",
            "Host: x",
            "Content-Length: 3",
            "Expect: 100-continue",
            "Connection: keep-alive, close",
            "X-Chat-User: ana",
        ]))
        .unwrap();
        assert!(h.expect_continue && h.close);
        assert_eq!(
            String::from_utf8(h.sanitized).unwrap(),
            "POST /messages HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\nX-Chat-User: ana\r\n\r\n"
        );
    }

    #[test]
    fn versions_targets_and_expectations() {
        assert_eq!(
            parse(&head(&["GET / HTTP/2.0", "Host: x"])).unwrap_err(),
            HeadError::Version
        );
        assert_eq!(
            parse(&head(&["GET x HTTP/1.1", "Host: x"])).unwrap_err(),
            HeadError::BadTarget
        );
        assert_eq!(
            parse(&head(&["GET * HTTP/1.1", "Host: x"])).unwrap_err(),
            HeadError::BadTarget
        );
        assert!(parse(&head(&["OPTIONS * HTTP/1.1", "Host: x"])).is_ok());
        assert!(parse(&head(&["GET http://x/events HTTP/1.1", "Host: x"])).is_ok());
        assert_eq!(
            parse(&head(&["POST / HTTP/1.1", "Host: x", "Expect: 200-ok"])).unwrap_err(),
            HeadError::BadExpect
        );
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").unwrap_err(),
            HeadError::BadByte
        );
        assert_eq!(parse(b"GARBAGE\r\n\r\n").unwrap_err(), HeadError::Malformed);
    }

    /// Found by the `head` fuzz target (docs/fuzzing.md): a head the guard
    /// accepted grew past 8 KiB when rebuilt, and async-h1 answered 400
    /// "head byte length should be less than 8kb" instead of our 431.
    #[test]
    fn regression_a_head_that_grows_when_rebuilt_is_too_large() {
        use crate::http::conn::build_request;
        // Bare LF and no space after the colon: two bytes more per field.
        let mut sent = b"GET /events HTTP/1.1\nHost: t\n".to_vec();
        for i in 0..60 {
            sent.extend_from_slice(format!("X-{i}:{}\n", "v".repeat(100)).as_bytes());
        }
        sent.extend_from_slice(b"X:");
        sent.resize(MAX_HEAD - 10 - 2, b'v');
        sent.extend_from_slice(b"\n\n");
        assert_eq!(find_end(&sent), Ok(Some(MAX_HEAD - 10)));
        assert_eq!(
            parse(&sent).map(|h| h.sanitized.len()),
            Err(HeadError::TooLarge)
        );

        // As sent is as rebuilt: the longest head accepted is one byte
        // under the limit, and async-h1 builds it.
        let exactly = |len: usize| {
            let mut h = b"GET / HTTP/1.1\r\nHost: t\r\nX: ".to_vec();
            h.resize(len - 4, b'v');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        let longest = parse(&exactly(MAX_HEAD - 1)).unwrap();
        assert_eq!(longest.sanitized.len(), MAX_HEAD - 1);
        assert!(build_request(longest.sanitized).is_ok());
        assert_eq!(
            parse(&exactly(MAX_HEAD)).map(|h| h.sanitized.len()),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn http_1_0_is_rebuilt_as_the_1_1_head_that_means_the_same() {
        let h = parse(&head(&["GET /events HTTP/1.0"])).unwrap();
        assert_eq!(
            (h.version, h.close, h.has_host),
            (Version::Http10, true, false)
        );
        assert_eq!(
            String::from_utf8(h.sanitized.clone()).unwrap(),
            "GET /events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let req = crate::http::conn::build_request(h.sanitized).unwrap();
        assert_eq!(req.url().path(), "/events");

        let h = parse(&head(&[
            "POST /messages HTTP/1.0",
            "Host: pi:8080",
            "Connection: Keep-Alive",
            "Content-Length: 2",
            "Expect: 100-continue",
        ]))
        .unwrap();
        assert_eq!(h.version, Version::Http10);
        assert!(!h.close && h.has_host && !h.expect_continue);
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(
            String::from_utf8(h.sanitized).unwrap(),
            "POST /messages HTTP/1.1\r\nHost: pi:8080\r\nConnection: Keep-Alive\r\n\r\n"
        );
        let h = parse(&head(&["GET / HTTP/1.0", "Connection: keep-alive, close"])).unwrap();
        assert!(h.close);

        // The rebuilt head passes the guard again and keeps its meaning.
        let h = parse(&head(&["GET / HTTP/1.0", "Host: x"])).unwrap();
        let again = parse(&h.sanitized).unwrap();
        assert_eq!((again.version, again.close), (Version::Http11, true));
        assert_eq!(again.sanitized, h.sanitized);
    }

    #[test]
    fn http_1_0_bodies_need_a_length_and_no_chunks() {
        assert_eq!(
            parse(&head(&[
                "POST /messages HTTP/1.0",
                "Transfer-Encoding: chunked"
            ]))
            .unwrap_err(),
            HeadError::EncodingOnHttp10
        );
        let e = parse(&head(&["POST /messages HTTP/1.0", "Host: x"])).unwrap_err();
        assert_eq!((e, e.status()), (HeadError::LengthRequired, 411));
        assert!(parse(&head(&["POST /messages HTTP/1.0", "Content-Length: 0"])).is_ok());
        // 1.1 still needs a Host; other versions are refused.
        assert_eq!(
            parse(&head(&["GET / HTTP/1.1"])).unwrap_err(),
            HeadError::BadHost
        );
        for v in ["HTTP/0.9", "HTTP/2.0", "HTTP/1.2"] {
            assert_eq!(
                parse(&head(&[&format!("GET / {v}"), "Host: x"])).unwrap_err(),
                HeadError::Version,
                "{v}"
            );
        }
    }

    #[test]
    fn too_many_fields_is_too_large() {
        let mut lines = vec!["GET / HTTP/1.1".to_string(), "Host: x".to_string()];
        lines.extend((0..MAX_HEADERS).map(|i| format!("X-{i}: y")));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(parse(&head(&refs)).unwrap_err(), HeadError::TooLarge);
    }
}
