//! The dashboard's core, pure: an index of the lake's hourly windows kept file by file, the
//! stream's checkpoints, and the panels computed from the two. No IO, no clock: the shell
//! hands it listings, decoded files, checkpoints and the time.
//!
//! A closed window is counted from the lake only when the flush that wrote its file is
//! covered by the partition's checkpoint (or the file is a compacted one); the windows that
//! are still open come from that same checkpoint. So a refresh never counts a window twice
//! (closed in a file and open in an older checkpoint) nor misses one.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::stream::partition::Checkpoint;
use crate::stream::window::{ProductInfo, watermark};
use crate::units::rfc3339_micros;

const HOUR: i64 = 3_600_000_000;

/// One product's aggregate in one hourly window. Revenue in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRow {
    pub start: i64,
    pub product: i64,
    pub quantity: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

/// One decoded file of `sales_windows/window=1h`.
#[derive(Debug, Clone, Default)]
pub struct HourFile {
    pub rows: Vec<HourRow>,
    pub products: Vec<(i64, ProductInfo)>,
}

/// One partition as its checkpoint left it.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub checkpoint: Checkpoint,
    /// When the checkpoint object was last written, micros.
    pub written_at: i64,
}

/// The checkpoints of the stream group, by source partition.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub partitions: BTreeMap<i32, PartitionState>,
    /// Index of the hourly tumbling window in `stream.windows` (in the checkpoints' terms).
    pub hour_spec: Option<usize>,
    pub lateness: i64,
}

impl Live {
    /// Whether the file at `path` belongs to a flush its partition's checkpoint covers.
    /// Files of compacted folders are always covered; a partition without a checkpoint (a
    /// lake whose `_state` was removed) has every file counted.
    pub fn covers(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        let Some(rest) = name.strip_prefix("part-p") else {
            return true;
        };
        let mut it = rest.split('-');
        let p = it.next().and_then(|p| p.parse::<i32>().ok());
        let seq = it
            .next()
            .and_then(|s| s.strip_prefix('s'))
            .and_then(|s| s.parse::<u64>().ok());
        match (p, seq) {
            (Some(p), Some(seq)) => self
                .partitions
                .get(&p)
                .is_none_or(|st| st.checkpoint.seq >= seq),
            _ => true,
        }
    }

    /// The newest event time any partition has seen.
    pub fn newest_event(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(|p| p.checkpoint.windows.max_ts)
            .max()
    }

    /// When the newest checkpoint was written.
    pub fn last_checkpoint(&self) -> Option<i64> {
        self.partitions.values().map(|p| p.written_at).max()
    }
}

/// The files read so far and the products they name.
#[derive(Debug, Default)]
pub struct Index {
    files: HashMap<String, HourFile>,
    products: BTreeMap<i64, ProductInfo>,
}

/// What the browser asks for: a range of hours ending with the newest data, and a filter.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub hours: i64,
    pub category: Option<String>,
    pub brand: Option<String>,
}

/// One hour of the hourly panel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hour {
    pub start: String,
    pub units: i64,
    pub revenue_cents: i64,
    pub orders: i64,
    /// Whether a window of this hour is still open (its numbers still grow).
    pub open: bool,
}

/// The hourly panel: every hour of the range, hours without sales as zeros.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hourly {
    pub from: String,
    pub to: String,
    pub hours: Vec<Hour>,
    pub units: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

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
    pub last_checkpoint: Option<String>,
    /// The stream has not checkpointed for `dashboard.stale_after`.
    pub stale: bool,
}

impl Index {
    /// The listed files not read yet whose flush is covered by a checkpoint.
    pub fn wanted(&self, listing: &[(String, u64)], live: &Live) -> Vec<String> {
        listing
            .iter()
            .filter(|(p, _)| p.ends_with(".parquet") && !self.files.contains_key(p))
            .filter(|(p, _)| live.covers(p))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Takes the newly read files and forgets those no longer listed (compacted away).
    /// Returns how many files were forgotten.
    pub fn apply(&mut self, listing: &[(String, u64)], read: Vec<(String, HourFile)>) -> usize {
        let listed: HashSet<&str> = listing.iter().map(|(p, _)| p.as_str()).collect();
        let before = self.files.len();
        self.files.retain(|p, _| listed.contains(p.as_str()));
        let forgotten = before - self.files.len();
        for (path, f) in read {
            for (id, info) in &f.products {
                self.products.insert(*id, info.clone());
            }
            self.files.insert(path, f);
        }
        forgotten
    }

    /// Files held.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    fn product<'a>(&'a self, live: &'a Live, id: i64) -> Option<&'a ProductInfo> {
        self.products.get(&id).or_else(|| {
            live.partitions.values().find_map(|p| {
                p.checkpoint
                    .windows
                    .products
                    .iter()
                    .find(|(pid, _)| *pid == id)
                    .map(|(_, i)| i)
            })
        })
    }

    fn matches(&self, live: &Live, q: &Query, product: i64) -> bool {
        if q.category.is_none() && q.brand.is_none() {
            return true;
        }
        let Some(info) = self.product(live, product) else {
            return false;
        };
        q.category.as_ref().is_none_or(|c| *c == info.category)
            && q.brand.as_ref().is_none_or(|b| *b == info.brand)
    }

    /// The newest hour with data: from the checkpoints, else from the files.
    fn anchor(&self, live: &Live) -> Option<i64> {
        live.newest_event().or_else(|| {
            self.files
                .values()
                .flat_map(|f| f.rows.iter().map(|r| r.start))
                .max()
        })
    }

    /// Units, revenue and orders per hour over the last `q.hours` hours of data (the
    /// newest hour included), closed windows from the lake and open ones from the
    /// checkpoints.
    pub fn hourly(&self, live: &Live, q: &Query) -> Hourly {
        let hours = q.hours.max(1);
        let to = self
            .anchor(live)
            .map_or(0, |a| a.div_euclid(HOUR) * HOUR + HOUR);
        let from = to - hours * HOUR;
        let mut slots: Vec<Hour> = (0..hours)
            .map(|i| Hour {
                start: rfc3339_micros(from + i * HOUR),
                units: 0,
                revenue_cents: 0,
                orders: 0,
                open: false,
            })
            .collect();
        let mut add = |r: &HourRow, open: bool| {
            if r.start < from || r.start >= to || !self.matches(live, q, r.product) {
                return;
            }
            let s = &mut slots[((r.start - from) / HOUR) as usize];
            s.units += r.quantity;
            s.revenue_cents += r.revenue_cents;
            s.orders += r.orders;
            s.open |= open;
        };
        for f in self.files.values() {
            for r in &f.rows {
                add(r, false);
            }
        }
        if let Some(spec) = live.hour_spec {
            for p in live.partitions.values() {
                for &(_end, s, start, product, quantity, revenue_cents, orders) in
                    &p.checkpoint.windows.open
                {
                    if s == spec {
                        let r = HourRow {
                            start,
                            product,
                            quantity,
                            revenue_cents,
                            orders,
                        };
                        add(&r, true);
                    }
                }
            }
        }
        Hourly {
            from: rfc3339_micros(from),
            to: rfc3339_micros(to),
            units: slots.iter().map(|s| s.units).sum(),
            revenue_cents: slots.iter().map(|s| s.revenue_cents).sum(),
            orders: slots.iter().map(|s| s.orders).sum(),
            hours: slots,
        }
    }

    /// The categories and brands there are to filter by.
    pub fn filters(&self) -> (Vec<String>, Vec<String>) {
        let mut c: Vec<String> = self.products.values().map(|p| p.category.clone()).collect();
        let mut b: Vec<String> = self.products.values().map(|p| p.brand.clone()).collect();
        c.sort();
        c.dedup();
        b.sort();
        b.dedup();
        (c, b)
    }
}

/// The health strip as of `now` (micros).
pub fn health(live: &Live, now: i64, stale_after: i64) -> Health {
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
        partitions: out,
        last_checkpoint: last.map(rfc3339_micros),
        stale: last.is_some_and(|l| now - l > stale_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::window::WindowState;

    fn ck(seq: u64, open: Vec<(i64, usize, i64, i64, i64, i64, i64)>) -> PartitionState {
        PartitionState {
            checkpoint: Checkpoint {
                seq,
                next_offset: Some(10),
                counters: Default::default(),
                output_offsets: BTreeMap::new(),
                windows: WindowState {
                    max_ts: Some(5 * HOUR + 10),
                    emitted_to: 4 * HOUR,
                    open,
                    ..Default::default()
                },
                totals: Default::default(),
                stock: Default::default(),
            },
            written_at: 0,
        }
    }

    fn row(start: i64, product: i64, q: i64) -> HourRow {
        HourRow {
            start,
            product,
            quantity: q,
            revenue_cents: q * 100,
            orders: 1,
        }
    }

    #[test]
    fn files_of_flushes_after_the_checkpoint_wait_and_open_windows_come_from_it() {
        let mut live = Live {
            hour_spec: Some(0),
            ..Default::default()
        };
        live.partitions
            .insert(0, ck(2, vec![(6 * HOUR, 0, 5 * HOUR, 7, 3, 300, 1)]));
        let listing = vec![
            (
                "w/part-p000-s00000002-o00000000000000000000.parquet".into(),
                1,
            ),
            (
                "w/part-p000-s00000003-o00000000000000000009.parquet".into(),
                1,
            ),
            ("w/compacted-1-2-0.parquet".into(), 1),
            (
                "w/part-p001-s00000009-o00000000000000000000.parquet".into(),
                1,
            ),
        ];
        let mut ix = Index::default();
        let want = ix.wanted(&listing, &live);
        assert_eq!(want.len(), 3, "{want:?}");
        assert!(!want.iter().any(|p| p.contains("s00000003")));
        let read = want
            .into_iter()
            .map(|p| {
                (
                    p,
                    HourFile {
                        rows: vec![row(4 * HOUR, 7, 2)],
                        products: vec![],
                    },
                )
            })
            .collect();
        assert_eq!(ix.apply(&listing, read), 0);
        let h = ix.hourly(
            &live,
            &Query {
                hours: 2,
                ..Default::default()
            },
        );
        assert_eq!(h.units, 3 * 2 + 3);
        assert_eq!(h.hours[0].units, 6);
        assert!(!h.hours[0].open);
        assert_eq!((h.hours[1].units, h.hours[1].open), (3, true));
        assert_eq!(h.revenue_cents, 900);
        // The compacted file replaced the others: they are forgotten.
        let listing = vec![("w/compacted-1-2-0.parquet".to_string(), 1)];
        assert_eq!(ix.apply(&listing, vec![]), 2);
        assert_eq!(
            ix.hourly(
                &live,
                &Query {
                    hours: 2,
                    ..Default::default()
                }
            )
            .units,
            5
        );
    }

    #[test]
    fn the_filter_keeps_only_the_matching_products() {
        let mut ix = Index::default();
        let info = |c: &str, b: &str| ProductInfo {
            name: "x".into(),
            brand: b.into(),
            category: c.into(),
        };
        ix.apply(
            &[("a.parquet".into(), 1)],
            vec![(
                "a.parquet".into(),
                HourFile {
                    rows: vec![row(0, 1, 1), row(0, 2, 10)],
                    products: vec![(1, info("Laptops", "Dell")), (2, info("Tablets", "Apple"))],
                },
            )],
        );
        let live = Live::default();
        let q = |c: Option<&str>, b: Option<&str>| Query {
            hours: 1,
            category: c.map(String::from),
            brand: b.map(String::from),
        };
        assert_eq!(ix.hourly(&live, &q(None, None)).units, 11);
        assert_eq!(ix.hourly(&live, &q(Some("Laptops"), None)).units, 1);
        assert_eq!(ix.hourly(&live, &q(None, Some("Apple"))).units, 10);
        assert_eq!(
            ix.hourly(&live, &q(Some("Laptops"), Some("Apple"))).units,
            0
        );
        assert_eq!(
            ix.filters().1,
            vec!["Apple".to_string(), "Dell".to_string()]
        );
    }

    #[test]
    fn health_says_stale_after_the_limit() {
        let mut live = Live::default();
        live.partitions.insert(0, ck(1, vec![]));
        let h = health(&live, 100_000_000, 120_000_000);
        assert!(!h.stale);
        assert!(health(&live, 121_000_000, 120_000_000).stale);
        assert_eq!(h.partitions[0].flushes, 1);
    }
}
