//! Percentiles and the delivery check every subscriber's record goes
//! through.

use std::collections::HashMap;

/// The `p` quantile (0..=1) of sorted microseconds, in milliseconds.
pub(crate) fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

/// What one subscriber received, in arrival order.
#[derive(Default)]
pub(crate) struct Record {
    /// Message ids.
    pub(crate) ids: Vec<u32>,
    /// Post numbers from the texts (`u32::MAX` when the text was not ours).
    pub(crate) ks: Vec<u32>,
    /// Send-to-receive latency of each, in microseconds.
    pub(crate) lat_us: Vec<u32>,
    /// When the last message arrived (microseconds since the epoch).
    pub(crate) last_us: u64,
    /// Why the stream failed, if it did.
    pub(crate) error: Option<String>,
    /// Whether the server ended the stream.
    pub(crate) closed: bool,
}

/// Counts of delivery faults, summed over subscribers.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Faults {
    /// Accepted messages a subscriber never got.
    pub(crate) missing: u64,
    /// Messages a subscriber got more than once.
    pub(crate) duplicate: u64,
    /// Messages that came after one with a higher id.
    pub(crate) out_of_order: u64,
    /// Ids whose text is not the post the `201` gave that id, or ids no
    /// `201` gave.
    pub(crate) mismatched: u64,
}

impl Faults {
    pub(crate) fn total(&self) -> u64 {
        self.missing + self.duplicate + self.out_of_order + self.mismatched
    }

    /// Checks one record against the accepted posts (`id -> k`).
    /// `prefix_only` is for a subscriber that was cut: it must hold a
    /// gap-free run from the first accepted id, but may stop early.
    pub(crate) fn check(
        &mut self,
        rec: &Record,
        accepted: &HashMap<u64, u64>,
        max_id: u64,
        seen: &mut Vec<bool>,
        prefix_only: bool,
    ) {
        seen.clear();
        seen.resize(max_id as usize + 2, false);
        let mut prev = 0u32;
        for (&id, &k) in rec.ids.iter().zip(&rec.ks) {
            let slot = seen.get_mut(id as usize);
            match slot {
                Some(s) if *s => self.duplicate += 1,
                Some(s) => *s = true,
                None => self.mismatched += 1,
            }
            if id < prev {
                self.out_of_order += 1;
            }
            prev = prev.max(id);
            if accepted.get(&u64::from(id)) != Some(&u64::from(k)) {
                self.mismatched += 1;
            }
        }
        let upto = if prefix_only { u64::from(prev) } else { max_id };
        for id in accepted.keys() {
            if *id <= upto && !seen.get(*id as usize).copied().unwrap_or(false) {
                self.missing += 1;
            }
        }
    }
}
