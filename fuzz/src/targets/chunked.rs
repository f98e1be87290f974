//! Target `chunked`: the chunked body decoder, fed as the connection feeds
//! it.
//!
//! Input: two bytes of limit (little-endian), two bytes of seed, then the
//! wire bytes. The connection calls [`chunked::decode`] on its growing
//! buffer after every read, so:
//!
//! - decoding the wire all at once gives a body no longer than the limit,
//!   and `used` within the buffer;
//! - decoding ever longer prefixes (cut where the seed says) asks for more
//!   until the first answer that is not "more", and that answer is the
//!   all-at-once one;
//! - the wire bytes, taken as a body and framed by a reference encoder
//!   (chunk sizes, hex case, leading zeros, extensions and trailers from
//!   the seed), decode back to themselves, leave bytes after the body
//!   alone, and are refused as too large one byte under their length.

use smolchat::http::chunked::{decode, ChunkError};

use crate::input::{header, Rng};

type Decoded = Result<Option<(Vec<u8>, usize)>, ChunkError>;

/// Checks one input.
pub fn check(data: &[u8]) {
    let (ctrl, wire) = header::<4>(data);
    let limit = usize::from(u16::from_le_bytes([ctrl[0], ctrl[1]]));
    let mut rng = Rng::new(u64::from(u16::from_le_bytes([ctrl[2], ctrl[3]])));

    let whole = decode(wire, limit);
    if let Ok(Some((body, used))) = &whole {
        assert!(*used <= wire.len(), "used {used} of {}", wire.len());
        assert!(body.len() <= limit && body.len() <= *used);
    }
    assert_eq!(growing(wire, limit, &mut rng), whole);

    let framed = encode(wire, &mut rng);
    let mut next = framed.clone();
    next.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let want = Ok(Some((wire.to_vec(), framed.len())));
    assert_eq!(decode(&next, wire.len()), want, "{framed:?}");
    assert_eq!(growing(&next, wire.len(), &mut rng), want, "{framed:?}");
    if !wire.is_empty() {
        assert_eq!(
            decode(&framed, wire.len() - 1),
            Err(ChunkError::TooLarge),
            "{framed:?}"
        );
    }
}

/// Decodes ever longer prefixes of `wire` until one is not "need more",
/// as `conn.rs` does after each read.
fn growing(wire: &[u8], limit: usize, rng: &mut Rng) -> Decoded {
    // About sixteen reads per input: enough cuts, and linear cost overall.
    let step = wire.len() / 16 + 1;
    let mut len = 0;
    loop {
        let got = decode(&wire[..len], limit);
        if got != Ok(None) || len == wire.len() {
            return got;
        }
        len = (len + 1 + rng.below(2 * step)).min(wire.len());
    }
}

/// A chunked encoding of `body`, varied within what RFC 9112 allows and
/// the decoder accepts.
fn encode(body: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = body;
    let size_line = |n: usize, out: &mut Vec<u8>, rng: &mut Rng| {
        let hex = match rng.below(3) {
            0 => format!("{n:x}"),
            1 => format!("{n:X}"),
            _ => format!("{n:04x}"),
        };
        out.extend_from_slice(hex.as_bytes());
        match rng.below(4) {
            0 => out.extend_from_slice(b";name=value"),
            1 => out.extend_from_slice(b" ; x"),
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
    };
    while !rest.is_empty() {
        let n = (1 + rng.below(64)).min(rest.len());
        size_line(n, &mut out, rng);
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    size_line(0, &mut out, rng);
    for _ in 0..rng.below(3) {
        out.extend_from_slice(b"X-Trailer: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}
