//! Counters and gauges, and their rendering as Prometheus text.
//!
//! Hand-written on atomics: a handful of numbers do not justify a metrics
//! crate on a small board. [`render`] is a pure function of a [`Snapshot`].

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Statuses a refused post is counted under.
pub const REFUSED_STATUSES: [u16; 10] = [400, 401, 403, 404, 408, 413, 415, 422, 429, 503];

/// Live counters, updated from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused with 503 over `--max-connections`.
    pub connections_refused: AtomicU64,
    /// Requests answered since start.
    pub requests: AtomicU64,
    /// Open SSE streams.
    pub subscribers: AtomicU64,
    /// Messages accepted (answered 201).
    pub messages_published: AtomicU64,
    /// Streams cut because they held a post back for `--stall-budget` or
    /// their socket accepted nothing for `--slow-timeout`.
    pub subscribers_evicted: AtomicU64,
    /// Database transactions committed.
    pub store_commits: AtomicU64,
    /// Messages written to the database.
    pub store_messages: AtomicU64,
    /// Database transactions that failed (their posts got 503).
    pub store_errors: AtomicU64,
    /// Connection tasks that panicked (each cost one connection; should
    /// stay 0).
    pub panics: AtomicU64,
    /// Connections refused with 429 over `--max-connections-per-ip`.
    pub connections_refused_per_ip: AtomicU64,
    posts_refused: [AtomicU64; REFUSED_STATUSES.len()],
}

impl Metrics {
    /// Counts a refused post under its status.
    pub fn post_refused(&self, status: u16) {
        let i = REFUSED_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(0);
        self.posts_refused[i].fetch_add(1, Relaxed);
    }

    /// Posts refused with `status` so far.
    pub fn posts_refused(&self, status: u16) -> u64 {
        REFUSED_STATUSES
            .iter()
            .position(|&s| s == status)
            .map_or(0, |i| self.posts_refused[i].load(Relaxed))
    }

    /// A copy of every number, plus the room, open-connection and memory
    /// figures (which live elsewhere).
    pub fn snapshot(
        &self,
        rooms: usize,
        connections_open: usize,
        memory: (usize, usize, usize),
    ) -> Snapshot {
        let (memory_bytes, memory_messages, memory_limit_bytes) = memory;
        Snapshot {
            memory_bytes: memory_bytes as u64,
            memory_messages: memory_messages as u64,
            memory_limit_bytes: memory_limit_bytes as u64,
            panics: self.panics.load(Relaxed),
            connections_refused_per_ip: self.connections_refused_per_ip.load(Relaxed),
            connections_open: connections_open as u64,
            connections_total: self.connections_total.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            requests: self.requests.load(Relaxed),
            subscribers: self.subscribers.load(Relaxed),
            rooms: rooms as u64,
            messages_published: self.messages_published.load(Relaxed),
            subscribers_evicted: self.subscribers_evicted.load(Relaxed),
            store_commits: self.store_commits.load(Relaxed),
            store_messages: self.store_messages.load(Relaxed),
            store_errors: self.store_errors.load(Relaxed),
            posts_refused: REFUSED_STATUSES.map(|s| (s, self.posts_refused(s))),
        }
    }
}

/// Plain numbers to render.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes of the memory budget in use.
    pub memory_bytes: u64,
    /// Messages (frames) those bytes hold.
    pub memory_messages: u64,
    /// `--memory-limit`.
    pub memory_limit_bytes: u64,
    /// See [`Metrics::panics`].
    pub panics: u64,
    /// See [`Metrics::connections_refused_per_ip`].
    pub connections_refused_per_ip: u64,
    /// Open connections.
    pub connections_open: u64,
    /// See [`Metrics::connections_total`].
    pub connections_total: u64,
    /// See [`Metrics::connections_refused`].
    pub connections_refused: u64,
    /// See [`Metrics::requests`].
    pub requests: u64,
    /// See [`Metrics::subscribers`].
    pub subscribers: u64,
    /// Rooms that exist.
    pub rooms: u64,
    /// See [`Metrics::messages_published`].
    pub messages_published: u64,
    /// See [`Metrics::subscribers_evicted`].
    pub subscribers_evicted: u64,
    /// See [`Metrics::store_commits`].
    pub store_commits: u64,
    /// See [`Metrics::store_messages`].
    pub store_messages: u64,
    /// See [`Metrics::store_errors`].
    pub store_errors: u64,
    /// Refused posts by status.
    pub posts_refused: [(u16, u64); REFUSED_STATUSES.len()],
}

/// Renders the Prometheus text exposition format (version 0.0.4).
///
/// # Examples
///
/// ```
/// use smolchat::metrics::{render, Snapshot};
///
/// let text = render(&Snapshot { rooms: 2, ..Snapshot::default() });
/// assert!(text.contains("# TYPE smolchat_rooms gauge\nsmolchat_rooms 2\n"));
/// ```
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(2048);
    let mut one = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    one(
        "smolchat_connections_open",
        "gauge",
        "Open TCP connections.",
        s.connections_open,
    );
    one(
        "smolchat_connections_total",
        "counter",
        "TCP connections accepted.",
        s.connections_total,
    );
    one(
        "smolchat_connections_refused_total",
        "counter",
        "Connections refused with 503 over --max-connections.",
        s.connections_refused,
    );
    one(
        "smolchat_requests_total",
        "counter",
        "HTTP requests answered.",
        s.requests,
    );
    one(
        "smolchat_subscribers",
        "gauge",
        "Open event streams.",
        s.subscribers,
    );
    one("smolchat_rooms", "gauge", "Rooms.", s.rooms);
    one(
        "smolchat_messages_published_total",
        "counter",
        "Messages accepted and queued.",
        s.messages_published,
    );
    one(
        "smolchat_subscribers_evicted_total",
        "counter",
        "Streams cut because they held a post back for --stall-budget or accepted nothing for --slow-timeout.",
        s.subscribers_evicted,
    );
    one(
        "smolchat_store_commits_total",
        "counter",
        "Database transactions committed (one per group of posts).",
        s.store_commits,
    );
    one(
        "smolchat_store_messages_total",
        "counter",
        "Messages written to the database.",
        s.store_messages,
    );
    one(
        "smolchat_store_errors_total",
        "counter",
        "Database transactions that failed; their posts got 503.",
        s.store_errors,
    );
    one(
        "smolchat_memory_bytes",
        "gauge",
        "Memory messages take now: history, queues, unsent stream output.",
        s.memory_bytes,
    );
    one(
        "smolchat_memory_messages",
        "gauge",
        "Messages in memory (history, queues, unsent stream output), each counted once.",
        s.memory_messages,
    );
    one(
        "smolchat_memory_limit_bytes",
        "gauge",
        "The memory budget for messages (--memory-limit).",
        s.memory_limit_bytes,
    );
    one(
        "smolchat_connections_refused_per_ip_total",
        "counter",
        "Connections refused with 429 over --max-connections-per-ip.",
        s.connections_refused_per_ip,
    );
    one(
        "smolchat_panics_total",
        "counter",
        "Connection tasks that panicked (each dropped one connection).",
        s.panics,
    );
    out.push_str("# HELP smolchat_posts_refused_total Posts refused, by status.\n");
    out.push_str("# TYPE smolchat_posts_refused_total counter\n");
    for (status, n) in s.posts_refused {
        let _ = writeln!(
            out,
            "smolchat_posts_refused_total{{status=\"{status}\"}} {n}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let m = Metrics::default();
        m.post_refused(429);
        m.post_refused(429);
        m.subscribers_evicted.fetch_add(1, Relaxed);
        let text = render(&m.snapshot(3, 1, (100, 1, 200)));
        assert!(text.contains("smolchat_memory_limit_bytes 200\n"));
        assert!(text.contains("smolchat_posts_refused_total{status=\"429\"} 2\n"));
        assert!(text.contains("smolchat_subscribers_evicted_total 1\n"));
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("smolchat_"),
                "{line}"
            );
            if !line.starts_with('#') {
                assert!(
                    line.rsplit(' ').next().unwrap().parse::<u64>().is_ok(),
                    "{line}"
                );
            }
        }
    }
}
