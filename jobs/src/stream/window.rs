//! The window core: synchronous and pure. Event-time tumbling and sliding windows per
//! product, a watermark, lateness, and the state a checkpoint saves. No IO, no async.
//!
//! Rules, per source partition (a product's events all live in one partition, so its
//! aggregates are complete within it, and every decision below depends only on the
//! partition's own event order: a replay after a crash decides exactly the same):
//! - watermark = max event time seen - allowed lateness;
//! - an event older than the watermark is **late**: it goes to the late output and into no
//!   window; any other event goes into every window that contains it, none of which has
//!   been emitted (its end is after the event, hence after the watermark);
//! - a window is emitted **once**, when the watermark reaches its end, or at the end of
//!   input (`flush_all`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use super::spec::{Groups, WindowSpec};
use crate::records::ProductSale;

/// FxHash's multiply-rotate hasher, for the core's maps of small integer keys (one lookup per
/// window per event). The keys are our own ids, so SipHash's flood resistance buys nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(w) ^ rest.len() as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// What a product is called; shared by all its windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProductInfo {
    pub name: String,
    pub brand: String,
    pub category: String,
}

/// A running aggregate. Revenue in cents: exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agg {
    pub quantity: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

impl Agg {
    /// Adds one sale. The sums saturate instead of wrapping (or panicking in a debug build):
    /// a sale's revenue is checked to fit 64-bit cents, but two valid ones of ~5e18 cents in
    /// one window would overflow their sum, and a panic here would stop the stream at the
    /// same message after every restart.
    #[inline]
    pub fn add(&mut self, quantity: i64, revenue_cents: i64) {
        self.quantity = self.quantity.saturating_add(quantity);
        self.revenue_cents = self.revenue_cents.saturating_add(revenue_cents);
        self.orders = self.orders.saturating_add(1);
    }
}

/// What one aggregate of a window is grouped by. Labels (segment, country, card type) are
/// interned per partition; [`ClosedWindow::label`] carries the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Product(i64),
    Segment(u32, i64),
    Country(u32),
    CardType(u32),
}

/// The label of a missing segment, country or card type: such sales are counted, never lost.
pub const UNKNOWN: &str = "unknown";

/// A window that closed: one row per group (product, segment and product, country, card).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    pub spec: usize,
    pub start: i64,
    pub end: i64,
    pub key: GroupKey,
    /// The product, for product and segment rows (empty names otherwise).
    pub info: Arc<ProductInfo>,
    /// The segment, country or card type; empty for product rows.
    pub label: Arc<str>,
    pub agg: Agg,
}

impl ClosedWindow {
    /// The product of a product or segment row (0 otherwise).
    pub fn product_id(&self) -> i64 {
        match self.key {
            GroupKey::Product(p) | GroupKey::Segment(_, p) => p,
            _ => 0,
        }
    }
}

/// Where an event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Aggregated,
    /// Older than the watermark, which is given.
    Late {
        watermark: i64,
    },
}

/// One partition's windows.
#[derive(Debug, Clone)]
pub struct Windows {
    specs: Arc<Vec<WindowSpec>>,
    lateness: i64,
    /// Max event time seen; `None` before the first event.
    max_ts: Option<i64>,
    /// Everything up to here was emitted (the watermark at the last `advance`).
    emitted_to: i64,
    /// Open windows by (end, spec, start) -> group -> aggregate; hashed, since every event
    /// looks up one window per slide of every shape...
    open: FastMap<WindowKey, FastMap<GroupKey, Agg>>,
    /// ... and the same keys in order, to close them oldest first.
    order: BTreeSet<WindowKey>,
    products: FastMap<i64, Arc<ProductInfo>>,
    labels: Labels,
}

/// (end, spec, start) of an open window.
type WindowKey = (i64, usize, i64);

/// Interned labels: ids are given in first-seen order, so a replay assigns the same ids.
#[derive(Debug, Clone, Default)]
struct Labels {
    names: Vec<Arc<str>>,
    ids: FastMap<Arc<str>, u32>,
    /// The label of product rows, shared (a sparse shop closes ~14 of them per sale).
    empty: Arc<str>,
}

impl Labels {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.names.len() as u32;
        let a: Arc<str> = Arc::from(text);
        self.names.push(a.clone());
        self.ids.insert(a, id);
        id
    }
    fn name(&self, id: u32) -> Arc<str> {
        self.names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(UNKNOWN))
    }
}

/// A non-product open aggregate in a checkpoint:
/// (end, spec, start, kind, label, product, quantity, revenue_cents, orders).
pub type GroupRow = (i64, usize, i64, u8, u32, i64, i64, i64, i64);

/// The watermark of a partition that has seen events up to `max_ts` and emitted everything up
/// to `emitted_to`: max event time - lateness, never behind what was emitted.
#[inline]
pub fn watermark(max_ts: Option<i64>, emitted_to: i64, lateness: i64) -> i64 {
    max_ts.map_or(i64::MIN, |m| m - lateness).max(emitted_to)
}

/// The serialisable form of [`Windows`], stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WindowState {
    pub max_ts: Option<i64>,
    pub emitted_to: i64,
    /// (end, spec, start, product, quantity, revenue_cents, orders): product rows.
    pub open: Vec<(i64, usize, i64, i64, i64, i64, i64)>,
    pub products: Vec<(i64, ProductInfo)>,
    /// (end, spec, start, kind, label, product, quantity, revenue_cents, orders) for the
    /// other groups: kind 1 = segment, 2 = country, 3 = card type.
    #[serde(default)]
    pub groups: Vec<GroupRow>,
    /// Interned labels, by id.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Windows {
    pub fn new(specs: Arc<Vec<WindowSpec>>, lateness_micros: i64) -> Self {
        Windows {
            specs,
            lateness: lateness_micros,
            max_ts: None,
            emitted_to: i64::MIN,
            open: FastMap::default(),
            order: BTreeSet::new(),
            products: FastMap::default(),
            labels: Labels::default(),
        }
    }

    /// The product's name, brand and category, if it has been seen.
    pub fn product(&self, id: i64) -> Option<&Arc<ProductInfo>> {
        self.products.get(&id)
    }

    /// The watermark: max event time - lateness (i64::MIN before any event).
    pub fn watermark(&self) -> i64 {
        watermark(self.max_ts, self.emitted_to, self.lateness)
    }

    /// Max event time seen.
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_ts
    }

    /// Number of open (window, product) aggregates.
    pub fn open_keys(&self) -> usize {
        self.open.values().map(|m| m.len()).sum()
    }

    /// Records one valid sale, with the customer's segment if known.
    pub fn record(&mut self, s: &ProductSale, segment: Option<&str>) -> Outcome {
        let ts = s.transaction_date_micros;
        let wm = self.watermark();
        if ts < wm {
            return Outcome::Late { watermark: wm };
        }
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        if self
            .products
            .get(&s.product_id)
            .is_none_or(|p| p.name != s.product_name)
        {
            self.products.insert(
                s.product_id,
                Arc::new(ProductInfo {
                    name: s.product_name.clone(),
                    brand: s.brand.clone(),
                    category: s.product_category.clone(),
                }),
            );
        }
        let revenue = i64::from(s.quantity_sold) * s.price_per_unit_cents;
        let qty = i64::from(s.quantity_sold);
        let mut keys = [GroupKey::Product(s.product_id); 4];
        for (i, spec) in self.specs.iter().enumerate() {
            let g = spec.groups;
            let mut n = 0;
            if g.products() {
                n += 1;
            }
            if g.segments {
                let seg = self.labels.id(segment.unwrap_or(UNKNOWN));
                keys[n] = GroupKey::Segment(seg, s.product_id);
                n += 1;
            }
            if g.dashboard {
                keys[n] =
                    GroupKey::Country(self.labels.id(s.country.as_deref().unwrap_or(UNKNOWN)));
                keys[n + 1] =
                    GroupKey::CardType(self.labels.id(s.card_type.as_deref().unwrap_or(UNKNOWN)));
                n += 2;
            }
            for start in spec.starts(ts) {
                let end = start + spec.size_micros;
                let m = match self.open.entry((end, i, start)) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        self.order.insert((end, i, start));
                        e.insert(FastMap::default())
                    }
                };
                for k in &keys[..n] {
                    m.entry(*k).or_default().add(qty, revenue);
                }
            }
        }
        Outcome::Aggregated
    }

    /// Emits, into `out`, every window whose end the watermark has reached.
    pub fn advance(&mut self, out: &mut Vec<ClosedWindow>) {
        let wm = self.watermark();
        self.close_through(wm, out);
    }

    /// Moves the watermark to at least `to` (an idle partition following the others) and
    /// emits what that closes.
    pub fn advance_to(&mut self, to: i64, out: &mut Vec<ClosedWindow>) {
        if to > self.emitted_to {
            self.emitted_to = to;
        }
        self.advance(out);
    }

    /// End of input: emits every open window.
    pub fn flush_all(&mut self, out: &mut Vec<ClosedWindow>) {
        self.close_through(i64::MAX, out);
    }

    fn close_through(&mut self, wm: i64, out: &mut Vec<ClosedWindow>) {
        while let Some(&(end, spec, start)) = self.order.first() {
            if end > wm {
                break;
            }
            self.order.pop_first();
            let window = self.open.remove(&(end, spec, start)).unwrap_or_default();
            let mut rows: Vec<(GroupKey, Agg)> = window.into_iter().collect();
            rows.sort_unstable_by_key(|r| r.0);
            for (key, agg) in rows {
                let (product, label) = match key {
                    GroupKey::Product(p) => (Some(p), None),
                    GroupKey::Segment(l, p) => (Some(p), Some(l)),
                    GroupKey::Country(l) | GroupKey::CardType(l) => (None, Some(l)),
                };
                // Every aggregated product was registered in `record`.
                let info = product
                    .and_then(|p| self.products.get(&p).cloned())
                    .unwrap_or_else(|| Arc::new(ProductInfo::default()));
                let label =
                    label.map_or_else(|| self.labels.empty.clone(), |l| self.labels.name(l));
                out.push(ClosedWindow {
                    spec,
                    start,
                    end,
                    key,
                    info,
                    label,
                    agg,
                });
            }
        }
        if wm > self.emitted_to {
            self.emitted_to = wm;
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> WindowState {
        let mut open = Vec::with_capacity(self.open_keys());
        let mut groups = Vec::new();
        for k in &self.order {
            let (end, spec, start) = k;
            let Some(m) = self.open.get(k) else { continue };
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_unstable_by_key(|r| *r.0);
            for (k, a) in rows {
                let (kind, label, p) = match *k {
                    GroupKey::Product(p) => {
                        open.push((
                            *end,
                            *spec,
                            *start,
                            p,
                            a.quantity,
                            a.revenue_cents,
                            a.orders,
                        ));
                        continue;
                    }
                    GroupKey::Segment(l, p) => (1, l, p),
                    GroupKey::Country(l) => (2, l, 0),
                    GroupKey::CardType(l) => (3, l, 0),
                };
                groups.push((
                    *end,
                    *spec,
                    *start,
                    kind,
                    label,
                    p,
                    a.quantity,
                    a.revenue_cents,
                    a.orders,
                ));
            }
        }
        let mut products: Vec<_> = self
            .products
            .iter()
            .map(|(k, v)| (*k, (**v).clone()))
            .collect();
        products.sort_unstable_by_key(|p| p.0);
        WindowState {
            max_ts: self.max_ts,
            emitted_to: self.emitted_to,
            open,
            products,
            groups,
            labels: self.labels.names.iter().map(|l| l.to_string()).collect(),
        }
    }

    /// Restores from a checkpoint.
    pub fn restore(specs: Arc<Vec<WindowSpec>>, lateness: i64, st: WindowState) -> Self {
        let mut w = Windows::new(specs, lateness);
        w.max_ts = st.max_ts;
        w.emitted_to = st.emitted_to;
        for (end, spec, start, p, q, r, o) in st.open {
            w.order.insert((end, spec, start));
            w.open.entry((end, spec, start)).or_default().insert(
                GroupKey::Product(p),
                Agg {
                    quantity: q,
                    revenue_cents: r,
                    orders: o,
                },
            );
        }
        for l in &st.labels {
            w.labels.id(l);
        }
        for (end, spec, start, kind, label, p, q, r, o) in st.groups {
            let key = match kind {
                1 => GroupKey::Segment(label, p),
                2 => GroupKey::Country(label),
                _ => GroupKey::CardType(label),
            };
            w.order.insert((end, spec, start));
            w.open.entry((end, spec, start)).or_default().insert(
                key,
                Agg {
                    quantity: q,
                    revenue_cents: r,
                    orders: o,
                },
            );
        }
        w.products = st
            .products
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;
    const M: i64 = 60_000_000;
    const T0: i64 = 1_763_683_200_000_000; // 2025-11-21T00:00:00Z

    fn sale(id: i64, product: i64, name: &str, qty: i32, cents: i64, ts: i64) -> ProductSale {
        ProductSale {
            transaction_id: id,
            product_id: product,
            product_name: name.into(),
            product_category: "Laptop".into(),
            brand: name.split(' ').next().unwrap().into(),
            quantity_sold: qty,
            price_per_unit_cents: cents,
            transaction_date_micros: ts,
            customer_id: None,
            country: None,
            card_type: None,
        }
    }

    fn specs(s: &[&str]) -> Arc<Vec<WindowSpec>> {
        Arc::new(s.iter().map(|x| WindowSpec::parse(x).unwrap()).collect())
    }

    #[test]
    fn parses_tumbling_and_sliding_specs() {
        let w = WindowSpec::parse("1h/5m").unwrap();
        assert_eq!(
            (w.name.as_str(), w.size_micros, w.slide_micros),
            ("1h_every_5m", H, 5 * M)
        );
        assert_eq!(w.starts(T0 + 7 * M).count(), 12);
        assert_eq!(w.starts(T0 + 7 * M).last(), Some(T0 + 5 * M));
        assert_eq!(w.starts(T0 + 7 * M).next(), Some(T0 + 5 * M - 11 * 5 * M));
        assert!(WindowSpec::parse("1h/7m").is_err());
        assert!(WindowSpec::parse("0s").is_err());
        assert_eq!(
            WindowSpec::parse("1d")
                .unwrap()
                .starts(T0 + 5 * H)
                .collect::<Vec<_>>(),
            vec![T0]
        );
    }

    #[test]
    fn two_valid_sales_whose_revenue_sum_overflows_saturate_instead_of_panicking() {
        // Each passes validation (quantity * price fits 64-bit cents); their sum does not.
        let (qty, cents) = (9_000_000, 999_999_999_999);
        let s = sale(1, 7, "Dell XPS", qty, cents, T0);
        assert!(crate::validate::sale(&s.as_row()).is_ok());
        let mut w = Windows::new(specs(&["1h"]), 0);
        w.record(&s, None);
        w.record(&sale(2, 7, "Dell XPS", qty, cents, T0 + M), None);
        let mut out = vec![];
        w.flush_all(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].agg.revenue_cents, i64::MAX);
        assert_eq!((out[0].agg.quantity, out[0].agg.orders), (18_000_000, 2));
    }

    #[test]
    fn the_seed_example_aggregates_exactly() {
        let mut w = Windows::new(specs(&["1h"]), 0);
        w.record(
            &sale(3001, 1, "Dell Inspiron", 2, 5_000_000, T0 + 10 * M),
            None,
        );
        w.record(
            &sale(3002, 11, "Apple iPhone 12", 3, 8_000_000, T0 + 20 * M),
            None,
        );
        w.record(
            &sale(3003, 5, "Lenovo ThinkPad", 1, 6_500_000, T0 + 30 * M),
            None,
        );
        let mut out = vec![];
        w.advance(&mut out);
        assert!(out.is_empty(), "the hour is not over");
        w.flush_all(&mut out);
        let got: Vec<_> = out
            .iter()
            .map(|c| {
                (
                    c.info.name.as_str(),
                    c.agg.quantity,
                    c.agg.revenue_cents,
                    c.start,
                    c.end,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("Dell Inspiron", 2, 10_000_000, T0, T0 + H),
                ("Lenovo ThinkPad", 1, 6_500_000, T0, T0 + H),
                ("Apple iPhone 12", 3, 24_000_000, T0, T0 + H),
            ]
        );
    }

    #[test]
    fn watermark_closes_windows_once_and_late_events_are_set_aside() {
        let mut w = Windows::new(specs(&["1h"]), 10 * M);
        w.record(&sale(1, 1, "Dell Inspiron", 1, 100, T0 + 5 * M), None);
        let mut out = vec![];
        // An event at 01:15 moves the watermark to 01:05: the 00:00 window closes.
        w.record(&sale(2, 1, "Dell Inspiron", 1, 100, T0 + H + 15 * M), None);
        w.advance(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start, out[0].agg.quantity), (T0, 1));
        // 00:59 is older than the watermark: late, in no window.
        assert_eq!(
            w.record(&sale(3, 1, "Dell Inspiron", 1, 100, T0 + 59 * M), None),
            Outcome::Late {
                watermark: T0 + H + 5 * M
            }
        );
        // 01:06 is within the lateness: aggregated.
        assert_eq!(
            w.record(&sale(4, 1, "Dell Inspiron", 1, 100, T0 + H + 6 * M), None),
            Outcome::Aggregated
        );
        w.advance(&mut out);
        assert_eq!(out.len(), 1, "nothing emitted twice");
        w.flush_all(&mut out);
        assert_eq!(
            (out[1].start, out[1].agg.quantity, out[1].agg.orders),
            (T0 + H, 2, 2)
        );
    }

    #[test]
    fn sliding_windows_count_each_event_in_every_window_it_falls_in() {
        let mut w = Windows::new(specs(&["1h/15m"]), 0);
        w.record(&sale(1, 1, "Dell Inspiron", 2, 150, T0 + 20 * M), None);
        let mut out = vec![];
        w.flush_all(&mut out);
        let starts: Vec<i64> = out.iter().map(|c| (c.start - T0) / M).collect();
        // [start, start + 60) contains minute 20 for starts -30, -15, 0 and 15.
        assert_eq!(starts, vec![-30, -15, 0, 15]);
        assert!(
            out.iter()
                .all(|c| c.agg.revenue_cents == 300 && c.end - c.start == H)
        );
    }

    #[test]
    fn revenue_is_exact_over_millions_of_events() {
        let mut w = Windows::new(specs(&["1d"]), 0);
        for i in 0..2_000_000 {
            w.record(
                &sale(
                    i,
                    1,
                    "Dell Inspiron",
                    1,
                    1999,
                    T0 + i * 40_000, // 40 ms apart: all within the day, in order
                ),
                None,
            );
        }
        let mut out = vec![];
        w.flush_all(&mut out);
        assert_eq!(out[0].agg.revenue_cents, 2_000_000 * 1999);
    }

    #[test]
    fn checkpoint_round_trip_resumes_identically() {
        let s = specs(&["1h", "1h/30m"]);
        let mut a = Windows::new(s.clone(), 5 * M);
        let events: Vec<_> = (0..200)
            .map(|i| {
                sale(
                    i,
                    i % 7,
                    "Dell Inspiron",
                    1 + (i % 3) as i32,
                    100 + i,
                    T0 + i * 3 * M / 2,
                )
            })
            .collect();
        for e in &events[..120] {
            a.record(e, None);
        }
        let mut out_a = vec![];
        a.advance(&mut out_a);
        let st = a.state();
        let json = serde_json::to_string(&st).unwrap();
        let mut b = Windows::restore(s, 5 * M, serde_json::from_str(&json).unwrap());
        let mut out_b = out_a.clone();
        for e in &events[120..] {
            a.record(e, None);
            b.record(e, None);
        }
        a.flush_all(&mut out_a);
        b.flush_all(&mut out_b);
        assert_eq!(out_a, out_b);
    }

    #[test]
    fn segments_countries_and_cards_are_grouped_and_unknowns_kept() {
        let mut spec = WindowSpec::parse("1h").unwrap();
        spec.groups = Groups {
            sales_windows: true,
            kafka: true,
            top: false,
            segments: true,
            dashboard: true,
        };
        let s = Arc::new(vec![spec]);
        let mut w = Windows::new(s.clone(), 0);
        let mut a = sale(1, 1, "Dell Inspiron", 2, 100, T0 + M);
        a.country = Some("DE".into());
        a.card_type = Some("Visa".into());
        let mut b = sale(2, 2, "Apple iPhone", 1, 300, T0 + 2 * M);
        b.country = Some("DE".into());
        w.record(&a, Some("Premium"));
        w.record(&b, None);
        // A checkpoint in the middle restores the interned labels too.
        let mut w = Windows::restore(s, 0, w.state());
        a.transaction_date_micros = T0 + 3 * M;
        w.record(&a, Some("Premium"));
        let mut out = vec![];
        w.flush_all(&mut out);
        let rows: Vec<(GroupKey, &str, i64, i64)> = out
            .iter()
            .map(|c| (c.key, &*c.label, c.agg.quantity, c.agg.revenue_cents))
            .collect();
        let (premium, de, visa, unknown) = (0, 1, 2, 3); // first-seen order
        assert_eq!(
            rows,
            vec![
                (GroupKey::Product(1), "", 4, 400),
                (GroupKey::Product(2), "", 1, 300),
                (GroupKey::Segment(premium, 1), "Premium", 4, 400),
                (GroupKey::Segment(unknown, 2), UNKNOWN, 1, 300),
                (GroupKey::Country(de), "DE", 5, 700),
                (GroupKey::CardType(visa), "Visa", 4, 400),
                (GroupKey::CardType(unknown), UNKNOWN, 1, 300),
            ]
        );
        assert_eq!(out[3].product_id(), 2);
        assert_eq!(out[3].info.name, "Apple iPhone");
    }
}
