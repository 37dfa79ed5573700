//! Each product's history as a series of days or weeks, from the lake's daily sales.

use models::features::{Granularity, Series};

use crate::batch::Dates;
use crate::batch::day_number;
use crate::batch::history::DailySales;

/// Each product's series of periods `g`: from the period of its first sale in range to the
/// one ending the day before `until`, zero in periods without sales; the price is the mean
/// paid in the period (revenue over units), carried forward. Weekly periods are the 7-day
/// blocks counted back from `until`, so the last one always ends the day before the run.
pub fn build_series(daily: &DailySales, dates: &Dates, g: Granularity) -> Vec<(i64, Series)> {
    let end = day_number(dates.until);
    let step = g.days();
    let mut out = Vec::new();
    for rows in daily.rows.chunk_by(|a, b| a.product_id == b.product_id) {
        let len = ((end - rows[0].day).max(0) + step - 1) / step;
        if len == 0 {
            continue;
        }
        let first = end - len * step;
        let len = len as usize;
        let (mut quantity, mut revenue) = (vec![0.0; len], vec![0.0; len]);
        for r in rows.iter().filter(|r| (first..end).contains(&r.day)) {
            let i = ((r.day - first) / step) as usize;
            quantity[i] += r.quantity;
            revenue[i] += r.revenue;
        }
        let mut price: Vec<f64> = quantity
            .iter()
            .zip(&revenue)
            .map(|(q, r)| if *q > 0.0 { r / q } else { f64::NAN })
            .collect();
        let mut last = price.iter().copied().find(|p| p.is_finite()).unwrap_or(0.0);
        for p in &mut price {
            if p.is_finite() {
                last = *p;
            } else {
                *p = last;
            }
        }
        out.push((
            rows[0].product_id,
            Series {
                first_day: first,
                quantity,
                price,
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::batch::date_of;
    use crate::batch::history::DaySales;

    fn shop(rows: Vec<(i64, f64, f64)>) -> DailySales {
        DailySales {
            inputs: vec![],
            rows: rows
                .into_iter()
                .map(|(day, quantity, revenue)| DaySales {
                    product_id: 1,
                    day,
                    quantity,
                    revenue,
                })
                .collect(),
            products: BTreeMap::new(),
        }
    }

    fn until(day: i64) -> Dates {
        Dates {
            run_date: date_of(day),
            since: date_of(90),
            until: date_of(day),
        }
    }

    #[test]
    fn series_fill_gaps_and_carry_prices() {
        let daily = shop(vec![(100, 2.0, 20.0), (103, 1.0, 12.0)]);
        let s = build_series(&daily, &until(105), Granularity::Day);
        assert_eq!(s.len(), 1);
        let (id, s) = &s[0];
        assert_eq!(*id, 1);
        assert_eq!(s.first_day, 100);
        assert_eq!(s.quantity, vec![2.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(s.price, vec![10.0, 10.0, 10.0, 12.0, 12.0]);
    }

    #[test]
    fn weeks_count_back_from_the_run_and_sum_their_days() {
        // Weeks [91, 98), [98, 105), [105, 112), [112, 119) before the run on day 119.
        let daily = shop(vec![
            (95, 2.0, 20.0),
            (98, 1.0, 10.0),
            (104, 3.0, 60.0),
            (118, 4.0, 48.0),
            (119, 9.0, 9.0), // the run date itself: not history
        ]);
        let s = build_series(&daily, &until(119), Granularity::Week);
        let (_, s) = &s[0];
        assert_eq!(s.first_day, 91);
        assert_eq!(s.quantity, vec![2.0, 4.0, 0.0, 4.0]);
        // The week's revenue over its units, carried over the empty week.
        assert_eq!(s.price, vec![10.0, 17.5, 17.5, 12.0]);
    }
}
