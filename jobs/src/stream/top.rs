//! Top-N products of a closed window, by quantity or by revenue: a pure ranking.
//!
//! Order (documented in the README): by quantity: quantity desc, revenue desc, product id
//! asc; by revenue: revenue desc, quantity desc, product id asc. The order is total, so
//! the global top N of a window is the best N of the union of each source partition's own
//! top N (a product's sales all live in one partition).

use std::cmp::Reverse;

use super::window::ClosedWindow;

/// What a ranking orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Quantity,
    Revenue,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Quantity, Metric::Revenue];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Quantity => "quantity",
            Metric::Revenue => "revenue",
        }
    }
}

/// The best `n` product rows of one window by `metric`, best first. `rows` are product rows
/// of a single window.
pub fn top_n<'a>(rows: &[&'a ClosedWindow], metric: Metric, n: usize) -> Vec<&'a ClosedWindow> {
    let mut v: Vec<&ClosedWindow> = rows.to_vec();
    match metric {
        Metric::Quantity => v.sort_by_key(|r| {
            (
                Reverse(r.agg.quantity),
                Reverse(r.agg.revenue_cents),
                r.product_id(),
            )
        }),
        Metric::Revenue => v.sort_by_key(|r| {
            (
                Reverse(r.agg.revenue_cents),
                Reverse(r.agg.quantity),
                r.product_id(),
            )
        }),
    }
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stream::window::{Agg, GroupKey, ProductInfo};

    fn row(p: i64, q: i64, r: i64) -> ClosedWindow {
        ClosedWindow {
            spec: 0,
            start: 0,
            end: 1,
            key: GroupKey::Product(p),
            info: Arc::new(ProductInfo::default()),
            label: Arc::from(""),
            agg: Agg {
                quantity: q,
                revenue_cents: r,
                orders: 1,
            },
        }
    }

    #[test]
    fn ties_follow_the_documented_order() {
        let rows = [
            row(5, 10, 100),
            row(3, 10, 100),
            row(4, 10, 900),
            row(1, 2, 5000),
            row(2, 7, 5000),
        ];
        let refs: Vec<&ClosedWindow> = rows.iter().collect();
        let by_q: Vec<i64> = top_n(&refs, Metric::Quantity, 4)
            .iter()
            .map(|r| r.product_id())
            .collect();
        assert_eq!(by_q, vec![4, 3, 5, 2]);
        let by_r: Vec<i64> = top_n(&refs, Metric::Revenue, 3)
            .iter()
            .map(|r| r.product_id())
            .collect();
        assert_eq!(by_r, vec![2, 1, 4]);
    }
}
