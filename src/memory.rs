//! The memory budget (`--memory-limit`): what messages cost in memory, in
//! one counter the whole server shares.
//!
//! A message lives in memory as one encoded frame (see
//! [`crate::event::Frame`]), shared by the room's history, its queue, every
//! stream that has yet to write it, and the `201` answer. The frame charges
//! its size to the budget when it is made and gives it back when the last
//! of those lets go of it, so the counter is exact without anyone counting
//! twice: a message evicted from history but still queued for a slow
//! subscriber is still counted, and stops counting when that subscriber
//! takes it or is cut.
//!
//! The counter only counts; deciding what to evict and when to refuse new
//! posts is the owner of the rooms' job (`App`).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes a frame costs beyond its own bytes: its two allocations and its
/// slot in a room's history.
pub const FRAME_OVERHEAD: usize = 96;

/// The shared counter and its limit.
#[derive(Debug)]
pub struct Memory {
    used: AtomicUsize,
    frames: AtomicUsize,
    limit: usize,
}

impl Memory {
    /// A budget of `limit` bytes, nothing used yet.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = smolchat::memory::Memory::new(1000);
    /// m.charge(600);
    /// assert!(!m.over());
    /// m.charge(600);
    /// assert!(m.over());
    /// m.release(600);
    /// assert_eq!(m.used(), 600);
    /// ```
    pub fn new(limit: usize) -> Self {
        Memory {
            used: AtomicUsize::new(0),
            frames: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether more than the limit is counted.
    pub fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Whether more than `percent` % of the limit is counted.
    pub fn above(&self, percent: usize) -> bool {
        self.used() > self.limit / 100 * percent
    }

    /// Frames (messages) counted now.
    pub fn frames(&self) -> usize {
        self.frames.load(Relaxed)
    }

    /// Counts one more frame of `n` bytes (with its overhead).
    pub fn charge_frame(&self, n: usize) {
        self.frames.fetch_add(1, Relaxed);
        self.charge(n);
    }

    /// Counts one frame of `n` bytes less.
    pub fn release_frame(&self, n: usize) {
        self.frames.fetch_sub(1, Relaxed);
        self.release(n);
    }

    /// Counts `n` more bytes.
    pub fn charge(&self, n: usize) {
        self.used.fetch_add(n, Relaxed);
    }

    /// Counts `n` bytes less.
    pub fn release(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }
}

/// Parses a size: a whole number of bytes, optionally with `B`, `KiB`,
/// `MiB` or `GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`, all powers of
/// 1024). `None` when it is not one, or overflows.
///
/// # Examples
///
/// ```
/// use smolchat::memory::parse_size;
///
/// assert_eq!(parse_size("64MiB"), Some(64 << 20));
/// assert_eq!(parse_size("512 KiB"), Some(512 << 10));
/// assert_eq!(parse_size("1g"), Some(1 << 30));
/// assert_eq!(parse_size("4096"), Some(4096));
/// assert_eq!(parse_size("12XB"), None);
/// assert_eq!(parse_size("-1MiB"), None);
/// ```
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: usize = s[..digits].parse().ok()?;
    let shift = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1usize << shift)
}

/// A size in the unit that shows it best, as `--help` and the docs write
/// sizes.
///
/// # Examples
///
/// ```
/// use smolchat::memory::format_size;
///
/// assert_eq!(format_size(64 << 20), "64MiB");
/// assert_eq!(format_size(1536), "1536B");
/// assert_eq!(format_size(3 << 10), "3KiB");
/// ```
pub fn format_size(n: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_in_any_case() {
        for (text, want) in [
            ("1KiB", Some(1024)),
            ("1kib", Some(1024)),
            ("2 MiB", Some(2 << 20)),
            ("3GiB", Some(3 << 30)),
            ("10M", Some(10 << 20)),
            ("0", Some(0)),
            ("", None),
            ("MiB", None),
            ("1.5MiB", None),
            ("1TiB", None),
            ("99999999999999999999GiB", None),
        ] {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
    }

    #[test]
    fn a_formatted_size_parses_back() {
        for n in [1, 1023, 1024, 64 << 20, (1 << 30) + 1, 5 << 30] {
            assert_eq!(parse_size(&format_size(n)), Some(n));
        }
    }
}
