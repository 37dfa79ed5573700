//! Low-stock alerts: pure state per product, joined from the `inventory` table and the sales.
//!
//! `updated_stock = stock_level - units sold after the stock level was recorded` (sales with
//! an event time after the inventory row's `updated_at`; older sales are already in the
//! stock level). When it falls below the product's threshold one `low` alert is raised; none
//! again while it stays low; one `recovered` message when a new stock level lifts it back to
//! the threshold or above. Alerts are named by (product, the stock record's time, kind), so
//! each stock record gives at most one of each: the idempotency key after a crash.
//!
//! To bound memory, sales are kept per second of event time, and only for a day behind the
//! product's newest sale; older ones are folded into one count. So a new stock row drops
//! exactly the sales it includes when it is at most a day older than the newest sale, to the
//! second (a sale in the same second as a new row counts as included in it); an older row keeps the
//! folded count (the stock is then underestimated, never overestimated).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// One `inventory` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRecord {
    pub stock_level: i64,
    /// When the stock level was recorded (`updated_at`), micros.
    pub recorded_at: i64,
}

/// An alert or a recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub product_id: i64,
    /// `true`: fell below the threshold; `false`: back at or above it.
    pub low: bool,
    pub stock_level: i64,
    pub recorded_at: i64,
    pub sold_since: i64,
    pub updated_stock: i64,
    pub threshold: i64,
    /// Event time of the sale that crossed the threshold, or the stock record's time.
    pub at: i64,
}

impl Alert {
    /// The idempotency key: one `low` and one `recovered` per stock record at most.
    pub fn key(&self) -> String {
        format!(
            "stock|{}|{}|{}",
            self.product_id,
            self.recorded_at,
            if self.low { "low" } else { "recovered" }
        )
    }
}

const SECOND: i64 = 1_000_000;
/// How far behind a product's newest sale its sales are kept per second.
const HORIZON_SECS: i64 = 86_400;

/// Parses [`Alert::key`]: the product and whether it was a `low` alert.
pub fn parse_alert_key(key: &str) -> Option<(i64, bool)> {
    let mut it = key.strip_prefix("stock|")?.split('|');
    let product = it.next()?.parse().ok()?;
    let _recorded_at = it.next()?;
    match it.next()? {
        "low" => Some((product, true)),
        "recovered" => Some((product, false)),
        _ => None,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    record: Option<StockRecord>,
    /// Units sold after `record.recorded_at`, by second of event time (kept so that a newer
    /// stock record can drop the sales it already includes).
    sales: BTreeMap<i64, i64>,
    /// Units sold after the record but before the per-second horizon, and the newest event
    /// time among them.
    folded: i64,
    folded_to: i64,
    sold_since: i64,
    alerted: bool,
}

/// Stock state of one partition's products.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    items: HashMap<i64, Item>,
}

impl Stock {
    /// Applies the product's current inventory row (at start and on each refresh).
    pub fn set_record(&mut self, product: i64, rec: StockRecord, threshold: i64) -> Option<Alert> {
        let it = self.items.entry(product).or_default();
        match it.record {
            Some(old) if old == rec => return None,
            // An older row than the one we have (a lagging replica): keep ours.
            Some(old) if rec.recorded_at < old.recorded_at => return None,
            _ => {}
        }
        // Seconds up to the new record's own are in its stock level.
        it.sales = it
            .sales
            .split_off(&(rec.recorded_at.div_euclid(SECOND) + 1));
        if rec.recorded_at >= it.folded_to {
            it.folded = 0;
        }
        it.sold_since = it.folded + it.sales.values().sum::<i64>();
        it.record = Some(rec);
        Self::check(product, it, threshold, rec.recorded_at)
    }

    /// Counts one sale of a product. Products without an inventory row are not tracked.
    pub fn sale(&mut self, product: i64, quantity: i64, ts: i64, threshold: i64) -> Option<Alert> {
        let it = self.items.get_mut(&product)?;
        let rec = it.record?;
        if ts <= rec.recorded_at {
            return None; // already in the stock level
        }
        let sec = ts.div_euclid(SECOND);
        *it.sales.entry(sec).or_default() += quantity;
        it.sold_since += quantity;
        while let Some(e) = it.sales.first_entry() {
            if *e.key() >= sec - HORIZON_SECS {
                break;
            }
            let k = *e.key();
            it.folded += e.remove();
            it.folded_to = it.folded_to.max((k + 1) * SECOND - 1);
        }
        Self::check(product, it, threshold, ts)
    }

    fn check(product: i64, it: &mut Item, threshold: i64, at: i64) -> Option<Alert> {
        let rec = it.record?;
        let updated = rec.stock_level - it.sold_since;
        let low = updated < threshold;
        if low == it.alerted {
            return None;
        }
        it.alerted = low;
        Some(Alert {
            product_id: product,
            low,
            stock_level: rec.stock_level,
            recorded_at: rec.recorded_at,
            sold_since: it.sold_since,
            updated_stock: updated,
            threshold,
            at,
        })
    }

    /// Records that an alert (`low`) or a recovery was already sent for the product (found
    /// in the topic after a crash), so the replay does not send another.
    pub fn mark_alerted(&mut self, product: i64, low: bool) {
        self.items.entry(product).or_default().alerted = low;
    }

    /// Updated stock of a product, if it has an inventory row.
    pub fn updated_stock(&self, product: i64) -> Option<i64> {
        let it = self.items.get(&product)?;
        Some(it.record?.stock_level - it.sold_since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = SECOND;

    #[test]
    fn alerts_once_stays_silent_while_low_and_recovers_after_a_restock() {
        let mut s = Stock::default();
        let rec = StockRecord {
            stock_level: 15,
            recorded_at: 100 * S,
        };
        assert_eq!(s.set_record(7, rec, 10), None);
        // A sale before the stock was recorded is already in it.
        assert_eq!(s.sale(7, 4, 90 * S, 10), None);
        assert_eq!(s.sale(7, 3, 101 * S, 10), None); // 12
        let a = s.sale(7, 3, 102 * S, 10).unwrap(); // 9 < 10
        assert!(a.low);
        assert_eq!((a.updated_stock, a.sold_since, a.at), (9, 6, 102 * S));
        assert_eq!(s.sale(7, 5, 103 * S, 10), None, "silent while low"); // 4
        assert_eq!(s.updated_stock(7), Some(4));
        // Restock recorded at 102: the sale at 103 happened after it and still counts.
        let r = s
            .set_record(
                7,
                StockRecord {
                    stock_level: 50,
                    recorded_at: 102 * S,
                },
                10,
            )
            .unwrap();
        assert!(!r.low);
        assert_eq!((r.updated_stock, r.sold_since), (45, 5));
        assert_ne!(a.key(), r.key());
        // The same row again changes nothing.
        assert_eq!(
            s.set_record(
                7,
                StockRecord {
                    stock_level: 50,
                    recorded_at: 102 * S
                },
                10
            ),
            None
        );
        // A restock that is still low: no new alert, no recovery.
        assert!(s.sale(7, 40, 200 * S, 10).unwrap().low); // 5
        assert_eq!(
            s.set_record(
                7,
                StockRecord {
                    stock_level: 8,
                    recorded_at: 300 * S
                },
                10
            ),
            None
        );
        // Untracked product: nothing.
        assert_eq!(s.sale(8, 100, 500 * S, 10), None);
        assert_eq!(parse_alert_key(&a.key()), Some((7, true)));
        assert_eq!(parse_alert_key(&r.key()), Some((7, false)));
    }

    #[test]
    fn a_product_recorded_below_its_threshold_alerts_at_once() {
        let mut s = Stock::default();
        let a = s
            .set_record(
                3,
                StockRecord {
                    stock_level: 2,
                    recorded_at: 10,
                },
                5,
            )
            .unwrap();
        assert!(a.low && a.at == 10 && a.threshold == 5);
    }

    #[test]
    fn old_sales_are_folded_and_a_newer_row_drops_them() {
        let mut s = Stock::default();
        let day = HORIZON_SECS * S;
        s.set_record(
            1,
            StockRecord {
                stock_level: 1000,
                recorded_at: 0,
            },
            10,
        );
        s.sale(1, 5, S, 10);
        s.sale(1, 7, 2 * day, 10); // folds the first sale
        assert_eq!(s.updated_stock(1), Some(988));
        // A row older than the folded sales keeps them (underestimates, never over).
        s.set_record(
            1,
            StockRecord {
                stock_level: 1000,
                recorded_at: S / 2,
            },
            10,
        );
        assert_eq!(s.updated_stock(1), Some(988));
        // A row after them drops them; the newer sale stays.
        s.set_record(
            1,
            StockRecord {
                stock_level: 1000,
                recorded_at: day,
            },
            10,
        );
        assert_eq!(s.updated_stock(1), Some(993));
    }

    #[test]
    fn an_alert_found_after_a_crash_is_not_sent_again_for_a_new_low_row() {
        // The crashed run sent `low` for row R1; inventory then moved to R2, still low.
        let mut s = Stock::default();
        s.set_record(
            1,
            StockRecord {
                stock_level: 20,
                recorded_at: S,
            },
            10,
        );
        s.mark_alerted(1, true);
        let r2 = StockRecord {
            stock_level: 4,
            recorded_at: 2 * S,
        };
        assert_eq!(s.set_record(1, r2, 10), None, "still low: silent");
        assert!(
            !s.set_record(
                1,
                StockRecord {
                    stock_level: 50,
                    recorded_at: 3 * S
                },
                10
            )
            .unwrap()
            .low
        );
    }
}
