//! The partition core: one source partition's state and every decision about it, synchronous
//! and without IO. The shell hands it decoded events and clock readings; it answers with
//! positions to seek to, messages to send and, at a flush, a [`FlushPlan`](super::plan).
//!
//! A partition's decisions depend only on its own event order (see [`super::window`]): a
//! replay from its checkpoint decides exactly as the run that crashed, and the keys that run
//! already sent (found by the recovery scan) are dropped here, once each.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::outputs::SourcedSale;
use super::stock::{self, Alert, Stock, StockRecord};
use super::totals::{self, Totals};
use super::window::{ClosedWindow, Outcome, WindowSpec, WindowState, Windows};
use super::{Counters, business};
use crate::config::{Config, Feature, OutputFormat};
use crate::io::avro::{Registry, SchemaKind, Writer};
use crate::io::kafka::partition_for;
use crate::records::ProductSale;
use crate::units::rfc3339_micros;

/// The schema ids the outputs are framed with (Avro).
#[derive(Debug, Clone, Copy, Default)]
pub struct SchemaIds {
    pub window: u32,
    pub totals: u32,
    pub top: u32,
    pub alert: u32,
    pub segment: u32,
}

impl SchemaIds {
    /// The ids the registry gives the stream's outputs.
    pub fn from_registry(r: &Registry) -> crate::Result<SchemaIds> {
        Ok(SchemaIds {
            window: r.id(SchemaKind::WindowedSales)?,
            totals: r.id(SchemaKind::ProductTotals)?,
            top: r.id(SchemaKind::TopProducts)?,
            alert: r.id(SchemaKind::LowStockAlert)?,
            segment: r.id(SchemaKind::SegmentSales)?,
        })
    }
}

/// What the core needs of the configuration, read once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub specs: Arc<Vec<WindowSpec>>,
    /// Allowed lateness, microseconds.
    pub lateness: i64,
    pub totals: bool,
    pub alerts: bool,
    /// Per-product low-stock thresholds, and the default.
    pub thresholds: HashMap<i64, i64>,
    pub default_threshold: i64,
    pub top_n: usize,
    /// Partitions of the source topic (products are routed by key over them).
    pub source_partitions: i32,
    pub roll_bytes: usize,
    pub roll_interval: Duration,
    pub totals_interval: Duration,
    pub idle_timeout: Duration,
    pub format: OutputFormat,
    pub schemas: SchemaIds,
    pub topics: crate::config::Topics,
}

impl Settings {
    pub fn new(
        cfg: &Config,
        specs: Vec<WindowSpec>,
        schemas: SchemaIds,
        source_partitions: i32,
    ) -> Settings {
        let s = &cfg.stream;
        Settings {
            specs: Arc::new(specs),
            lateness: i64::try_from(s.allowed_lateness.as_micros()).unwrap_or(i64::MAX),
            totals: s.has(Feature::Totals),
            alerts: s.has(Feature::Alerts),
            // Checked when the configuration loaded.
            thresholds: s
                .low_stock_thresholds
                .iter()
                .filter_map(|(k, v)| Some((k.parse::<i64>().ok()?, *v)))
                .collect(),
            default_threshold: s.low_stock_threshold,
            top_n: s.top_n,
            source_partitions,
            roll_bytes: s.roll_bytes,
            roll_interval: s.roll_interval,
            totals_interval: s.totals_interval,
            idle_timeout: s.idle_timeout,
            format: s.output_format,
            schemas,
            topics: cfg.topics.clone(),
        }
    }

    fn threshold(&self, product: i64) -> i64 {
        self.thresholds
            .get(&product)
            .copied()
            .unwrap_or(self.default_threshold)
    }
}

/// A message to send, with the idempotency key that recovery matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMsg {
    /// Shared by every message of a flush to the same topic.
    pub topic: Arc<str>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub idempotency_key: String,
    /// Extra headers (reason, origin) for dead letters and late events.
    pub headers: Vec<(&'static str, String)>,
}

/// One partition's checkpoint, stored at `_state/stream/<group>/<topic>/p<N>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Flushes completed for this partition.
    pub seq: u64,
    pub next_offset: Option<i64>,
    pub counters: Counters,
    /// `topic/partition` -> the next offset there when this checkpoint was taken.
    pub output_offsets: BTreeMap<String, i64>,
    pub windows: WindowState,
    /// Running totals per product (and what was published of them).
    #[serde(default)]
    pub totals: Totals,
    /// Low-stock state per product.
    #[serde(default)]
    pub stock: Stock,
}

/// The files an unfinished flush was writing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    pub seq: u64,
    pub files: Vec<String>,
}

pub use crate::offsets::{Cursor, Position};

/// How long an unconfirmed partition may stay silent before [`Partition::stalled`] probes.
pub const STALL_PROBE: Duration = Duration::from_secs(2);

/// One consumed message.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub topic: &'a str,
    pub offset: i64,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

/// What became of a recorded event (for the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Aggregated,
    Late,
    DeadLettered,
}

/// Alerts and totals due between checkpoints.
#[derive(Debug, Default)]
pub struct Eager {
    pub msgs: Vec<OutMsg>,
    pub alerts: u64,
    pub totals: u64,
    /// Due messages not sent because recovery found them already in the outputs.
    pub skipped: usize,
}

/// One source partition.
pub struct Partition {
    pub id: i32,
    pub(super) windows: Windows,
    pub(super) seq: u64,
    /// The offset expected next (the checkpoint's, then past each event taken) and its gap
    /// and probe state.
    pub(super) cursor: Cursor,
    /// When a message last came or the partition was last sought (for [`Self::stalled`]).
    heard: Instant,
    /// The first offset of the running flush (names its files).
    pub(super) flush_start: Option<i64>,
    pub(super) counters: Counters,
    pub(super) raw: Vec<SourcedSale>,
    pub(super) late: Vec<SourcedSale>,
    pub(super) closed: Vec<ClosedWindow>,
    /// Late events and dead letters for the next flush.
    pub(super) out: Vec<OutMsg>,
    buffered_bytes: usize,
    span_started: Instant,
    last_event: Instant,
    last_totals: Instant,
    /// The consumer reported the end of the partition and nothing came since.
    pub at_end: bool,
    dirty: bool,
    /// Idempotency keys already in the outputs past the checkpoint (crash recovery). Kept
    /// across flushes until matched: the replay may cut its flushes elsewhere.
    already_sent: HashSet<String>,
    pub(super) totals: Totals,
    pub(super) stock: Stock,
    /// Alerts not yet sent.
    alerts: Vec<Alert>,
}

impl Partition {
    /// The partition as its checkpoint left it (a fresh one without), knowing the keys that
    /// were sent after that checkpoint, in output order.
    pub fn restore(
        id: i32,
        ck: Option<Checkpoint>,
        sent: Vec<String>,
        s: &Settings,
        now: Instant,
    ) -> Partition {
        let (windows, mut totals, mut stock) = match &ck {
            Some(c) => (
                Windows::restore(s.specs.clone(), s.lateness, c.windows.clone()),
                c.totals.clone(),
                c.stock.clone(),
            ),
            None => (
                Windows::new(s.specs.clone(), s.lateness),
                Totals::default(),
                Stock::default(),
            ),
        };
        let mut already_sent = HashSet::new();
        for k in sent {
            if let Some((product, orders)) = totals::parse_totals_key(&k) {
                totals.mark_sent(product, orders);
                continue;
            }
            if let Some((product, low)) = stock::parse_alert_key(&k) {
                // The newest alert sent decides whether the product is alerted, before the
                // current inventory is applied.
                stock.mark_alerted(product, low);
            }
            already_sent.insert(k);
        }
        let next_offset = ck.as_ref().and_then(|c| c.next_offset);
        Partition {
            id,
            windows,
            seq: ck.as_ref().map_or(0, |c| c.seq),
            cursor: Cursor::at(next_offset),
            heard: now,
            flush_start: next_offset,
            counters: ck.as_ref().map(|c| c.counters).unwrap_or_default(),
            raw: vec![],
            late: vec![],
            closed: vec![],
            out: vec![],
            buffered_bytes: 0,
            span_started: now,
            last_event: now,
            last_totals: now,
            at_end: false,
            dirty: false,
            already_sent,
            totals,
            stock,
            alerts: vec![],
        }
    }

    pub fn next_offset(&self) -> Option<i64> {
        self.cursor.next()
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn watermark(&self) -> i64 {
        self.windows.watermark()
    }
    pub fn open_keys(&self) -> usize {
        self.windows.open_keys()
    }
    /// Keys recovery found that the replay has not produced again yet.
    pub fn pending_already_sent(&self) -> usize {
        self.already_sent.len()
    }

    /// Where `offset` stands: covered by the checkpoint, past a gap, or next (the rule of
    /// [`crate::offsets`]).
    #[inline]
    pub fn position(&mut self, offset: i64) -> Position {
        self.cursor.take(offset)
    }

    /// The consumer reported the end of the partition: `None` if it is (the partition is now
    /// `at_end`), or where to seek first. A cursor restored from a checkpoint is settled only
    /// once a message reached it: Tansu 0.6.0 reports the end early, and delivers nothing,
    /// when the checkpoint falls inside the broker's last record batch (see
    /// [`Cursor::probe`]).
    pub fn reached_end(&mut self) -> Option<i64> {
        let probe = self.cursor.probe();
        self.at_end = probe.is_none();
        probe
    }

    /// A message came (or a seek was made) at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.heard = now;
    }

    /// Where to seek when nothing at all has come for [`STALL_PROBE`] while the cursor is
    /// not yet confirmed: a checkpoint inside the broker's last record batch, which Tansu
    /// 0.6.0 answers with neither a message nor an end of partition (see
    /// [`Cursor::probe`]), or a seek back that failed. `None` once anything reached the
    /// cursor.
    pub fn stalled(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.heard) < STALL_PROBE {
            return None;
        }
        let to = self.cursor.probe()?;
        self.heard = now;
        Some(to)
    }

    /// The broker's log start is `log_start` (asked after a lasting gap): the offsets this
    /// partition expected below it are gone, and how many is returned.
    pub fn skip_removed(&mut self, log_start: i64) -> Option<i64> {
        let lost = self.cursor.skip_removed(log_start)?;
        self.flush_start.get_or_insert(log_start);
        // The next flush saves the new cursor, so a restart does not count the loss again.
        self.dirty = true;
        Some(lost)
    }

    /// Records the next event (`sale` is its decoding, the error the dead-letter reason;
    /// `segment` the customer's segment). Call after [`Partition::position`] said `Next`.
    #[inline]
    pub fn record(
        &mut self,
        s: &Settings,
        ev: Event<'_>,
        sale: Result<ProductSale, String>,
        segment: Option<&str>,
        now: Instant,
    ) -> Recorded {
        let (p, offset) = (self.id, ev.offset);
        self.at_end = false;
        self.dirty = true;
        self.last_event = now;
        self.counters.consumed += 1;
        self.buffered_bytes += ev.payload.len() * 4 + 64;
        debug_assert_eq!(
            self.cursor.next(),
            Some(offset + 1),
            "record after position"
        );
        if self.flush_start.is_none() {
            self.flush_start = Some(offset);
        }
        let recorded = match sale {
            Err(reason) => {
                self.counters.dead_lettered += 1;
                let mut headers = vec![
                    ("jobs.stage", "stream".into()),
                    ("jobs.reason", reason),
                    ("jobs.topic", ev.topic.into()),
                    ("jobs.partition", p.to_string()),
                    ("jobs.offset", offset.to_string()),
                ];
                // A value too large for the broker would stop the stream at this message
                // for good: the dead letter keeps its head, the source offset keeps the rest.
                let (key, value) = (cut(ev.key, DLQ_MAX_KEY), cut(ev.payload, DLQ_MAX_VALUE));
                if value.len() < ev.payload.len() || key.len() < ev.key.len() {
                    headers.push((
                        "jobs.truncated",
                        format!(
                            "key {} bytes, value {} bytes",
                            ev.key.len(),
                            ev.payload.len()
                        ),
                    ));
                }
                self.out.push(OutMsg {
                    topic: s.topics.dlq.as_str().into(),
                    key: key.to_vec(),
                    value: value.to_vec(),
                    idempotency_key: format!("dlq|{p}|{offset}"),
                    headers,
                });
                Recorded::DeadLettered
            }
            Ok(sale) => {
                // Every valid sale, late or not, counts in the totals and against the stock.
                let qty = i64::from(sale.quantity_sold);
                let ts = sale.transaction_date_micros;
                if s.totals {
                    self.totals
                        .record(sale.product_id, qty, qty * sale.price_per_unit_cents, ts);
                }
                if s.alerts
                    && let Some(a) =
                        self.stock
                            .sale(sale.product_id, qty, ts, s.threshold(sale.product_id))
                {
                    self.alerts.push(a);
                }
                match self.windows.record(&sale, segment) {
                    Outcome::Aggregated => {
                        self.counters.aggregated += 1;
                        self.raw.push(SourcedSale {
                            sale,
                            partition: p,
                            offset,
                            watermark: None,
                        });
                        Recorded::Aggregated
                    }
                    Outcome::Late { watermark } => {
                        self.counters.late += 1;
                        self.out.push(OutMsg {
                            topic: s.topics.late_sales.as_str().into(),
                            key: ev.key.to_vec(),
                            value: ev.payload.to_vec(),
                            idempotency_key: format!("late|{p}|{offset}"),
                            headers: vec![("jobs.watermark", rfc3339_micros(watermark))],
                        });
                        let s = SourcedSale {
                            sale,
                            partition: p,
                            offset,
                            watermark: Some(watermark),
                        };
                        self.raw.push(s.clone());
                        self.late.push(s);
                        Recorded::Late
                    }
                }
            }
        };
        let before = self.closed.len();
        self.windows.advance(&mut self.closed);
        self.buffered_bytes += (self.closed.len() - before) * CLOSED_ROW_BYTES;
        recorded
    }

    /// Enough is buffered to flush now.
    #[inline]
    pub fn full(&self, s: &Settings) -> bool {
        self.buffered_bytes >= s.roll_bytes
    }

    /// This partition's watermark, if it is active (an event within the idle timeout).
    pub fn active_watermark(&self, s: &Settings, now: Instant) -> Option<i64> {
        (now.duration_since(self.last_event) < s.idle_timeout
            && self.windows.max_event_time().is_some())
        .then(|| self.windows.watermark())
    }

    /// An idle partition at its end follows the slowest active one (`active`), so one quiet
    /// partition does not hold its windows open forever.
    pub fn follow(&mut self, s: &Settings, active: Option<i64>, now: Instant) {
        if let Some(wm) = active
            && now.duration_since(self.last_event) >= s.idle_timeout
            && self.at_end
            && self.windows.watermark() < wm
        {
            let before = self.closed.len();
            self.windows.advance_to(wm, &mut self.closed);
            if self.closed.len() > before {
                self.buffered_bytes += (self.closed.len() - before) * CLOSED_ROW_BYTES;
                self.dirty = true;
            }
        }
    }

    /// A flush is due: something changed and the roll interval has passed.
    pub fn due(&self, s: &Settings, now: Instant) -> bool {
        self.dirty && now.duration_since(self.span_started) >= s.roll_interval
    }

    /// Closes every open window (end of input, `--until-idle`).
    pub fn close_all(&mut self) {
        self.windows.flush_all(&mut self.closed);
        self.dirty = true;
    }

    /// Applies the inventory rows of this partition's products to its stock state.
    pub fn apply_inventory(&mut self, s: &Settings, inventory: &HashMap<i64, StockRecord>) {
        if !s.alerts {
            return;
        }
        let mut rows: Vec<_> = inventory
            .iter()
            .filter(|(id, _)| {
                partition_for(id.to_string().as_bytes(), s.source_partitions) == self.id
            })
            .collect();
        rows.sort_unstable_by_key(|r| *r.0);
        for (id, rec) in rows {
            if let Some(a) = self.stock.set_record(*id, *rec, s.threshold(*id)) {
                self.alerts.push(a);
                self.dirty = true;
            }
        }
    }

    /// The alerts and totals due now (all changed totals with `force`), without those
    /// recovery found already sent. They go out between checkpoints: their keys name their
    /// content, and recovery finds what went out after the last checkpoint.
    pub fn eager(&mut self, s: &Settings, force: bool, now: Instant) -> Eager {
        let t = &s.topics;
        let (alerts_topic, totals_topic): (Arc<str>, Arc<str>) = (
            t.low_stock_alerts.as_str().into(),
            t.aggregated_product_sales.as_str().into(),
        );
        let mut w = Writer::default();
        let mut e = Eager::default();
        for a in std::mem::take(&mut self.alerts) {
            let info = self
                .windows
                .product(a.product_id)
                .cloned()
                .unwrap_or_default();
            e.alerts += 1;
            e.msgs.push(OutMsg {
                topic: alerts_topic.clone(),
                key: a.product_id.to_string().into_bytes(),
                value: business::alert_value(s.format, s.schemas.alert, &a, &info, &mut w),
                idempotency_key: a.key(),
                headers: vec![],
            });
        }
        if s.totals && (force || now.duration_since(self.last_totals) >= s.totals_interval) {
            self.last_totals = now;
            for (product, total) in self.totals.take_changed() {
                let info = self.windows.product(product).cloned().unwrap_or_default();
                e.totals += 1;
                e.msgs.push(OutMsg {
                    topic: totals_topic.clone(),
                    key: product.to_string().into_bytes(),
                    value: business::totals_value(
                        s.format,
                        s.schemas.totals,
                        product,
                        &info,
                        &total,
                        &mut w,
                    ),
                    idempotency_key: totals::totals_key(product, total.agg.orders),
                    headers: vec![],
                });
            }
        }
        e.skipped = self.drop_sent(&mut e.msgs);
        e
    }

    /// Drops the messages recovery found already sent; returns how many.
    pub(super) fn drop_sent(&mut self, msgs: &mut Vec<OutMsg>) -> usize {
        if self.already_sent.is_empty() {
            return 0;
        }
        let before = msgs.len();
        msgs.retain(|m| !self.already_sent.remove(&m.idempotency_key));
        before - msgs.len()
    }

    /// The flush whose plan was carried out is done: the next one starts here.
    pub fn flushed(&mut self, seq: u64, now: Instant) {
        self.seq = seq;
        self.flush_start = self.cursor.next();
        self.buffered_bytes = 0;
        self.span_started = now;
        self.dirty = false;
    }
}

/// What a closed window row holds until its flush is carried out, counted against
/// `roll_bytes`: the row (~100 bytes), its Arrow/Parquet share and its output message with
/// headers (~400). A sparse shop (10,000 products over a year) closes ~14 rows per sale, so
/// counting only the input would let one flush hold the whole backfill's output.
pub const CLOSED_ROW_BYTES: usize = 512;

/// The largest value and key a dead letter copies (the rest is at its source offset).
pub const DLQ_MAX_VALUE: usize = 256 * 1024;
pub const DLQ_MAX_KEY: usize = 1024;

fn cut(b: &[u8], max: usize) -> &[u8] {
    &b[..b.len().min(max)]
}

pub use formats::sale::decode_sale;

#[cfg(test)]
pub(super) mod tests;
