//! Accuracy metrics: MASE, WAPE and sMAPE for forecasts; precision, recall, nDCG and MAP at
//! K for rankings.

/// Weighted absolute percentage error: `sum |actual - forecast| / sum |actual|`; `None`
/// when nothing was sold (the ratio is undefined).
pub fn wape(actual: &[f64], forecast: &[f64]) -> Option<f64> {
    let denom: f64 = actual.iter().map(|a| a.abs()).sum();
    (denom > 0.0).then(|| abs_error(actual, forecast) / denom)
}

/// Symmetric MAPE in [0, 2]: the mean of `2 |a - f| / (|a| + |f|)`, a day with both zero
/// counting as exact.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    if actual.is_empty() {
        return 0.0;
    }
    let s: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| {
            let d = a.abs() + f.abs();
            if d == 0.0 {
                0.0
            } else {
                2.0 * (a - f).abs() / d
            }
        })
        .sum();
    s / actual.len() as f64
}

/// Mean absolute scaled error: the forecast's mean absolute error over the in-sample mean
/// absolute error of the seasonal-naive forecast with period `season` on `train`. `None`
/// when that scale is 0 or `train` is shorter than one season plus a day.
pub fn mase(actual: &[f64], forecast: &[f64], train: &[f64], season: usize) -> Option<f64> {
    if actual.is_empty() || train.len() <= season {
        return None;
    }
    let scale: f64 = train
        .windows(season + 1)
        .map(|w| (w[season] - w[0]).abs())
        .sum::<f64>()
        / (train.len() - season) as f64;
    (scale > 0.0).then(|| abs_error(actual, forecast) / actual.len() as f64 / scale)
}

fn abs_error(actual: &[f64], forecast: &[f64]) -> f64 {
    assert_eq!(
        actual.len(),
        forecast.len(),
        "actual and forecast differ in length"
    );
    actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .sum()
}

/// Ranking metrics of one list against the relevant items (`relevant` sorted ascending).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ranking {
    /// Relevant items among the first K, over K.
    pub precision: f64,
    /// Relevant items among the first K, over the number of relevant items.
    pub recall: f64,
    /// Discounted cumulative gain of the first K over the best possible.
    pub ndcg: f64,
    /// Average precision at K (normalised by `min(K, relevant)`).
    pub map: f64,
}

/// Precision, recall, nDCG and average precision of the first `k` of `ranked`.
pub fn ranking(ranked: &[u32], relevant: &[u32], k: usize) -> Ranking {
    debug_assert!(relevant.is_sorted());
    if relevant.is_empty() || k == 0 {
        return Ranking::default();
    }
    let (mut hits, mut dcg, mut ap) = (0usize, 0.0, 0.0);
    for (i, item) in ranked.iter().take(k).enumerate() {
        if relevant.binary_search(item).is_ok() {
            hits += 1;
            dcg += 1.0 / (i as f64 + 2.0).log2();
            ap += hits as f64 / (i + 1) as f64;
        }
    }
    let ideal: f64 = (0..relevant.len().min(k))
        .map(|i| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    Ranking {
        precision: hits as f64 / k as f64,
        recall: hits as f64 / relevant.len() as f64,
        ndcg: dcg / ideal,
        map: ap / relevant.len().min(k) as f64,
    }
}

/// The mean of [`ranking`] over users; users without relevant items are left out. Returns
/// the means and the number of users averaged.
pub fn mean_ranking(lists: &[Vec<u32>], relevant: &[Vec<u32>], k: usize) -> (Ranking, usize) {
    let mut sum = Ranking::default();
    let mut n = 0;
    for (ranked, rel) in lists.iter().zip(relevant) {
        if rel.is_empty() {
            continue;
        }
        let r = ranking(ranked, rel, k);
        sum.precision += r.precision;
        sum.recall += r.recall;
        sum.ndcg += r.ndcg;
        sum.map += r.map;
        n += 1;
    }
    if n > 0 {
        let n = n as f64;
        sum.precision /= n;
        sum.recall /= n;
        sum.ndcg /= n;
        sum.map /= n;
    }
    (sum, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn forecast_metrics_by_hand() {
        let a = [10.0, 0.0, 5.0];
        let f = [8.0, 0.0, 7.0];
        assert!(close(wape(&a, &f).unwrap(), 4.0 / 15.0));
        assert!(close(smape(&a, &f), (4.0 / 18.0 + 0.0 + 4.0 / 12.0) / 3.0));
        // Train 1,2,3,4 with season 1: naive errors 1,1,1 -> scale 1; MAE 4/3.
        assert!(close(
            mase(&a, &f, &[1.0, 2.0, 3.0, 4.0], 1).unwrap(),
            4.0 / 3.0
        ));
        assert_eq!(wape(&[0.0], &[1.0]), None);
        assert_eq!(mase(&a, &f, &[2.0, 2.0, 2.0], 1), None);
        assert_eq!(mase(&a, &f, &[2.0], 1), None);
    }

    #[test]
    fn ranking_metrics_by_hand() {
        // Hits at ranks 1 and 3 of 4; 3 relevant items.
        let r = ranking(&[7, 1, 9, 4], &[2, 7, 9], 4);
        assert!(close(r.precision, 0.5));
        assert!(close(r.recall, 2.0 / 3.0));
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!(close(r.ndcg, dcg / idcg));
        assert!(close(r.map, (1.0 + 2.0 / 3.0) / 3.0));
        let perfect = ranking(&[2, 7, 9], &[2, 7, 9], 3);
        assert_eq!(
            perfect,
            Ranking {
                precision: 1.0,
                recall: 1.0,
                ndcg: 1.0,
                map: 1.0
            }
        );
        let (mean, n) = mean_ranking(&[vec![2], vec![5], vec![1]], &[vec![2], vec![], vec![3]], 1);
        assert_eq!(n, 2);
        assert!(close(mean.precision, 0.5));
    }
}
