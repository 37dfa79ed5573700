//! The health strip, pure: per partition what its checkpoint says (events consumed, late and
//! dead-lettered, the watermark and how far behind it is, the checkpoint's age), and whether
//! the stream has gone stale.

use std::collections::BTreeMap;

use serde::Serialize;

use super::core::Live;
use crate::stream::window::watermark;
use crate::units::rfc3339_micros;

/// One partition in the health strip.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionHealth {
    pub partition: i32,
    pub flushes: u64,
    pub next_offset: Option<i64>,
    pub consumed: u64,
    pub aggregated: u64,
    pub late: u64,
    pub dead_lettered: u64,
    /// Events consumed per second between the last two checkpoints seen.
    pub events_per_s: Option<f64>,
    /// Events in the topic not consumed yet: its end offset - the checkpoint's next offset
    /// (`None` while the broker cannot be asked).
    pub lag: Option<i64>,
    /// `None` before the first event; the end of input after a drained `--until-idle`.
    pub watermark: Option<String>,
    pub watermark_delay_s: Option<f64>,
    pub checkpoint_age_s: f64,
}

/// The health strip.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    pub partitions: Vec<PartitionHealth>,
    pub consumed: u64,
    pub late: u64,
    pub dead_lettered: u64,
    pub events_per_s: Option<f64>,
    pub lag: Option<i64>,
    pub last_checkpoint: Option<String>,
    /// The stream has not checkpointed for `dashboard.stale_after`.
    pub stale: bool,
}

/// The health strip as of `now` (micros).
/// `ends`: the topic's end offset per partition, as last read from the broker.
pub fn health(live: &Live, ends: &BTreeMap<i32, i64>, now: i64, stale_after: i64) -> Health {
    let mut out = Vec::new();
    for (p, st) in &live.partitions {
        let ck = &st.checkpoint;
        let w = &ck.windows;
        let wm = (w.max_ts.is_some() || w.emitted_to > i64::MIN)
            .then(|| watermark(w.max_ts, w.emitted_to, live.lateness));
        let (watermark, delay) = match wm {
            None => (None, None),
            Some(i64::MAX) => (Some("end of input".to_string()), None),
            Some(wm) => (Some(rfc3339_micros(wm)), Some((now - wm) as f64 / 1e6)),
        };
        out.push(PartitionHealth {
            partition: *p,
            flushes: ck.seq,
            next_offset: ck.next_offset,
            consumed: ck.counters.consumed,
            aggregated: ck.counters.aggregated,
            late: ck.counters.late,
            dead_lettered: ck.counters.dead_lettered,
            events_per_s: live.rates.get(p).copied(),
            lag: ends
                .get(p)
                .map(|end| (end - ck.next_offset.unwrap_or(0)).max(0)),
            watermark,
            watermark_delay_s: delay,
            checkpoint_age_s: (now - st.written_at) as f64 / 1e6,
        });
    }
    let last = live.last_checkpoint();
    Health {
        consumed: out.iter().map(|p| p.consumed).sum(),
        late: out.iter().map(|p| p.late).sum(),
        dead_lettered: out.iter().map(|p| p.dead_lettered).sum(),
        events_per_s: out.iter().map(|p| p.events_per_s).sum(),
        lag: out.iter().map(|p| p.lag).sum(),
        partitions: out,
        last_checkpoint: last.map(rfc3339_micros),
        stale: last.is_some_and(|l| now - l > stale_after),
    }
}

/// Events per second of each partition between its checkpoints in `prev` and `next`; a
/// partition whose checkpoint did not move keeps its last rate.
pub fn rates(prev: &Live, next: &Live) -> BTreeMap<i32, f64> {
    let mut out = BTreeMap::new();
    for (p, st) in &next.partitions {
        let rate = match prev.partitions.get(p) {
            Some(old) if st.written_at > old.written_at => {
                let n = st
                    .checkpoint
                    .counters
                    .consumed
                    .saturating_sub(old.checkpoint.counters.consumed);
                Some(n as f64 / ((st.written_at - old.written_at) as f64 / 1e6))
            }
            _ => prev.rates.get(p).copied(),
        };
        if let Some(r) = rate {
            out.insert(*p, r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::core::tests::ck;

    #[test]
    fn health_says_stale_after_the_limit() {
        let mut live = Live::default();
        live.partitions.insert(0, ck(1, vec![]));
        let ends = BTreeMap::from([(0, 25)]);
        let h = health(&live, &ends, 100_000_000, 120_000_000);
        assert!(!h.stale);
        assert!(health(&live, &ends, 121_000_000, 120_000_000).stale);
        assert_eq!(h.partitions[0].flushes, 1);
        assert_eq!((h.consumed, h.lag), (0, Some(15)));
        assert_eq!(h.events_per_s, None);
        // Two checkpoints two seconds apart, 100 events between them.
        let mut next = live.clone();
        let st = next.partitions.get_mut(&0).unwrap();
        st.written_at = 2_000_000;
        st.checkpoint.counters.consumed = 100;
        next.rates = rates(&live, &next);
        assert_eq!(next.rates.get(&0), Some(&50.0));
        let same = next.clone();
        assert_eq!(
            rates(&next, &same).get(&0),
            Some(&50.0),
            "kept while it stands"
        );
    }
}
