//! The HTTP side of an event stream: the `retry:` preamble, the keep-alive
//! comment, and the framing around encoded events ([`crate::event::encode`]
//! makes the events themselves): HTTP/1.1 chunks, or for an HTTP/1.0
//! client the bare bytes of a body that ends when the connection does.

/// The `retry:` field that opens every stream, in milliseconds.
///
/// # Examples
///
/// ```
/// assert_eq!(smolchat::http::sse::retry(2000), b"retry: 2000\n\n");
/// ```
pub fn retry(ms: u64) -> Vec<u8> {
    format!("retry: {ms}\n\n").into_bytes()
}

/// The keep-alive comment sent on idle streams.
pub const PING: &[u8] = b": ping\n\n";

/// Appends `data` to `out` as one HTTP/1.1 chunk. Empty data is skipped: a
/// zero-length chunk would end the body.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// smolchat::http::sse::chunk(b": ping\n\n", &mut out);
/// assert_eq!(out, b"8\r\n: ping\n\n\r\n");
/// ```
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    chunk_size(data.len(), out);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` bytes (`len` in hex, CRLF),
/// without the allocation of `format!`: it runs once per delivered batch.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// smolchat::http::sse::chunk_size(300, &mut out);
/// assert_eq!(out, b"12c\r\n");
/// ```
pub fn chunk_size(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(len >> (i * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a body of unknown length is delimited.
///
/// # Examples
///
/// ```
/// use smolchat::http::sse::Delimit;
///
/// let (mut chunked, mut close) = (Vec::new(), Vec::new());
/// Delimit::Chunked.piece(b": ping\n\n", &mut chunked);
/// Delimit::Close.piece(b": ping\n\n", &mut close);
/// assert_eq!((&chunked[..], &close[..]), (&b"8\r\n: ping\n\n\r\n"[..], &b": ping\n\n"[..]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimit {
    /// HTTP/1.1 chunks, ended by [`LAST_CHUNK`].
    Chunked,
    /// The bytes as they are, ended by closing the connection: the only
    /// way for an HTTP/1.0 client, which knows no chunks.
    Close,
}

impl Delimit {
    /// The header line that says so, CRLF included.
    pub fn header(self) -> &'static [u8] {
        match self {
            Delimit::Chunked => b"transfer-encoding: chunked\r\n",
            Delimit::Close => b"connection: close\r\n",
        }
    }

    /// Appends what goes before `len` bytes of body: a chunk's size line.
    pub fn size(self, len: usize, out: &mut Vec<u8>) {
        if self == Delimit::Chunked {
            chunk_size(len, out);
        }
    }

    /// What goes after a piece of body started with [`Delimit::size`].
    pub fn after(self) -> &'static [u8] {
        match self {
            Delimit::Chunked => b"\r\n",
            Delimit::Close => b"",
        }
    }

    /// Appends `data` as one piece of body. Empty data is skipped.
    pub fn piece(self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            Delimit::Chunked => chunk(data, out),
            Delimit::Close => out.extend_from_slice(data),
        }
    }

    /// The bytes that end the body (then, for [`Delimit::Close`], the
    /// connection is shut).
    pub fn end(self) -> &'static [u8] {
        match self {
            Delimit::Chunked => LAST_CHUNK,
            Delimit::Close => b"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_is_in_milliseconds() {
        assert_eq!(retry(2000), b"retry: 2000\n\n");
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex_without_leading_zeros() {
        for (len, want) in [(0, "0"), (1, "1"), (15, "f"), (16, "10"), (4096, "1000")] {
            let mut out = Vec::new();
            chunk_size(len, &mut out);
            assert_eq!(out, format!("{want}\r\n").as_bytes(), "{len}");
        }
        let mut out = Vec::new();
        chunk_size(usize::MAX, &mut out);
        assert_eq!(out.len(), usize::BITS as usize / 4 + 2);
    }

    #[test]
    fn chunks_carry_hex_lengths_and_skip_empty_data() {
        let mut out = Vec::new();
        chunk(&[b'x'; 300], &mut out);
        assert!(out.starts_with(b"12c\r\n"));
        assert!(out.ends_with(b"x\r\n"));
        let mut none = Vec::new();
        chunk(b"", &mut none);
        assert!(none.is_empty());
    }
}
