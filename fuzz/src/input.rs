//! Turning a fuzzer's bytes into the arguments of a check.
//!
//! The formats are plain on purpose: a seed file taken from a test is the
//! test's own bytes with a few control bytes in front, so a corpus file
//! can be read, and written by hand, without a tool.

/// Splits `data` at the first `n - 1` NUL bytes: `n` fields at most, the
/// last one holding the rest (NULs included).
///
/// ```
/// use smolchat_fuzz::input::fields;
///
/// assert_eq!(fields(b"a\0b\0c\0d", 3), [&b"a"[..], b"b", b"c\0d"]);
/// assert_eq!(fields(b"a", 3), [&b"a"[..]]);
/// ```
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == 0).collect()
}

/// The first `N` bytes of `data` (zero-padded when it is shorter) and the
/// rest.
pub fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

/// `data` as text for a panic message: lossy, at most 300 bytes of it.
pub fn shorten(data: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&data[..data.len().min(300)]).into_owned();
    if data.len() > 300 {
        s.push_str(&format!("... ({} bytes)", data.len()));
    }
    s
}

/// A small deterministic generator (xorshift64*), so that a fuzz input
/// that also decides split points replays the same way every time.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pads_short_input() {
        assert_eq!(header::<3>(b"ab"), ([b'a', b'b', 0], &b""[..]));
        assert_eq!(header::<1>(b"ab"), ([b'a'], &b"b"[..]));
    }

    #[test]
    fn the_generator_is_deterministic_and_not_stuck_at_zero() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(0), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(0), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| x != 0));
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }
}
