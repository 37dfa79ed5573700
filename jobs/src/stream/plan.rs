//! The flush plan: what one partition's flush writes, upserts and sends, decided in full
//! before any of it is carried out. Pure: the shell only executes it, in the order of the
//! module docs of [`super`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use super::business::{self, LabelTable, TopList};
use super::outputs;
use super::partition::{Checkpoint, Intent, OutMsg, Partition, Settings};
use super::sinks::LabelRow;
use super::top::{self, Metric};
use super::window::{ClosedWindow, GroupKey, WindowSpec};
use crate::Result;
use crate::io::avro::Writer;
use crate::io::lake;

/// The closed rows a flush hands to the stores for fast reads (SQL and Redis), owned by the
/// plan; the rows the stores see are borrowed views of it.
#[derive(Debug)]
pub struct Stores {
    specs: Arc<Vec<WindowSpec>>,
    partition: i32,
    partitions: i32,
    top_n: usize,
    closed: Vec<ClosedWindow>,
    /// Where each closed row goes, decided once when the plan is made.
    routes: Routes,
}

/// The routes of the closed rows, by index into [`Stores::closed`].
#[derive(Debug, Default)]
struct Routes {
    windows: Vec<usize>,
    segments: Vec<usize>,
    countries: Vec<usize>,
    cards: Vec<usize>,
    /// (spec, window start) -> product rows ranked for the top-N lists.
    top: BTreeMap<(usize, i64), Vec<usize>>,
}

impl Routes {
    fn of(specs: &[WindowSpec], closed: &[ClosedWindow]) -> Routes {
        let mut r = Routes::default();
        for (i, c) in closed.iter().enumerate() {
            let g = specs[c.spec].groups;
            match c.key {
                GroupKey::Product(_) => {
                    if g.sales_windows {
                        r.windows.push(i);
                    }
                    if g.top {
                        r.top.entry((c.spec, c.start)).or_default().push(i);
                    }
                }
                GroupKey::Segment(..) => r.segments.push(i),
                GroupKey::Country(_) => r.countries.push(i),
                GroupKey::CardType(_) => r.cards.push(i),
            }
        }
        r
    }
}

impl Stores {
    fn rows(&self, ix: &[usize]) -> Vec<&ClosedWindow> {
        ix.iter().map(|&i| &self.closed[i]).collect()
    }

    /// The top-N lists of the closed windows (lake, SQL, Redis, Kafka): ranked when the plan
    /// is made and again when the stores are written, a sort of one window's products each.
    pub fn tops(&self) -> Vec<TopList<'_>> {
        let mut tops = Vec::new();
        for (&(spec, start), ix) in &self.routes.top {
            let rows = self.rows(ix);
            for metric in Metric::ALL {
                tops.push(TopList {
                    metric,
                    spec: &self.specs[spec],
                    start,
                    end: start + self.specs[spec].size_micros,
                    partition: self.partition,
                    partitions: self.partitions,
                    rows: top::top_n(&rows, metric, self.top_n),
                });
            }
        }
        tops
    }

    /// The dashboard rows: (countries, card types).
    pub fn labels(&self) -> (Vec<LabelRow<'_>>, Vec<LabelRow<'_>>) {
        let r = &self.routes;
        let label = |ix: &[usize]| -> Vec<LabelRow<'_>> {
            ix.iter()
                .map(|&i| LabelRow {
                    spec: &self.specs[self.closed[i].spec].name,
                    row: &self.closed[i],
                    partition: self.partition,
                })
                .collect()
        };
        (label(&r.countries), label(&r.cards))
    }
}

/// Counts of a flush, for the metrics and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    pub windows: usize,
    pub top_lists: usize,
    pub files: usize,
    pub bytes: usize,
    pub alerts: u64,
    pub totals: u64,
    /// Messages not sent because recovery found them already in the outputs.
    pub skipped: usize,
}

/// One partition's flush, decided.
#[derive(Debug)]
pub struct FlushPlan {
    pub partition: i32,
    pub seq: u64,
    /// The files this flush writes, named before any is written.
    pub intent: Intent,
    /// `(path, Parquet bytes)`, one atomic put each.
    pub files: Vec<(String, Vec<u8>)>,
    pub stores: Stores,
    /// In emission order: windows, segments, top lists, late events, dead letters, alerts,
    /// totals; without those already sent.
    pub messages: Vec<OutMsg>,
    /// The `sales_totals` snapshot of this partition, overwritten at each checkpoint.
    pub totals_file: Option<(String, Vec<u8>)>,
    /// The checkpoint; the shell adds the output offsets once every message is acknowledged.
    pub checkpoint: Checkpoint,
    pub stats: FlushStats,
}

impl Partition {
    /// Takes the buffers and decides the flush: the buffered rows and messages move into the
    /// plan, the keys it will not resend are struck off, and the totals it publishes count as
    /// published. The sequence and the start of the next flush move only when
    /// [`Partition::flushed`] confirms this one. A plan that failed is never retried in the
    /// same process: the run stops, and the replay from the checkpoint decides it again.
    pub fn plan_flush(&mut self, s: &Settings, now: Instant) -> Result<FlushPlan> {
        let p = self.id;
        let seq = self.seq + 1;
        let start = self.flush_start.or(self.cursor.next()).unwrap_or(0);
        let name = format!("part-p{p:03}-s{seq:08}-o{start:020}.parquet");
        let closed = std::mem::take(&mut self.closed);
        let stores = Stores {
            routes: Routes::of(&s.specs, &closed),
            specs: s.specs.clone(),
            partition: p,
            partitions: s.source_partitions,
            top_n: s.top_n,
            closed,
        };
        let raw = std::mem::take(&mut self.raw);
        let late = std::mem::take(&mut self.late);
        let specs = &*s.specs;
        let routes = &stores.routes;
        let tops = stores.tops();
        let (windows, segments) = (stores.rows(&routes.windows), stores.rows(&routes.segments));

        let mut batches = outputs::window_files(specs, &windows)?;
        batches.extend(outputs::sales_files("sales_raw", &raw, false)?);
        batches.extend(outputs::sales_files("late_sales", &late, true)?);
        for (kind, ix) in [
            (LabelTable::Segments, &routes.segments),
            (LabelTable::Country, &routes.countries),
            (LabelTable::CardType, &routes.cards),
        ] {
            batches.extend(business::label_files(kind, specs, &stores.rows(ix), p)?);
        }
        batches.extend(business::top_files(&tops)?);
        // One file per folder, encoded on every core (each file's bytes depend on its rows
        // alone; the order stays the folders').
        let batches: Vec<_> = batches.into_iter().collect();
        let files = batches
            .into_par_iter()
            .map(|(dir, b)| Ok((format!("{dir}/{name}"), lake::parquet_bytes(&[b])?)))
            .collect::<Result<Vec<_>>>()?;

        let (t, mut w) = (&s.topics, Writer::default());
        let topic = |name: &String| -> Arc<str> { name.as_str().into() };
        let (windows_topic, segments_topic, top_topic) = (
            topic(&t.windowed_product_sales),
            topic(&t.customer_segment_sales),
            topic(&t.top_products),
        );
        let mut messages = Vec::with_capacity(stores.closed.len() + self.out.len());
        for c in &windows {
            let spec = &specs[c.spec];
            if !spec.groups.kafka {
                continue;
            }
            messages.push(OutMsg {
                topic: windows_topic.clone(),
                key: c.product_id().to_string().into_bytes(),
                value: outputs::window_value(s.format, s.schemas.window, spec, c, &mut w),
                idempotency_key: outputs::window_key(spec, c),
                headers: vec![],
            });
        }
        for c in &segments {
            let spec = &specs[c.spec];
            messages.push(OutMsg {
                topic: segments_topic.clone(),
                key: c.label.as_bytes().to_vec(),
                value: business::segment_value(s.format, s.schemas.segment, spec, c, &mut w),
                idempotency_key: format!(
                    "segment|{}|{}|{}|{}",
                    spec.name,
                    c.start,
                    c.label,
                    c.product_id()
                ),
                headers: vec![],
            });
        }
        for l in &tops {
            messages.push(OutMsg {
                topic: top_topic.clone(),
                key: l.key().into_bytes(),
                value: l.value(s.format, s.schemas.top, &mut w),
                idempotency_key: l.idempotency_key(),
                headers: vec![],
            });
        }
        let (n_windows, n_tops) = (windows.len(), tops.len());
        drop((windows, segments, tops));
        messages.append(&mut self.out);
        let mut skipped = self.drop_sent(&mut messages);
        let eager = self.eager(s, true, now);
        messages.extend(eager.msgs);
        skipped += eager.skipped;

        let totals_file = match s.totals {
            true => {
                let snap = self.totals.snapshot();
                match snap.is_empty() {
                    true => None,
                    false => {
                        let b = business::totals_batch(
                            &snap,
                            |id| self.windows.product(id).cloned(),
                            p,
                            self.cursor.next().unwrap_or(0),
                        )?;
                        let path = format!("sales_totals/part-p{p:03}.parquet");
                        Some((path, lake::parquet_bytes(&[b])?))
                    }
                }
            }
            false => None,
        };
        let stats = FlushStats {
            windows: n_windows,
            top_lists: n_tops,
            files: files.len(),
            bytes: files.iter().map(|f| f.1.len()).sum(),
            alerts: eager.alerts,
            totals: eager.totals,
            skipped,
        };
        Ok(FlushPlan {
            partition: p,
            seq,
            intent: Intent {
                seq,
                files: files.iter().map(|f| f.0.clone()).collect(),
            },
            files,
            stores,
            messages,
            totals_file,
            checkpoint: Checkpoint {
                seq,
                next_offset: self.cursor.next(),
                counters: self.counters,
                output_offsets: BTreeMap::new(),
                windows: self.windows.state(),
                totals: self.totals.clone(),
                stock: self.stock.clone(),
            },
            stats,
        })
    }
}
