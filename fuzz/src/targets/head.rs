//! Target `head`: the head guard and request building, as the connection
//! drives them.
//!
//! The input is the raw bytes a client sends (one or several pipelined
//! requests). A model of `conn.rs`'s read loop (drop leading blank lines,
//! [`head::find_end`], [`head::has_bad_byte`] while incomplete,
//! [`head::parse`], then the body by its framing) runs twice: over all the
//! bytes at once, and over reads of sizes picked from the input's hash. The
//! two must decide the same, except that reads may refuse a bad byte before
//! the head is complete. Every head the guard accepts must then:
//!
//! - sanitize to a head the guard accepts again, with the same method,
//!   target and `Connection: close`, and no framing or `Expect` left;
//! - build into an `http_types::Request` ([`build_request`], and
//!   [`build_parsed`] from the guard's spans) the same as
//!   async-h1's decoder builds it ([`build_request_with_async_h1`]), with exactly
//!   the method the guard saw, the path and query of its target whatever
//!   the `Host` says, and no `Content-Length`, `Transfer-Encoding` or
//!   `Expect` for async-h1 to act on; only a method http-types does not
//!   know, or spells otherwise (`get`), may fail;
//! - have a `Last-Event-ID` / `?since=` ([`resume_after`]) and an
//!   `X-Chat-User` ([`percent_decode`]) that read without panicking.

use http_types::{Method, Request, Url};
use smolchat::http::chunked;
use smolchat::http::conn::{build_parsed, build_request, build_request_with_async_h1};
use smolchat::http::head::{self, Framing, Head, HeadError};
use smolchat::http::{percent_decode, resume_after};

use crate::input::Rng;

/// What a request is made of, to compare two of them.
fn parts(req: &Request) -> (String, String, Option<http_types::Version>, Vec<String>) {
    let mut fields: Vec<String> = req
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| format!("{name}: {v}")))
        .collect();
    fields.sort();
    (
        req.method().to_string(),
        req.url().to_string(),
        req.version(),
        fields,
    )
}

/// `--max-message-bytes` by default.
const LIMIT: usize = 4096;

/// What the connection did, request by request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// A head the guard accepted.
    Head {
        method: String,
        target: String,
        framing: Framing,
    },
    /// The guard refused a head.
    Refused(HeadError),
    /// A body: its length.
    Body(usize),
    /// A declared or chunked body over the limit.
    TooLarge,
    /// A chunked body with bad framing.
    BadChunks,
    /// The input ended while more bytes were needed.
    Eof,
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let whole = serve(data, &mut |_| usize::MAX);
    let mut rng = Rng::new(fnv(data));
    let reads = serve(data, &mut |n| {
        // Mostly small reads; now and then a whole READ_CHUNK.
        match rng.below(8) {
            0 => 4096,
            _ => 1 + rng.below(n.clamp(1, 512) / 8 + 1),
        }
    });
    let (last_w, first_w) = whole.split_last().expect("at least one outcome");
    let (last_r, first_r) = reads.split_last().expect("at least one outcome");
    assert_eq!(first_r, first_w, "split reads decided otherwise");
    let early_bad_byte = *last_r == Outcome::Refused(HeadError::BadByte)
        && matches!(last_w, Outcome::Refused(HeadError::TooLarge) | Outcome::Eof);
    assert!(
        last_r == last_w || early_bad_byte,
        "split reads ended with {last_r:?}, all at once with {last_w:?}"
    );
}

/// The model of `Conn::read_head` and `Conn::read_body`: runs requests
/// until the input ends or one is refused. `read` is asked how many bytes
/// to read, given how many are left.
fn serve(data: &[u8], read: &mut dyn FnMut(usize) -> usize) -> Vec<Outcome> {
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut more = |buf: &mut Vec<u8>| {
        if fed == data.len() {
            return false;
        }
        let n = read(data.len() - fed).clamp(1, data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        true
    };
    let mut out = Vec::new();
    loop {
        let parsed = loop {
            let blank = head::leading_blank_lines(&buf);
            buf.drain(..blank);
            match head::find_end(&buf) {
                Ok(Some(end)) => {
                    assert!(end <= head::MAX_HEAD && end <= buf.len());
                    let parsed = head::parse(&buf[..end]);
                    if let Ok(h) = &parsed {
                        check_head(h, &buf[..end]);
                    }
                    buf.drain(..end);
                    break parsed;
                }
                Ok(None) if head::has_bad_byte(&buf) => break Err(HeadError::BadByte),
                Ok(None) => {
                    if !more(&mut buf) {
                        out.push(Outcome::Eof);
                        return out;
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let h = match parsed {
            Ok(h) => h,
            Err(e) => {
                out.push(Outcome::Refused(e));
                return out;
            }
        };
        out.push(Outcome::Head {
            method: h.method.clone(),
            target: h.target.clone(),
            framing: h.framing,
        });
        match h.framing {
            Framing::None => {}
            Framing::Length(n) if n > LIMIT as u64 => {
                out.push(Outcome::TooLarge);
                return out;
            }
            Framing::Length(n) => {
                let n = n as usize;
                while buf.len() < n {
                    if !more(&mut buf) {
                        out.push(Outcome::Eof);
                        return out;
                    }
                }
                buf.drain(..n);
                out.push(Outcome::Body(n));
            }
            Framing::Chunked => loop {
                match chunked::decode(&buf, LIMIT) {
                    Ok(Some((body, used))) => {
                        assert!(used <= buf.len() && body.len() <= LIMIT);
                        buf.drain(..used);
                        out.push(Outcome::Body(body.len()));
                        break;
                    }
                    Ok(None) if buf.len() > LIMIT * 8 + 8192 => {
                        out.push(Outcome::TooLarge);
                        return out;
                    }
                    Ok(None) => {
                        if !more(&mut buf) {
                            out.push(Outcome::Eof);
                            return out;
                        }
                    }
                    Err(chunked::ChunkError::TooLarge) => {
                        out.push(Outcome::TooLarge);
                        return out;
                    }
                    Err(chunked::ChunkError::Malformed) => {
                        out.push(Outcome::BadChunks);
                        return out;
                    }
                }
            },
        }
    }
}

/// The invariants of one accepted head (`raw` is what the client sent).
fn check_head(h: &Head, raw: &[u8]) {
    let shown = crate::input::shorten(raw);
    let s = &h.sanitized;
    assert!(
        s.ends_with(b"\r\n\r\n") && !head::has_bad_byte(s),
        "{shown:?}"
    );

    // The sanitized head passes the guard again, unchanged.
    let again =
        head::parse(s).unwrap_or_else(|e| panic!("sanitized head refused ({e:?}); sent {shown:?}"));
    let target = if h.target == "*" { "/" } else { &h.target };
    assert_eq!(
        (again.method.as_str(), again.target.as_str()),
        (h.method.as_str(), target)
    );
    assert_eq!(again.framing, Framing::None);
    assert!(!again.expect_continue);
    assert_eq!(again.close, h.close);
    assert_eq!(&again.sanitized, s);

    // Built as async-h1's own decoder builds it (which smolchat used to call).
    let reference = build_request_with_async_h1(s.clone());
    let built = build_request(s.clone());
    match (&built, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(parts(a), parts(b), "sent {shown:?}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "sent {shown:?}"),
        _ => panic!(
            "built: {}, async-h1: {}; sent {shown:?}",
            built.is_ok(),
            reference.is_ok()
        ),
    }
    // The connection builds it from the guard's spans: the same again.
    match (&built, build_parsed(h)) {
        (Ok(a), Ok(b)) => assert_eq!(parts(a), parts(&b), "sent {shown:?}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "sent {shown:?}"),
        (a, b) => panic!(
            "built: {}, from spans: {}; sent {shown:?}",
            a.is_ok(),
            b.is_ok()
        ),
    }
    let req = match built {
        Ok(req) => req,
        Err(e) => {
            // Only a method http-types does not spell the same way.
            let known = h.method.parse::<Method>().ok();
            assert!(
                known.is_none_or(|m| m.as_ref() != h.method),
                "a head the guard accepted was not built: {e:?}; sent {shown:?}"
            );
            return;
        }
    };
    assert_eq!(req.method().as_ref(), h.method, "sent {shown:?}");
    check_url(&req, target, &shown);
    for name in ["content-length", "transfer-encoding", "expect"] {
        assert!(req.header(name).is_none(), "{name} reached async-h1");
    }

    // What the router reads from the request, as pure functions.
    if let Ok(Some(id)) = resume_after(&req) {
        let from_header = req
            .header("last-event-id")
            .and_then(|v| v.last().as_str().trim().parse().ok());
        let from_query = req
            .url()
            .query_pairs()
            .find(|(k, _)| k == "since")
            .and_then(|(_, v)| v.parse().ok());
        assert_eq!(Some(id), from_header.or(from_query));
    }
    if let Some(user) = req.header("x-chat-user") {
        percent_decode(user.last().as_str());
    }
}

/// The request's URL has the target's path and query: the `Host` header
/// never changes them.
fn check_url(req: &Request, target: &str, shown: &str) {
    let url = req.url();
    if target.starts_with('/') {
        let want = Url::parse(&format!("http://host.invalid{target}"))
            .unwrap_or_else(|e| panic!("{e}: {shown:?}"));
        assert_eq!(
            (url.path(), url.query()),
            (want.path(), want.query()),
            "sent {shown:?}"
        );
    } else {
        assert_eq!(
            Url::parse(target).ok().as_ref(),
            Some(url),
            "sent {shown:?}"
        );
    }
}

/// FNV-1a: a seed for the read sizes that follows the input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
