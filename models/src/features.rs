//! Demand features for one product's series, daily or weekly: recent lags and a season ago,
//! rolling means, day of week (daily), price and its change, a holiday flag from a
//! calendar, and the trend.

/// The period one value of a series covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Granularity {
    /// One value per day.
    #[default]
    Day,
    /// One value per 7 days (slow sellers; weekly data).
    Week,
}

impl Granularity {
    /// The name used in outputs and flags.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
        }
    }

    /// Days one period covers.
    pub fn days(self) -> i64 {
        match self {
            Granularity::Day => 1,
            Granularity::Week => 7,
        }
    }

    /// The seasonal period in periods: a week of days, a year of weeks.
    pub fn season(self) -> usize {
        match self {
            Granularity::Day => 7,
            Granularity::Week => 52,
        }
    }

    /// Periods a feature row needs before its target period (the longest lag).
    pub fn warmup(self) -> usize {
        self.layout().lags[3]
    }

    /// Feature names, in the column order of [`row`].
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Granularity::Day => &DAY_NAMES,
            Granularity::Week => &WEEK_NAMES,
        }
    }

    /// Number of features.
    pub fn width(self) -> usize {
        self.names().len()
    }

    /// Periods whose prices make the price assumed for the forecast: the last week.
    pub fn planning_periods(self) -> usize {
        match self {
            Granularity::Day => 7,
            Granularity::Week => 1,
        }
    }

    fn layout(self) -> Layout {
        match self {
            Granularity::Day => Layout {
                lags: [1, 7, 14, 28],
                means: [7, 28],
                weekday: true,
                change: 7,
            },
            Granularity::Week => Layout {
                lags: [1, 2, 4, 52],
                means: [4, 13],
                weekday: false,
                change: 4,
            },
        }
    }
}

/// Days of history a daily feature row needs before its target day.
pub const WARMUP: usize = 28;

const DAY_NAMES: [&str; 16] = [
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
    "holiday",
];

const WEEK_NAMES: [&str; 10] = [
    "lag_1w",
    "lag_2w",
    "lag_4w",
    "lag_52w",
    "mean_4w",
    "mean_13w",
    "price",
    "price_change_4w",
    "trend",
    "holiday",
];

/// Which lags and means a granularity uses.
struct Layout {
    lags: [usize; 4],
    means: [usize; 2],
    weekday: bool,
    /// Periods over which the price change is taken.
    change: usize,
}

/// Holidays and events: days (since 1970-01-01) that move demand. A period is a holiday
/// period when one of them falls inside it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calendar {
    days: Vec<i64>,
}

impl Calendar {
    /// A calendar of these days (any order, repeats allowed).
    pub fn new(mut days: Vec<i64>) -> Calendar {
        days.sort_unstable();
        days.dedup();
        Calendar { days }
    }

    /// Whether a holiday falls in the `len` days from `start`.
    pub fn any_in(&self, start: i64, len: i64) -> bool {
        let i = self.days.partition_point(|d| *d < start);
        self.days.get(i).is_some_and(|d| *d < start + len)
    }

    /// Number of days in the calendar.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// True when the calendar has no days.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }
}

/// One product's history: one value per period, consecutive periods from `first_day`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Day number of the first period's first day (days since 1970-01-01, UTC).
    pub first_day: i64,
    /// Units sold per period (0 in periods without sales).
    pub quantity: Vec<f64>,
    /// Price per unit per period (the mean paid, carried forward over periods without
    /// sales).
    pub price: Vec<f64>,
}

impl Series {
    /// Number of periods.
    pub fn len(&self) -> usize {
        self.quantity.len()
    }

    /// True when the series has no periods.
    pub fn is_empty(&self) -> bool {
        self.quantity.is_empty()
    }

    /// The price of the last period, or `None` for an empty series.
    pub fn last_price(&self) -> Option<f64> {
        self.price.last().copied()
    }

    /// The price a forecast assumes: the mean over the last week's periods. A day's mean
    /// paid price mixes whatever sold that day (a CD shop's daily mean moves 15% from day to
    /// day with no price change at all); the last day alone, extrapolated flat, made the
    /// price terms a source of error on such data.
    pub fn planning_price(&self, g: Granularity) -> Option<f64> {
        let k = g.planning_periods().min(self.price.len());
        (k > 0).then(|| self.price[self.price.len() - k..].iter().sum::<f64>() / k as f64)
    }

    /// The first `periods` of the series.
    pub fn head(&self, periods: usize) -> Series {
        Series {
            first_day: self.first_day,
            quantity: self.quantity[..periods].to_vec(),
            price: self.price[..periods].to_vec(),
        }
    }
}

/// Day of week of a day number, 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday).
pub fn day_of_week(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// Writes the features of target period `t` into `out` (`g.width()` values): quantities
/// strictly before `t`, the calendar and price of `t`, and `t` itself as the trend.
///
/// `quantity` needs at least `t` values and `price` at least `t + 1`; `t >= g.warmup()`.
pub fn row(
    g: Granularity,
    cal: &Calendar,
    (quantity, price): (&[f64], &[f64]),
    first_day: i64,
    t: usize,
    out: &mut [f64],
) {
    let l = g.layout();
    debug_assert!(t >= g.warmup() && quantity.len() >= t && price.len() > t);
    debug_assert_eq!(out.len(), g.width());
    let q = &quantity[..t];
    let mut i = 0;
    let mut put = |v: f64| {
        out[i] = v;
        i += 1;
    };
    for lag in l.lags {
        put(q[t - lag]);
    }
    for m in l.means {
        put(q[t - m..].iter().sum::<f64>() / m as f64);
    }
    let start = first_day + t as i64 * g.days();
    if l.weekday {
        let dow = day_of_week(start);
        for d in 0..6 {
            put(f64::from(u8::from(dow == d)));
        }
    }
    put(price[t]);
    let before = price[t - l.change];
    put(if before > 0.0 {
        price[t] / before - 1.0
    } else {
        0.0
    });
    put(t as f64);
    put(f64::from(u8::from(cal.any_in(start, g.days()))));
}

/// The training rows of a series: features of every period from the warm-up on, row-major,
/// and the quantity of that period as the target.
pub fn design(series: &Series, g: Granularity, cal: &Calendar) -> (Vec<f64>, Vec<f64>) {
    let w = g.width();
    let n = series.len().saturating_sub(g.warmup());
    let mut x = Vec::with_capacity(n * w);
    let mut y = Vec::with_capacity(n);
    let mut buf = vec![0.0; w];
    for t in g.warmup()..series.len() {
        let cols = (&series.quantity[..], &series.price[..]);
        row(g, cal, cols, series.first_day, t, &mut buf);
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
        let c = Calendar::new(vec![20, 10, 10]);
        assert_eq!(c.len(), 2);
        assert!(c.any_in(10, 1) && c.any_in(14, 7) && !c.any_in(11, 7) && !c.any_in(21, 7));
    }

    #[test]
    fn a_row_reads_only_the_past_and_the_day_itself() {
        let g = Granularity::Day;
        let q: Vec<f64> = (0..40).map(f64::from).collect();
        let mut p = vec![10.0; 41];
        p[30] = 12.0;
        let cal = Calendar::new(vec![34]);
        let mut out = vec![0.0; g.width()];
        row(g, &cal, (&q, &p), 4, 30, &mut out); // day 34 = Monday + 30 -> Wednesday
        assert_eq!(&out[..4], &[29.0, 23.0, 16.0, 2.0]);
        assert_eq!(out[4], (23..30).sum::<i32>() as f64 / 7.0);
        assert_eq!(out[5], (2..30).sum::<i32>() as f64 / 28.0);
        assert_eq!(&out[6..12], &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(out[12], 12.0);
        assert!((out[13] - 0.2).abs() < 1e-12);
        assert_eq!((out[14], out[15]), (30.0, 1.0));
        // A later quantity must not leak in: changing day 30 leaves the row alone.
        let mut q2 = q.clone();
        q2[30] = 1e9;
        let mut out2 = vec![0.0; g.width()];
        row(g, &cal, (&q2, &p), 4, 30, &mut out2);
        assert_eq!(out, out2);
    }

    #[test]
    fn a_weekly_row_looks_a_year_back() {
        let g = Granularity::Week;
        let q: Vec<f64> = (0..60).map(f64::from).collect();
        let p = vec![5.0; 61];
        // Week 55 starts on day 4 + 55 * 7 = 389; a holiday on 392 falls inside it.
        let cal = Calendar::new(vec![392]);
        let mut out = vec![0.0; g.width()];
        row(g, &cal, (&q, &p), 4, 55, &mut out);
        assert_eq!(&out[..4], &[54.0, 53.0, 51.0, 3.0]);
        assert_eq!(out[4], (51..55).sum::<i32>() as f64 / 4.0);
        assert_eq!(out[5], (42..55).sum::<i32>() as f64 / 13.0);
        assert_eq!(&out[6..], &[5.0, 0.0, 55.0, 1.0]);
        assert_eq!(g.names().len(), out.len());
    }

    #[test]
    fn design_has_one_row_per_period_after_warmup() {
        let s = Series {
            first_day: 0,
            quantity: vec![1.0; 30],
            price: vec![2.0; 30],
        };
        let (g, cal) = (Granularity::Day, Calendar::default());
        let (x, y) = design(&s, g, &cal);
        assert_eq!((x.len(), y.len()), (2 * g.width(), 2));
        assert_eq!(design(&s.head(10), g, &cal).1.len(), 0);
    }

    #[test]
    fn the_planning_price_is_last_weeks_mean() {
        let s = Series {
            first_day: 0,
            quantity: vec![1.0; 9],
            price: vec![9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        };
        assert_eq!(s.planning_price(Granularity::Day), Some(4.0));
        assert_eq!(s.planning_price(Granularity::Week), Some(7.0));
        assert_eq!(s.head(0).planning_price(Granularity::Day), None);
    }
}
