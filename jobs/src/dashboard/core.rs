//! The dashboard's core, pure: an index of the lake's hourly windows kept file by file (per
//! product, per country, per card type), the stream's checkpoints, and the panels computed
//! from the two. No IO, no clock: the shell hands it listings, decoded files and checkpoints.
//!
//! A closed window is counted from the lake only when the flush that wrote its file is
//! covered by the partition's checkpoint (or the file is a compacted one); the windows that
//! are still open come from that same checkpoint. So a refresh never counts a window twice
//! (closed in a file and open in an older checkpoint) nor misses one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::stream::partition::Checkpoint;
use crate::stream::window::ProductInfo;
use crate::units::rfc3339_micros;

const HOUR: i64 = 3_600_000_000;

/// The lake tables the dashboard reads, each in its `window=<1h>` folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `sales_windows`: per product.
    Products,
    /// `sales_by_country`.
    Countries,
    /// `sales_by_card_type`.
    Cards,
    /// `sales_windows` of the daily window: the actuals beside a forecast.
    Daily,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Products,
        Table::Countries,
        Table::Cards,
        Table::Daily,
    ];

    /// The table's folder of one window.
    pub fn dir(self, window: &str) -> String {
        let t = match self {
            Table::Products | Table::Daily => "sales_windows",
            Table::Countries => "sales_by_country",
            Table::Cards => "sales_by_card_type",
        };
        format!("{t}/window={window}")
    }

    /// The label column of a grouped table.
    pub fn label_col(self) -> Option<&'static str> {
        match self {
            Table::Products | Table::Daily => None,
            Table::Countries => Some("country"),
            Table::Cards => Some("card_type"),
        }
    }

    /// The group kind the checkpoints store the table's open windows under.
    fn kind(self) -> u8 {
        match self {
            Table::Products | Table::Daily => 0,
            Table::Countries => 2,
            Table::Cards => 3,
        }
    }
}

/// One product's aggregate in one hourly window. Revenue in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRow {
    pub start: i64,
    pub product: i64,
    pub quantity: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

/// One country's or card type's aggregate in one hourly window (one source partition's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    pub start: i64,
    pub label: Arc<str>,
    pub quantity: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

/// One decoded window file: product rows or label rows, by its table.
#[derive(Debug, Clone)]
pub struct WindowFile {
    pub table: Table,
    pub rows: Vec<HourRow>,
    pub labels: Vec<LabelRow>,
    pub products: Vec<(i64, ProductInfo)>,
}

impl WindowFile {
    pub fn new(table: Table) -> Self {
        WindowFile {
            table,
            rows: vec![],
            labels: vec![],
            products: vec![],
        }
    }
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
    /// Index of the daily tumbling window, if there is one.
    pub day_spec: Option<usize>,
    pub lateness: i64,
    /// Events per second per partition (see [`super::health::rates`]).
    pub rates: BTreeMap<i32, f64>,
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

    /// The open product windows of one window spec, of every partition.
    fn open_products(&self, spec: Option<usize>) -> impl Iterator<Item = HourRow> + '_ {
        self.partitions.values().flat_map(move |p| {
            p.checkpoint
                .windows
                .open
                .iter()
                .filter(move |o| Some(o.1) == spec)
                .map(
                    |&(_end, _s, start, product, quantity, revenue_cents, orders)| HourRow {
                        start,
                        product,
                        quantity,
                        revenue_cents,
                        orders,
                    },
                )
        })
    }

    /// The open hourly windows of a label table, with their labels' names.
    fn open_labels(&self, table: Table) -> impl Iterator<Item = (&str, i64, i64, i64, i64)> + '_ {
        let (spec, kind) = (self.hour_spec, table.kind());
        self.partitions.values().flat_map(move |p| {
            let w = &p.checkpoint.windows;
            w.groups
                .iter()
                .filter(move |g| Some(g.1) == spec && g.3 == kind)
                .map(|&(_end, _s, start, _k, label, _p, q, r, o)| {
                    let name = w.labels.get(label as usize).map_or("", |l| l.as_str());
                    (name, start, q, r, o)
                })
        })
    }
}

/// The files read so far and the products they name.
#[derive(Debug, Default)]
pub struct Index {
    files: HashMap<String, WindowFile>,
    products: BTreeMap<i64, ProductInfo>,
}

/// What the browser asks for: a range of hours ending with the newest data, and a filter.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub hours: i64,
    pub category: Option<String>,
    pub brand: Option<String>,
}

impl Query {
    fn filtered(&self) -> bool {
        self.category.is_some() || self.brand.is_some()
    }
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

/// One product of a top list, summed over the range.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ranked {
    pub product_id: i64,
    pub name: String,
    pub brand: String,
    pub category: String,
    pub units: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

/// The two top lists of the range.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Top {
    pub by_units: Vec<Ranked>,
    pub by_revenue: Vec<Ranked>,
}

/// One bar: a country or a card type, summed over the range and the partitions.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub units: i64,
    pub revenue_cents: i64,
    pub orders: i64,
}

/// A label panel. The country and card tables have no product columns: with a category or
/// brand filter they show every product's sales and say so (`all_products`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Bars {
    pub bars: Vec<Bar>,
    pub all_products: bool,
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
    pub fn apply(&mut self, listing: &[(String, u64)], read: Vec<(String, WindowFile)>) -> usize {
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

    /// A product's name, brand and category, from the files or the checkpoints.
    pub fn product<'a>(&'a self, live: &'a Live, id: i64) -> Option<&'a ProductInfo> {
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

    /// Whether a product passes the query's category and brand filter.
    pub fn matches(&self, live: &Live, q: &Query, product: i64) -> bool {
        if !q.filtered() {
            return true;
        }
        let Some(info) = self.product(live, product) else {
            return false;
        };
        q.category.as_ref().is_none_or(|c| *c == info.category)
            && q.brand.as_ref().is_none_or(|b| *b == info.brand)
    }

    /// `[from, to)` of the last `hours` hours of data: the newest hour with data (from the
    /// checkpoints, else from the files) is the last one.
    pub fn range(&self, live: &Live, hours: i64) -> (i64, i64) {
        let anchor = live.newest_event().or_else(|| {
            self.files
                .values()
                .flat_map(|f| f.rows.iter().map(|r| r.start))
                .max()
        });
        let to = anchor.map_or(0, |a| a.div_euclid(HOUR) * HOUR + HOUR);
        (to - hours.max(1) * HOUR, to)
    }

    /// Every product row of `[from, to)` that passes the filter, closed (from the files) and
    /// open (from the checkpoints, `true`).
    fn product_rows<'a>(
        &'a self,
        live: &'a Live,
        q: &'a Query,
        (from, to): (i64, i64),
    ) -> impl Iterator<Item = (HourRow, bool)> + 'a {
        let closed = self
            .files
            .values()
            .filter(|f| f.table == Table::Products)
            .flat_map(|f| f.rows.iter().map(|r| (*r, false)));
        let open = live.open_products(live.hour_spec).map(|r| (r, true));
        closed
            .chain(open)
            .filter(move |(r, _)| r.start >= from && r.start < to)
            .filter(move |(r, _)| self.matches(live, q, r.product))
    }

    /// Units, revenue and orders per hour over the last `q.hours` hours of data.
    pub fn hourly(&self, live: &Live, q: &Query) -> Hourly {
        let (from, to) = self.range(live, q.hours);
        let mut slots: Vec<Hour> = (0..(to - from) / HOUR)
            .map(|i| Hour {
                start: rfc3339_micros(from + i * HOUR),
                units: 0,
                revenue_cents: 0,
                orders: 0,
                open: false,
            })
            .collect();
        for (r, open) in self.product_rows(live, q, (from, to)) {
            let s = &mut slots[((r.start - from) / HOUR) as usize];
            // Saturating, as the stream's own sums (`stream::window::Agg::add`).
            s.units = s.units.saturating_add(r.quantity);
            s.revenue_cents = s.revenue_cents.saturating_add(r.revenue_cents);
            s.orders = s.orders.saturating_add(r.orders);
            s.open |= open;
        }
        Hourly {
            from: rfc3339_micros(from),
            to: rfc3339_micros(to),
            units: slots.iter().fold(0, |a, s| a.saturating_add(s.units)),
            revenue_cents: slots
                .iter()
                .fold(0, |a, s| a.saturating_add(s.revenue_cents)),
            orders: slots.iter().fold(0, |a, s| a.saturating_add(s.orders)),
            hours: slots,
        }
    }

    /// The `n` products with the most units and the most revenue over the range. Ties go to
    /// the other measure, then to the smaller product id.
    pub fn top(&self, live: &Live, q: &Query, n: usize) -> Top {
        let range = self.range(live, q.hours);
        let mut sums: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
        for (r, _) in self.product_rows(live, q, range) {
            let s = sums.entry(r.product).or_default();
            s.0 = s.0.saturating_add(r.quantity);
            s.1 = s.1.saturating_add(r.revenue_cents);
            s.2 = s.2.saturating_add(r.orders);
        }
        let mut all: Vec<Ranked> = sums
            .into_iter()
            .map(|(id, (units, revenue_cents, orders))| {
                let info = self.product(live, id).cloned().unwrap_or_default();
                Ranked {
                    product_id: id,
                    name: info.name,
                    brand: info.brand,
                    category: info.category,
                    units,
                    revenue_cents,
                    orders,
                }
            })
            .collect();
        all.sort_by_key(|r| (-r.units, -r.revenue_cents, r.product_id));
        let by_units = all.iter().take(n).cloned().collect();
        all.sort_by_key(|r| (-r.revenue_cents, -r.units, r.product_id));
        all.truncate(n);
        Top {
            by_units,
            by_revenue: all,
        }
    }

    /// Sales by country or card type over the range, the largest revenue first.
    pub fn bars(&self, live: &Live, q: &Query, table: Table) -> Bars {
        let (from, to) = self.range(live, q.hours);
        let mut sums: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        let closed = self
            .files
            .values()
            .filter(|f| f.table == table)
            .flat_map(|f| f.labels.iter())
            .map(|l| (&*l.label, l.start, l.quantity, l.revenue_cents, l.orders));
        for (label, start, q, r, o) in closed.chain(live.open_labels(table)) {
            if start >= from && start < to {
                let s = sums.entry(label).or_default();
                s.0 += q;
                s.1 += r;
                s.2 += o;
            }
        }
        let mut bars: Vec<Bar> = sums
            .into_iter()
            .map(|(label, (units, revenue_cents, orders))| Bar {
                label: label.to_string(),
                units,
                revenue_cents,
                orders,
            })
            .collect();
        bars.sort_by(|a, b| {
            b.revenue_cents
                .cmp(&a.revenue_cents)
                .then(a.label.cmp(&b.label))
        });
        Bars {
            bars,
            all_products: q.filtered(),
        }
    }

    /// One product's daily windows: `(day start, units, revenue cents, still open)`, by day.
    pub fn daily(&self, live: &Live, product: i64) -> BTreeMap<i64, (i64, i64, bool)> {
        let mut days: BTreeMap<i64, (i64, i64, bool)> = BTreeMap::new();
        let closed = self
            .files
            .values()
            .filter(|f| f.table == Table::Daily)
            .flat_map(|f| f.rows.iter().map(|r| (*r, false)));
        let open = live
            .day_spec
            .into_iter()
            .flat_map(|s| live.open_products(Some(s)))
            .map(|r| (r, true));
        for (r, is_open) in closed.chain(open).filter(|(r, _)| r.product == product) {
            let d = days.entry(r.start).or_default();
            d.0 = d.0.saturating_add(r.quantity);
            d.1 = d.1.saturating_add(r.revenue_cents);
            d.2 |= is_open;
        }
        days
    }

    /// The earliest daily window the lake or the checkpoints hold: before it, nothing was
    /// streamed (no sales is not the same as no data).
    pub fn first_day(&self, live: &Live) -> Option<i64> {
        let closed = self
            .files
            .values()
            .filter(|f| f.table == Table::Daily)
            .flat_map(|f| f.rows.iter().map(|r| r.start));
        let open = live
            .day_spec
            .into_iter()
            .flat_map(|s| live.open_products(Some(s)))
            .map(|r| r.start);
        closed.chain(open).min()
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

#[cfg(test)]
#[path = "core_tests.rs"]
pub(crate) mod tests;
