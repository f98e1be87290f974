//! Local time for `smolchat tail`'s `HH:MM`: the offset from UTC that the
//! machine's time zone file gives for an instant.
//!
//! A time zone file (TZif, RFC 8536) is a list of transitions and the
//! offsets between them; reading it is ~50 lines, where a date-time crate
//! would add far more to a binary meant for a Pi. The zone is `TZ` when it
//! names a zone (`Europe/Berlin`, `:Europe/Berlin`, a file path), else
//! `/etc/localtime`; a POSIX rule string in `TZ`, or no file, means UTC.
//! Past a file's last transition its last offset holds (Debian's files
//! list transitions up to 2037).

/// Transitions (UTC seconds) and the offset (seconds east of UTC) from
/// each one on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Zone {
    transitions: Vec<(i64, i32)>,
    /// The offset before the first transition (or always, without any).
    initial: i32,
}

impl Zone {
    /// The machine's zone: `tz` is the value of `TZ`, if set.
    pub(crate) fn local(tz: Option<&str>) -> Zone {
        let path = match tz.map(|t| t.strip_prefix(':').unwrap_or(t)) {
            Some("") | Some("UTC") | Some("UTC0") => return Zone::default(),
            Some(t) if t.starts_with('/') => t.to_string(),
            Some(t) if !t.contains("..") && t.contains('/') => format!("/usr/share/zoneinfo/{t}"),
            Some(_) => return Zone::default(),
            None => "/etc/localtime".to_string(),
        };
        std::fs::read(path)
            .ok()
            .and_then(|b| Zone::parse(&b))
            .unwrap_or_default()
    }

    /// Reads a TZif file; `None` if it is not one.
    pub(crate) fn parse(b: &[u8]) -> Option<Zone> {
        let header = |at: usize| -> Option<(u8, [usize; 6])> {
            if b.get(at..at + 4)? != b"TZif" {
                return None;
            }
            let mut counts = [0usize; 6];
            for (i, c) in counts.iter_mut().enumerate() {
                let s = at + 20 + 4 * i;
                *c = u32::from_be_bytes(b.get(s..s + 4)?.try_into().ok()?) as usize;
            }
            Some((*b.get(at + 4)?, counts))
        };
        let (version, counts) = header(0)?;
        // Version 2 and later repeat the data with 64-bit times after the
        // 32-bit block: use those.
        let (start, counts, wide) = if version >= b'2' {
            let [isut, isstd, leap, time, types, chars] = counts;
            let v1 = time * 5 + types * 6 + chars + leap * 8 + isstd + isut;
            let at = 44 + v1;
            (at + 44, header(at)?.1, true)
        } else {
            (44, counts, false)
        };
        let [_, _, _, timecnt, typecnt, _] = counts;
        let tsize = if wide { 8 } else { 4 };
        let times = b.get(start..start + timecnt * tsize)?;
        let idx = b.get(start + timecnt * tsize..start + timecnt * (tsize + 1))?;
        let types_at = start + timecnt * (tsize + 1);
        let types = b.get(types_at..types_at + typecnt * 6)?;
        if typecnt == 0 {
            return None;
        }
        let offset = |i: usize| -> Option<i32> {
            let t = types.get(i * 6..i * 6 + 4)?;
            Some(i32::from_be_bytes(t.try_into().ok()?))
        };
        let mut transitions = Vec::with_capacity(timecnt);
        for i in 0..timecnt {
            let t = &times[i * tsize..(i + 1) * tsize];
            let at = if wide {
                i64::from_be_bytes(t.try_into().ok()?)
            } else {
                i64::from(i32::from_be_bytes(t.try_into().ok()?))
            };
            transitions.push((at, offset(usize::from(idx[i]))?));
        }
        Some(Zone {
            transitions,
            initial: offset(0)?,
        })
    }

    /// Seconds east of UTC at `t` (UTC seconds).
    pub(crate) fn offset(&self, t: i64) -> i32 {
        match self.transitions.partition_point(|&(at, _)| at <= t) {
            0 => self.initial,
            n => self.transitions[n - 1].1,
        }
    }

    /// `HH:MM` of `t` (UTC seconds) in this zone.
    pub(crate) fn hh_mm(&self, t: i64) -> String {
        let local = t + i64::from(self.offset(t));
        let minutes = local.rem_euclid(86_400) / 60;
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-2 TZif file with the given transitions and offsets.
    fn tzif(transitions: &[(i64, u8)], offsets: &[i32]) -> Vec<u8> {
        let mut f = Vec::new();
        let header = |f: &mut Vec<u8>, time: usize, types: usize| {
            f.extend_from_slice(b"TZif2");
            f.extend_from_slice(&[0; 15]);
            for c in [0, 0, 0, time, types, 4] {
                f.extend_from_slice(&(c as u32).to_be_bytes());
            }
        };
        let types = |f: &mut Vec<u8>| {
            for o in offsets {
                f.extend_from_slice(&o.to_be_bytes());
                f.extend_from_slice(&[0, 0]);
            }
            f.extend_from_slice(b"ABC\0");
        };
        header(&mut f, transitions.len(), offsets.len());
        for (t, _) in transitions {
            f.extend_from_slice(&(*t as i32).to_be_bytes());
        }
        f.extend(transitions.iter().map(|(_, i)| i));
        types(&mut f);
        header(&mut f, transitions.len(), offsets.len());
        for (t, _) in transitions {
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend(transitions.iter().map(|(_, i)| i));
        types(&mut f);
        f.extend_from_slice(b"\nCET-1CEST,M3.5.0,M10.5.0/3\n");
        f
    }

    #[test]
    fn the_offset_follows_the_transitions() {
        // 2026-03-29 01:00 UTC summer time starts, 2026-10-25 01:00 UTC it ends.
        let z = Zone::parse(&tzif(
            &[(1_774_746_000, 1), (1_792_890_000, 0)],
            &[3600, 7200],
        ))
        .unwrap();
        assert_eq!(z.hh_mm(1_774_745_999), "01:59");
        assert_eq!(z.hh_mm(1_774_746_000), "03:00");
        assert_eq!(z.hh_mm(1_792_890_000), "02:00");
        assert_eq!(z.offset(0), 3600);
    }

    #[test]
    fn utc_and_junk_fall_back_to_utc() {
        assert_eq!(Zone::local(Some("UTC")).hh_mm(3_600 * 25 + 60 * 7), "01:07");
        assert_eq!(Zone::parse(b"not a zone"), None);
        assert_eq!(Zone::parse(b"TZif2"), None);
        let z = Zone::parse(&tzif(&[], &[-18_000])).unwrap();
        assert_eq!(z.hh_mm(0), "19:00");
        assert_eq!(Zone::local(Some("../../etc/passwd")), Zone::default());
    }

    #[test]
    fn a_zone_file_of_the_system_reads_if_there_is_one() {
        if let Ok(b) = std::fs::read("/usr/share/zoneinfo/Europe/Berlin") {
            let z = Zone::parse(&b).expect("a TZif file");
            // 2026-07-01 12:00 UTC is 14:00 in Berlin; 2026-01-01 12:00 is 13:00.
            assert_eq!(z.hh_mm(1_782_907_200), "14:00");
            assert_eq!(z.hh_mm(1_767_268_800), "13:00");
        }
    }
}
