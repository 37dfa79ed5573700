//! Demand forecasts for one product: ordinary least squares (linfa-linear), ridge
//! regression (least squares with an L2 penalty on the standardised coefficients), a
//! Poisson GLM with a log link (fitted here by IRLS: linfa-linear's Tweedie regressor,
//! power 1, ran for minutes without returning on a 200-day weekly series) and the
//! seasonal-naive baseline (the same period a season ago). Multi-step forecasts are
//! recursive: period `t + 1` sees the forecast of period `t` as its lag 1.

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};

use crate::features::{self, Calendar, Granularity, Series};
use crate::{Error, Result};

/// Training rows a model needs; a shorter series falls back to seasonal naive.
pub const MIN_TRAIN_ROWS: usize = 28;

/// The ridge penalty: the sum of squared errors plus this times the sum of the squared
/// standardised coefficients (scikit-learn's `alpha` after a `StandardScaler`).
pub const RIDGE_PENALTY: f64 = 10.0;

/// Which model forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Ordinary least squares on the demand features.
    Ols,
    /// Least squares with an L2 penalty ([`RIDGE_PENALTY`]) on the standardised features.
    Ridge,
    /// Poisson regression (log link) on the demand features.
    Poisson,
    /// Each period repeats the same period a season ago.
    SeasonalNaive,
}

impl Method {
    /// Every method, simplest first (the order ties are broken in).
    pub const ALL: [Method; 4] = [
        Method::SeasonalNaive,
        Method::Ridge,
        Method::Ols,
        Method::Poisson,
    ];

    /// The name used in outputs and flags.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ols => "ols",
            Method::Ridge => "ridge",
            Method::Poisson => "poisson",
            Method::SeasonalNaive => "seasonal_naive",
        }
    }
}

/// A fitted forecast model of one product.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The method actually used: a series too short for a regression gets
    /// `SeasonalNaive`.
    pub method: Method,
    /// The period of the series it was fitted on.
    pub granularity: Granularity,
    /// Coefficients on the standardised features (0 for a constant feature).
    pub coef: Vec<f64>,
    /// Intercept on the standardised scale.
    pub intercept: f64,
    /// Per-feature mean and standard deviation used to standardise.
    pub mean: Vec<f64>,
    /// See `mean`; 0 marks a constant feature, which the model ignores.
    pub scale: Vec<f64>,
}

impl Fitted {
    fn naive(granularity: Granularity) -> Fitted {
        Fitted {
            method: Method::SeasonalNaive,
            granularity,
            coef: Vec::new(),
            intercept: 0.0,
            mean: Vec::new(),
            scale: Vec::new(),
        }
    }

    /// The coefficients on the original feature scale and the matching intercept, for
    /// people who read the model: `y = intercept + sum(coef[i] * x[i])` (least squares) or
    /// its `exp` (Poisson). Empty for seasonal naive.
    pub fn raw_coefficients(&self) -> (Vec<f64>, f64) {
        let mut intercept = self.intercept;
        let coef = (0..self.coef.len())
            .map(|i| {
                if self.scale[i] == 0.0 {
                    return 0.0;
                }
                let c = self.coef[i] / self.scale[i];
                intercept -= c * self.mean[i];
                c
            })
            .collect();
        (coef, intercept)
    }

    fn eval(&self, x: &[f64]) -> f64 {
        let mut z = self.intercept;
        for (i, v) in x.iter().enumerate() {
            if self.scale[i] != 0.0 {
                z += self.coef[i] * (v - self.mean[i]) / self.scale[i];
            }
        }
        match self.method {
            Method::Poisson => z.min(50.0).exp(),
            _ => z,
        }
    }
}

/// Fits `method` to a product's series of periods `g`, with the holidays of `cal`. A
/// series with fewer than [`MIN_TRAIN_ROWS`] rows after the warm-up gets seasonal naive.
pub fn fit(series: &Series, method: Method, g: Granularity, cal: &Calendar) -> Result<Fitted> {
    if series.price.len() != series.len() {
        return Err(Error::Input(format!(
            "{} quantities but {} prices",
            series.len(),
            series.price.len()
        )));
    }
    if method == Method::SeasonalNaive || series.len() < g.warmup() + MIN_TRAIN_ROWS {
        return Ok(Fitted::naive(g));
    }
    let n = g.width();
    let (x, y) = features::design(series, g, cal);
    let rows = y.len();
    let x = Array2::from_shape_vec((rows, n), x)
        .map_err(|e| Error::Input(format!("design matrix: {e}")))?;
    let (z, mean, scale) = standardize(x);
    let keep: Vec<usize> = (0..n).filter(|&j| scale[j] > 0.0).collect();
    let z = z.select(ndarray::Axis(1), &keep);
    let (kept_coef, intercept) = match method {
        Method::Ols => {
            let ds = Dataset::new(z, Array1::from(y));
            let m = LinearRegression::new().fit(&ds).map_err(|e| Error::Fit {
                model: "ols",
                reason: e.to_string(),
            })?;
            (m.params().to_vec(), m.intercept())
        }
        Method::Ridge => ridge(&z, &y, RIDGE_PENALTY)?,
        Method::Poisson => poisson_irls(&z, &y)?,
        Method::SeasonalNaive => unreachable!("handled above"),
    };
    let mut coef = vec![0.0; n];
    for (&j, c) in keep.iter().zip(kept_coef) {
        coef[j] = c;
    }
    if !intercept.is_finite() || coef.iter().any(|c| !c.is_finite()) {
        return Err(Error::Fit {
            model: method.name(),
            reason: "non-finite coefficients".into(),
        });
    }
    Ok(Fitted {
        method,
        granularity: g,
        coef,
        intercept,
        mean,
        scale,
    })
}

/// Centres and scales every column; a column that is constant, or a linear combination of
/// the columns before it (lag 7 = lag 14 on a strictly weekly series, say), gets scale 0 and
/// is left out of the fit: the least-squares solver needs a full-rank design.
fn standardize(mut x: Array2<f64>) -> (Array2<f64>, Vec<f64>, Vec<f64>) {
    let (rows, n) = (x.nrows() as f64, x.ncols());
    let (mut mean, mut scale) = (vec![0.0; n], vec![0.0; n]);
    // Orthonormal basis of the kept (centred) columns, for the dependence test.
    let mut basis: Vec<Array1<f64>> = Vec::new();
    for (j, mut col) in x.columns_mut().into_iter().enumerate() {
        let m = col.sum() / rows;
        col.mapv_inplace(|v| v - m);
        let norm2 = col.dot(&col);
        let sd = (norm2 / rows).sqrt();
        mean[j] = m;
        if sd <= 1e-9 * m.abs().max(1.0) {
            col.fill(0.0);
            continue;
        }
        let mut resid = col.to_owned();
        for b in &basis {
            let p = resid.dot(b);
            resid.scaled_add(-p, b);
        }
        let r2 = resid.dot(&resid);
        if r2 <= 1e-9 * norm2 {
            col.fill(0.0);
            continue;
        }
        basis.push(resid / r2.sqrt());
        col.mapv_inplace(|v| v / sd);
        scale[j] = sd;
    }
    (x, mean, scale)
}

/// Ridge regression on centred columns: `(Z'Z + penalty I) b = Z'(y - mean y)`, the
/// intercept the mean of `y`.
fn ridge(z: &Array2<f64>, y: &[f64], penalty: f64) -> Result<(Vec<f64>, f64)> {
    let k = z.ncols();
    let mean_y = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let yc = Array1::from_iter(y.iter().map(|v| v - mean_y));
    let gram = z.t().dot(z);
    let rhs = z.t().dot(&yc);
    let mut a = vec![0.0; k * k];
    for r in 0..k {
        for c in 0..=r {
            a[r * k + c] = gram[[r, c]] + if r == c { penalty } else { 0.0 };
        }
    }
    let b = cholesky_solve(&mut a, rhs.to_vec(), k).ok_or_else(|| Error::Fit {
        model: "ridge",
        reason: "the penalised normal equations are not positive definite".into(),
    })?;
    Ok((b, mean_y))
}

/// Poisson regression with a log link by iteratively reweighted least squares (Newton's
/// method), with a tiny ridge for stability. Returns the coefficients and the intercept.
fn poisson_irls(x: &Array2<f64>, y: &[f64]) -> Result<(Vec<f64>, f64)> {
    if y.iter().any(|v| *v < 0.0) {
        return Err(Error::Input("Poisson regression needs counts >= 0".into()));
    }
    let (n, k) = x.dim();
    let mean_y = y.iter().sum::<f64>() / n as f64;
    // beta[0] is the intercept.
    let mut beta = vec![0.0; k + 1];
    beta[0] = (mean_y + 1e-3).ln();
    for _ in 0..100 {
        if beta.iter().any(|b| !b.is_finite() || b.abs() > 1e6) {
            break;
        }
        let mut a = vec![0.0; (k + 1) * (k + 1)];
        let mut b = vec![0.0; k + 1];
        let mut xi = vec![1.0; k + 1];
        for (row, &yi) in x.rows().into_iter().zip(y) {
            xi[1..].iter_mut().zip(row).for_each(|(d, s)| *d = *s);
            let eta: f64 = xi.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let mu = eta.clamp(-30.0, 30.0).exp();
            let z = eta + (yi - mu) / mu;
            for r in 0..=k {
                let wr = mu * xi[r];
                b[r] += wr * z;
                for c in 0..=r {
                    a[r * (k + 1) + c] += wr * xi[c];
                }
            }
        }
        for r in 1..=k {
            a[r * (k + 1) + r] += 1e-6 * n as f64;
        }
        let next = cholesky_solve(&mut a, b, k + 1).ok_or_else(|| Error::Fit {
            model: "poisson",
            reason: "the weighted normal equations are not positive definite".into(),
        })?;
        let change = next
            .iter()
            .zip(&beta)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        beta = next;
        if change < 1e-9 {
            return Ok((beta[1..].to_vec(), beta[0]));
        }
    }
    Err(Error::Fit {
        model: "poisson",
        reason: "IRLS did not converge in 100 iterations".into(),
    })
}

/// Solves `a x = b` for a symmetric positive-definite `a` given by its lower triangle
/// (row-major `n x n`); `None` if `a` is not positive definite.
fn cholesky_solve(a: &mut [f64], mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let s: f64 = (0..i).map(|k| a[i * n + k] * b[k]).sum();
        b[i] = (b[i] - s) / a[i * n + i];
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| a[k * n + i] * b[k]).sum();
        b[i] = (b[i] - s) / a[i * n + i];
    }
    Some(b)
}

/// Forecasts the `horizon` periods after the series, at `price` per unit, with the
/// holidays of `cal`, never below zero.
pub fn predict(
    model: &Fitted,
    series: &Series,
    horizon: usize,
    price: f64,
    cal: &Calendar,
) -> Vec<f64> {
    let (n, g) = (series.len(), model.granularity);
    if model.method == Method::SeasonalNaive || n < g.warmup() {
        return seasonal_naive(&series.quantity, horizon, g.season());
    }
    let mut q = series.quantity.clone();
    let mut p = series.price.clone();
    p.resize(n + horizon, price);
    let cap = ceiling(&series.quantity);
    let mut x = vec![0.0; g.width()];
    for t in n..n + horizon {
        features::row(g, cal, (&q, &p), series.first_day, t, &mut x);
        let y = model.eval(&x);
        q.push(if y.is_finite() {
            y.clamp(0.0, cap)
        } else {
            0.0
        });
    }
    q.split_off(n)
}

/// The most a forecast period may predict: three times the best period of the history,
/// plus one. A recursive forecast feeds on itself; the ceiling keeps a model that
/// extrapolates badly (a log link on a sparse series, say) from compounding into nonsense.
pub fn ceiling(history: &[f64]) -> f64 {
    3.0 * history.iter().copied().fold(0.0, f64::max) + 1.0
}

/// One-step-ahead fitted values of the training periods (from the warm-up on), each from
/// the true history before it: what in-sample metrics compare against
/// `series.quantity[g.warmup()..]`.
pub fn fitted(model: &Fitted, series: &Series, cal: &Calendar) -> Vec<f64> {
    let g = model.granularity;
    let mut x = vec![0.0; g.width()];
    let cap = ceiling(&series.quantity);
    let season = g.season();
    (g.warmup()..series.len())
        .map(|t| {
            if model.method == Method::SeasonalNaive {
                return series.quantity[t - season]; // warm-up >= season
            }
            let cols = (&series.quantity[..], &series.price[..]);
            features::row(g, cal, cols, series.first_day, t, &mut x);
            let y = model.eval(&x);
            if y.is_finite() {
                y.clamp(0.0, cap)
            } else {
                0.0
            }
        })
        .collect()
}

/// The seasonal-naive forecast: period `t` repeats period `t - season`; a history shorter
/// than a season repeats its mean (0 for no history).
pub fn seasonal_naive(history: &[f64], horizon: usize, season: usize) -> Vec<f64> {
    if history.len() < season {
        let mean = if history.is_empty() {
            0.0
        } else {
            history.iter().sum::<f64>() / history.len() as f64
        };
        return vec![mean; horizon];
    }
    let mut q = history.to_vec();
    for t in history.len()..history.len() + horizon {
        q.push(q[t - season]);
    }
    q.split_off(history.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const DAY: Granularity = Granularity::Day;
    const N: usize = 16;

    fn none() -> Calendar {
        Calendar::default()
    }

    /// Solves the normal equations (X'X) b = X'y by Gaussian elimination with partial
    /// pivoting: the closed form the library's SVD solution must match.
    #[allow(clippy::needless_range_loop)] // matrix code reads best with indices
    fn closed_form(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
        let k = x[0].len();
        let mut a = vec![vec![0.0; k + 1]; k];
        for (row, &t) in x.iter().zip(y) {
            for i in 0..k {
                for j in 0..k {
                    a[i][j] += row[i] * row[j];
                }
                a[i][k] += row[i] * t;
            }
        }
        for c in 0..k {
            let p = (c..k)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap();
            a.swap(c, p);
            for r in 0..k {
                if r != c {
                    let f = a[r][c] / a[c][c];
                    for j in c..=k {
                        a[r][j] -= f * a[c][j];
                    }
                }
            }
        }
        (0..k).map(|i| a[i][k] / a[i][i]).collect()
    }

    /// A series whose quantity is an exact linear function of its own features.
    fn planted(days: usize, coef: &[f64; N], intercept: f64, noise: f64) -> Series {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut q: Vec<f64> = (0..features::WARMUP)
            .map(|_| rng.random_range(20.0..40.0))
            .collect();
        let p: Vec<f64> = (0..days)
            .map(|d| if (d / 50) % 2 == 0 { 10.0 } else { 12.5 })
            .collect();
        let mut x = [0.0; N];
        for t in features::WARMUP..days {
            features::row(DAY, &none(), (&q, &p), 100, t, &mut x);
            let y: f64 = intercept + coef.iter().zip(&x).map(|(c, v)| c * v).sum::<f64>();
            q.push(y + noise * rng.random_range(-1.0..1.0));
        }
        Series {
            first_day: 100,
            quantity: q,
            price: p,
        }
    }

    const COEF: [f64; N] = [
        0.3, 0.2, 0.1, 0.05, 0.1, 0.1, 1.0, 2.0, -1.0, 0.5, 3.0, 4.0, -0.8, -2.0, 0.01, 0.0,
    ];

    #[test]
    fn ols_recovers_planted_coefficients() {
        let s = planted(400, &COEF, 5.0, 0.0);
        let m = fit(&s, Method::Ols, DAY, &none()).unwrap();
        assert_eq!(m.method, Method::Ols);
        let (coef, intercept) = m.raw_coefficients();
        for (i, (got, want)) in coef.iter().zip(COEF).enumerate() {
            assert!(
                (got - want).abs() < 1e-6,
                "{}: {got} vs {want}",
                DAY.names()[i]
            );
        }
        assert!((intercept - 5.0).abs() < 1e-5, "{intercept}");
    }

    #[test]
    fn ols_matches_the_closed_form_on_noisy_data() {
        let s = planted(300, &COEF, 5.0, 3.0);
        let m = fit(&s, Method::Ols, DAY, &none()).unwrap();
        let (coef, intercept) = m.raw_coefficients();
        let (x, y) = features::design(&s, DAY, &none());
        let rows: Vec<Vec<f64>> = x
            .chunks(N)
            // Without the holiday column: all zeros here, which the fit leaves out.
            .map(|r| {
                std::iter::once(1.0)
                    .chain(r[..N - 1].iter().copied())
                    .collect()
            })
            .collect();
        let b = closed_form(&rows, &y);
        assert!((b[0] - intercept).abs() < 1e-6 * b[0].abs().max(1.0));
        for i in 0..N - 1 {
            assert!(
                (b[i + 1] - coef[i]).abs() < 1e-6 * b[i + 1].abs().max(1.0),
                "{}: closed form {} vs {}",
                DAY.names()[i],
                b[i + 1],
                coef[i]
            );
        }
    }

    #[test]
    fn constant_features_are_ignored_not_fatal() {
        // A price that never changes: price is constant and its change is always 0.
        let q: Vec<f64> = (0..120).map(|d| 10.0 + (d % 7) as f64).collect();
        let s = Series {
            first_day: 0,
            price: vec![5.0; q.len()],
            quantity: q,
        };
        let m = fit(&s, Method::Ols, DAY, &none()).unwrap();
        assert_eq!((m.scale[12], m.scale[13]), (0.0, 0.0));
        let f = predict(&m, &s, 14, 5.0, &none());
        let naive = seasonal_naive(&s.quantity, 14, 7);
        for (a, b) in f.iter().zip(&naive) {
            assert!((a - b).abs() < 1e-6, "{f:?} vs {naive:?}");
        }
    }

    #[test]
    fn poisson_fits_counts_with_a_weekly_pattern() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let q: Vec<f64> = (0..200)
            .map(|d| {
                let base: f64 = if (d + 3) % 7 >= 5 { 30.0 } else { 10.0 };
                (base + rng.random_range(-2.0..2.0)).round()
            })
            .collect();
        let s = Series {
            first_day: 0,
            price: vec![3.0; q.len()],
            quantity: q,
        };
        let m = fit(&s, Method::Poisson, DAY, &none()).unwrap();
        let f = predict(&m, &s, 7, 3.0, &none());
        for (d, v) in (200..207).zip(&f) {
            let want = if (d + 3) % 7 >= 5 { 30.0 } else { 10.0 };
            assert!((v - want).abs() < 3.0, "day {d}: {v} vs {want}");
        }
    }

    #[test]
    fn fitted_values_are_one_step_ahead() {
        let s = planted(200, &COEF, 5.0, 0.0);
        let m = fit(&s, Method::Ols, DAY, &none()).unwrap();
        let f = fitted(&m, &s, &none());
        assert_eq!(f.len(), 200 - features::WARMUP);
        // Exact where the truth is a possible demand; a negative truth is clamped to 0.
        for (a, b) in f.iter().zip(&s.quantity[features::WARMUP..]) {
            let want = b.max(0.0);
            assert!((a - want).abs() < 1e-6 * want.abs().max(1.0), "{a} vs {b}");
        }
        let naive = fitted(&Fitted::naive(DAY), &s, &none());
        assert_eq!(naive[0], s.quantity[features::WARMUP - 7]);
    }

    #[test]
    fn short_series_fall_back_to_seasonal_naive() {
        let s = Series {
            first_day: 0,
            quantity: (0..30).map(f64::from).collect(),
            price: vec![1.0; 30],
        };
        let m = fit(&s, Method::Ols, DAY, &none()).unwrap();
        assert_eq!(m.method, Method::SeasonalNaive);
        assert_eq!(
            predict(&m, &s, 8, 1.0, &none()),
            vec![23., 24., 25., 26., 27., 28., 29., 23.]
        );
        assert_eq!(seasonal_naive(&[2.0, 4.0], 2, 7), vec![3.0, 3.0]);
        assert_eq!(seasonal_naive(&[], 1, 7), vec![0.0]);
    }

    #[test]
    fn forecasts_never_go_below_zero() {
        // A steep decline: the linear trend would cross zero within the horizon.
        let q: Vec<f64> = (0..100).map(|d| (100 - d) as f64).collect();
        let s = Series {
            first_day: 0,
            price: vec![1.0; 100],
            quantity: q,
        };
        let m = fit(&s, Method::Ols, DAY, &none()).unwrap();
        let f = predict(&m, &s, 30, 1.0, &none());
        assert!(f.iter().all(|v| *v >= 0.0), "{f:?}");
        assert!(f[0] > 0.0 && f[29] == 0.0, "{f:?}");
    }

    #[test]
    fn a_sparse_series_cannot_explode() {
        // Mostly zeros with rare sales: a log-link model extrapolates wildly, if it fits.
        let q: Vec<f64> = (0..120)
            .map(|d| if d % 17 == 0 { 3.0 } else { 0.0 })
            .collect();
        let s = Series {
            first_day: 0,
            price: vec![2.0; q.len()],
            quantity: q,
        };
        for m in [Method::Ols, Method::Ridge, Method::Poisson] {
            if let Ok(model) = fit(&s, m, DAY, &none()) {
                let f = predict(&model, &s, 30, 2.0, &none());
                assert!(f.iter().all(|v| (0.0..=10.0).contains(v)), "{m:?}: {f:?}");
            }
        }
    }

    #[test]
    fn mismatched_lengths_are_an_input_error() {
        let s = Series {
            first_day: 0,
            quantity: vec![1.0; 3],
            price: vec![1.0; 2],
        };
        assert!(matches!(
            fit(&s, Method::Ols, DAY, &none()),
            Err(Error::Input(_))
        ));
    }
}
