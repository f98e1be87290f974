//! A bounded decoder for `Transfer-Encoding: chunked` request bodies.
//!
//! async-h1 has its own chunked decoder, but it reads through the `BufReader`
//! that swallows pipelined bytes and has no size limit, so the connection
//! reads bodies itself and calls [`decode`] on what it has buffered so far.
//! Bodies are small (at most `--max-message-bytes`), so re-scanning the
//! buffer after each read costs nothing worth a streaming state machine.

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: usize = 1024;

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The decoded body is longer than the limit.
    TooLarge,
    /// Not valid chunked framing.
    Malformed,
}

/// Decodes a complete chunked body at the start of `buf`.
///
/// Returns `Ok(Some((body, consumed)))` when the body and its trailers are
/// complete, `Ok(None)` when more bytes are needed, and an error as soon as
/// the framing is invalid or the body would exceed `limit` bytes.
///
/// # Examples
///
/// ```
/// use smolchat::http::chunked::{decode, ChunkError};
///
/// let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
/// let (body, used) = decode(wire, 100).unwrap().unwrap();
/// assert_eq!((&body[..], used), (&b"hello world"[..], wire.len() - 4));
/// assert_eq!(decode(b"5\r\nhel", 100), Ok(None));
/// assert_eq!(decode(wire, 4), Err(ChunkError::TooLarge));
/// ```
pub fn decode(buf: &[u8], limit: usize) -> Result<Option<(Vec<u8>, usize)>, ChunkError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line) = line_at(buf, pos)? else {
            return Ok(None);
        };
        let size_text = line.text.split(|&b| b == b';').next().unwrap_or_default();
        let size_text = trim(size_text);
        if size_text.is_empty()
            || size_text.len() > 8
            || !size_text.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(ChunkError::Malformed);
        }
        // At most 8 hex digits: fits in a usize on every target.
        let size = usize::from_str_radix(
            std::str::from_utf8(size_text).map_err(|_| ChunkError::Malformed)?,
            16,
        )
        .map_err(|_| ChunkError::Malformed)?;
        pos = line.next;
        if size == 0 {
            break;
        }
        if body.len() + size > limit {
            return Err(ChunkError::TooLarge);
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        match &buf[pos..pos + 2] {
            b"\r\n" => pos += 2,
            _ => return Err(ChunkError::Malformed),
        }
    }
    // Trailer fields, ignored, up to the blank line.
    loop {
        let Some(line) = line_at(buf, pos)? else {
            return Ok(None);
        };
        pos = line.next;
        if line.text.is_empty() {
            return Ok(Some((body, pos)));
        }
    }
}

struct Line<'a> {
    text: &'a [u8],
    next: usize,
}

/// The CRLF-terminated line starting at `pos`, without its terminator.
fn line_at(buf: &[u8], pos: usize) -> Result<Option<Line<'_>>, ChunkError> {
    let rest = &buf[pos.min(buf.len())..];
    match rest.iter().take(MAX_LINE + 2).position(|&b| b == b'\n') {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok(Some(Line {
            text: &rest[..i - 1],
            next: pos + i + 1,
        })),
        Some(_) => Err(ChunkError::Malformed),
        None if rest.len() > MAX_LINE + 1 => Err(ChunkError::Malformed),
        None => Ok(None),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_a_valid_body_asks_for_more() {
        let wire = b"3\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n";
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut], 100), Ok(None), "cut {cut}");
        }
        assert_eq!(decode(wire, 100), Ok(Some((b"abcde".to_vec(), wire.len()))));
    }

    #[test]
    fn bad_framing_is_refused() {
        for wire in [
            &b"x\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"-1\r\n",
            b"123456789\r\n",
            b"\r\n",
        ] {
            assert_eq!(decode(wire, 100), Err(ChunkError::Malformed), "{wire:?}");
        }
        assert_eq!(decode(&[b'1'; 2000], 100), Err(ChunkError::Malformed));
    }

    #[test]
    fn the_limit_is_checked_before_the_data_arrives() {
        assert_eq!(decode(b"ffffff\r\n", 4096), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"800\r\n", 4096), Ok(None));
        assert_eq!(decode(b"800\r\n", 2047), Err(ChunkError::TooLarge));
    }
}
