//! Demand features for one product's daily series: lags 1, 7, 14, 28; rolling means over 7
//! and 28 days; day of week; price and its change over a week; trend.

/// Days of history a feature row needs before its target day (the longest lag).
pub const WARMUP: usize = 28;

/// Feature names, in the column order of [`row`].
pub const NAMES: [&str; 15] = [
    "lag_1",
    "lag_7",
    "lag_14",
    "lag_28",
    "mean_7",
    "mean_28",
    "dow_mon",
    "dow_tue",
    "dow_wed",
    "dow_thu",
    "dow_fri",
    "dow_sat",
    "price",
    "price_change_7d",
    "trend",
];

/// Number of features.
pub const N: usize = NAMES.len();

/// One product's daily history: one value per day, consecutive days from `first_day`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Day number of the first value (days since 1970-01-01, UTC).
    pub first_day: i64,
    /// Units sold per day (0 on days without sales).
    pub quantity: Vec<f64>,
    /// Price per unit per day (the mean paid that day, carried forward over days without
    /// sales).
    pub price: Vec<f64>,
}

impl Series {
    /// Number of days.
    pub fn len(&self) -> usize {
        self.quantity.len()
    }

    /// True when the series has no days.
    pub fn is_empty(&self) -> bool {
        self.quantity.is_empty()
    }

    /// The price of the last day with a price, or `None` for an empty series.
    pub fn last_price(&self) -> Option<f64> {
        self.price.last().copied()
    }
}

/// Day of week of a day number, 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday).
pub fn day_of_week(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// Writes the features of target day `t` into `out`: quantities strictly before `t`, the
/// calendar and price of `t`, and `t` itself as the trend.
///
/// `quantity` needs at least `t` values and `price` at least `t + 1`; `t >= WARMUP`.
pub fn row(quantity: &[f64], price: &[f64], first_day: i64, t: usize, out: &mut [f64; N]) {
    debug_assert!(t >= WARMUP && quantity.len() >= t && price.len() > t);
    let q = &quantity[..t];
    out[0] = q[t - 1];
    out[1] = q[t - 7];
    out[2] = q[t - 14];
    out[3] = q[t - 28];
    out[4] = q[t - 7..].iter().sum::<f64>() / 7.0;
    out[5] = q[t - 28..].iter().sum::<f64>() / 28.0;
    let dow = day_of_week(first_day + t as i64);
    for (d, slot) in out[6..12].iter_mut().enumerate() {
        *slot = f64::from(u8::from(dow == d));
    }
    out[12] = price[t];
    let before = price[t - 7];
    out[13] = if before > 0.0 {
        price[t] / before - 1.0
    } else {
        0.0
    };
    out[14] = t as f64;
}

/// The training rows of a series: features of every day from [`WARMUP`] on, row-major, and
/// the quantity of that day as the target.
pub fn design(series: &Series) -> (Vec<f64>, Vec<f64>) {
    let n = series.len().saturating_sub(WARMUP);
    let mut x = Vec::with_capacity(n * N);
    let mut y = Vec::with_capacity(n);
    let mut buf = [0.0; N];
    for t in WARMUP..series.len() {
        row(
            &series.quantity,
            &series.price,
            series.first_day,
            t,
            &mut buf,
        );
        x.extend_from_slice(&buf);
        y.push(series.quantity[t]);
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(day_of_week(0), 3); // 1970-01-01, Thursday
        assert_eq!(day_of_week(4), 0); // Monday
        assert_eq!(day_of_week(-1), 2);
    }

    #[test]
    fn a_row_reads_only_the_past_and_the_day_itself() {
        let q: Vec<f64> = (0..40).map(f64::from).collect();
        let mut p = vec![10.0; 41];
        p[30] = 12.0;
        let mut out = [0.0; N];
        row(&q, &p, 4, 30, &mut out); // day 34 = Monday + 30 -> Wednesday
        assert_eq!(&out[..4], &[29.0, 23.0, 16.0, 2.0]);
        assert_eq!(out[4], (23..30).sum::<i32>() as f64 / 7.0);
        assert_eq!(out[5], (2..30).sum::<i32>() as f64 / 28.0);
        assert_eq!(&out[6..12], &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(out[12], 12.0);
        assert!((out[13] - 0.2).abs() < 1e-12);
        assert_eq!(out[14], 30.0);
        // A later quantity must not leak in: changing day 30 leaves the row alone.
        let mut q2 = q.clone();
        q2[30] = 1e9;
        let mut out2 = [0.0; N];
        row(&q2, &p, 4, 30, &mut out2);
        assert_eq!(out, out2);
    }

    #[test]
    fn design_has_one_row_per_day_after_warmup() {
        let s = Series {
            first_day: 0,
            quantity: vec![1.0; 30],
            price: vec![2.0; 30],
        };
        let (x, y) = design(&s);
        assert_eq!((x.len(), y.len()), (2 * N, 2));
        let short = Series {
            first_day: 0,
            quantity: vec![1.0; 10],
            price: vec![2.0; 10],
        };
        assert_eq!(design(&short).1.len(), 0);
    }
}
