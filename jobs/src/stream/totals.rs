//! Running totals per product since the beginning of the topic: pure state that publishes
//! only what changed.
//!
//! A product's totals only grow (every sale adds one order), so its order count names a
//! state: the idempotency key of an update is `totals|<product>|<orders>`. After a crash the
//! replay may publish at other moments than the run that crashed, but never a state older
//! than one already published ([`Totals::mark_sent`]), so readers of the compacted topic see
//! each product's totals move forward only, and end equal to a crash-free run.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::window::Agg;

/// One product's totals and the order count last published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Total {
    pub agg: Agg,
    /// `agg.orders` when last published (0: never).
    pub sent_orders: i64,
    /// Newest event time counted.
    pub last_event: i64,
}

/// The totals of one partition's products.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    by_product: HashMap<i64, Total>,
}

impl Totals {
    /// Adds one sale.
    pub fn record(&mut self, product: i64, quantity: i64, revenue_cents: i64, ts: i64) {
        let t = self.by_product.entry(product).or_default();
        t.agg.add(quantity, revenue_cents);
        t.last_event = t.last_event.max(ts);
    }

    /// Products whose totals changed since they were last published, by product id; marks
    /// them published.
    pub fn take_changed(&mut self) -> Vec<(i64, Total)> {
        let mut out: Vec<(i64, Total)> = self
            .by_product
            .iter_mut()
            .filter(|(_, t)| t.agg.orders > t.sent_orders)
            .map(|(p, t)| {
                t.sent_orders = t.agg.orders;
                (*p, *t)
            })
            .collect();
        out.sort_unstable_by_key(|r| r.0);
        out
    }

    /// Records that a state with `orders` orders was already published (found in the topic
    /// after a crash): nothing at or before it is published again.
    pub fn mark_sent(&mut self, product: i64, orders: i64) {
        let t = self.by_product.entry(product).or_default();
        t.sent_orders = t.sent_orders.max(orders);
    }

    /// Whether any product changed since it was last published.
    pub fn has_changes(&self) -> bool {
        self.by_product
            .values()
            .any(|t| t.agg.orders > t.sent_orders)
    }

    /// Every product's totals, by product id (the lake snapshot).
    pub fn snapshot(&self) -> Vec<(i64, Total)> {
        let mut out: Vec<(i64, Total)> = self
            .by_product
            .iter()
            .filter(|(_, t)| t.agg.orders > 0)
            .map(|(p, t)| (*p, *t))
            .collect();
        out.sort_unstable_by_key(|r| r.0);
        out
    }
}

/// The idempotency key of a totals update.
pub fn totals_key(product: i64, orders: i64) -> String {
    format!("totals|{product}|{orders}")
}

/// Parses [`totals_key`].
pub fn parse_totals_key(key: &str) -> Option<(i64, i64)> {
    let mut it = key.strip_prefix("totals|")?.split('|');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_products_are_published_and_never_an_older_state() {
        let mut t = Totals::default();
        t.record(1, 2, 200, 10);
        t.record(2, 1, 50, 11);
        t.record(1, 1, 100, 12);
        let c = t.take_changed();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].0, c[0].1.agg),
            (
                1,
                Agg {
                    quantity: 3,
                    revenue_cents: 300,
                    orders: 2
                }
            )
        );
        assert!(t.take_changed().is_empty(), "nothing changed since");
        t.record(2, 4, 200, 13);
        let c = t.take_changed();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].0, c[0].1.agg.quantity, c[0].1.agg.orders), (2, 5, 2));

        // Recovery found product 1 already published at 3 orders: its replayed 3rd order is
        // not published again, the 4th is.
        t.mark_sent(1, 3);
        t.record(1, 1, 100, 14);
        assert!(!t.has_changes());
        t.record(1, 1, 100, 15);
        assert_eq!(t.take_changed()[0].1.agg.orders, 4);
        assert_eq!(parse_totals_key(&totals_key(7, 42)), Some((7, 42)));
        assert_eq!(t.snapshot().len(), 2);
    }
}
