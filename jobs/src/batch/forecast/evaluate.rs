//! `jobs forecast --evaluate`: every model (and `auto`'s choice, made on the days before the
//! holdout only) scored on each product's last periods against the seasonal-naive baseline.

use std::collections::BTreeMap;
use std::fmt;

use models::backtest::{self, Choice};
use models::features::{Calendar, Granularity, Series};
use models::forecast::{self as fc, Method};
use models::metrics;
use rayon::prelude::*;
use serde::Serialize;

use super::{candidates, fallback, model_name};
use crate::batch::history::ProductInfo;
use crate::config::ForecastModel;
use crate::{Error, Result};

/// One product's backtest.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub product_id: i64,
    pub product_name: String,
    pub actual_units: f64,
    /// Per method: (MASE, WAPE); `None` where undefined.
    pub scores: Vec<(Option<f64>, Option<f64>)>,
}

/// A backtest over the last `holdout` periods.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    /// Periods held out.
    pub holdout: usize,
    /// `day` or `week`.
    pub granularity: &'static str,
    pub methods: Vec<&'static str>,
    pub rows: Vec<EvalRow>,
    /// Per method: mean MASE over products, overall WAPE, mean sMAPE.
    pub overall: Vec<(Option<f64>, Option<f64>, f64)>,
    pub skipped: usize,
    /// Where the report was written (`evaluations/forecast/run_date=.../report.json`).
    pub report: Option<String>,
}

/// A product's backtest row and, per method, its absolute error and sMAPE.
type Scored = (EvalRow, Vec<(f64, f64)>);

/// What `--evaluate` compares: the backtest's choice, each model alone, the baseline last.
const EVAL_MODELS: [ForecastModel; 5] = [
    ForecastModel::Auto,
    ForecastModel::Ols,
    ForecastModel::Ridge,
    ForecastModel::Poisson,
    ForecastModel::SeasonalNaive,
];

/// Backtests every method on the last `holdout` periods of each product's series of
/// periods `g`.
pub fn evaluate(
    series: &[(i64, Series)],
    products: &BTreeMap<i64, ProductInfo>,
    holdout: usize,
    (g, cal): (Granularity, &Calendar),
) -> Result<Evaluation> {
    let h = holdout;
    if h == 0 {
        return Err(Error::Config("--holdout-days must be at least 1".into()));
    }
    let bar = crate::batch::progress(series.len() as u64, "backtest");
    let rows: Vec<Option<Scored>> = series
        .par_iter()
        .map(|(id, s)| {
            bar.inc(1);
            // Enough history for a model after the cut, else the product is skipped.
            if s.len() < h + g.warmup() + fc::MIN_TRAIN_ROWS {
                return None;
            }
            let cut = s.len() - h;
            let train = s.head(cut);
            let actual = &s.quantity[cut..];
            let price = train.planning_price(g).unwrap_or(0.0);
            let mut scores = Vec::new();
            let mut raw = Vec::new();
            for m in EVAL_MODELS {
                // `auto` chooses on the training days alone, as a published run does; a
                // single model needs no backtest here (its errors only make the interval).
                let chosen = match m {
                    ForecastModel::Auto => {
                        backtest::choose(&train, candidates(m), fallback(m), h, (g, cal))
                    }
                    _ => fc::fit(&train, fallback(m), g, cal).map(Choice::single),
                };
                let choice = chosen.unwrap_or_else(|_| {
                    Choice::single(
                        fc::fit(&train, Method::SeasonalNaive, g, cal)
                            .expect("seasonal naive always fits"),
                    )
                });
                let f = choice.predict(&train, h, price, cal);
                scores.push((
                    metrics::mase(actual, &f, &train.quantity, g.season()),
                    metrics::wape(actual, &f),
                ));
                let err: f64 = actual.iter().zip(&f).map(|(a, b)| (a - b).abs()).sum();
                raw.push((err, metrics::smape(actual, &f)));
            }
            Some((
                EvalRow {
                    product_id: *id,
                    product_name: products.get(id).map(|p| p.name.clone()).unwrap_or_default(),
                    actual_units: actual.iter().sum(),
                    scores,
                },
                raw,
            ))
        })
        .collect();
    bar.finish_and_clear();
    let skipped = rows.iter().filter(|r| r.is_none()).count();
    let rows: Vec<Scored> = rows.into_iter().flatten().collect();
    if rows.is_empty() {
        return Err(Error::NoHistory(format!(
            "no product has {} {}s of history (the {holdout} held out plus {} to train on): lower --holdout-days or widen --since",
            h + g.warmup() + fc::MIN_TRAIN_ROWS,
            g.name(),
            g.warmup() + fc::MIN_TRAIN_ROWS
        )));
    }
    let units: f64 = rows.iter().map(|(r, _)| r.actual_units).sum();
    let overall = (0..EVAL_MODELS.len())
        .map(|m| {
            let mases: Vec<f64> = rows.iter().filter_map(|(r, _)| r.scores[m].0).collect();
            let mase = (!mases.is_empty()).then(|| mases.iter().sum::<f64>() / mases.len() as f64);
            let err: f64 = rows.iter().map(|(_, raw)| raw[m].0).sum();
            let smape = rows.iter().map(|(_, raw)| raw[m].1).sum::<f64>() / rows.len() as f64;
            (mase, (units > 0.0).then(|| err / units), smape)
        })
        .collect();
    Ok(Evaluation {
        holdout,
        granularity: g.name(),
        methods: EVAL_MODELS.iter().map(|m| model_name(*m)).collect(),
        rows: rows.into_iter().map(|(r, _)| r).collect(),
        overall,
        skipped,
        report: None,
    })
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        write!(f, "{:>10}  {:<32} {:>8}", "product", "name", "units")?;
        for m in &self.methods {
            write!(f, "  {:>14} {:>8}", format!("{m} MASE"), "WAPE")?;
        }
        writeln!(f)?;
        for r in &self.rows {
            let name: String = r.product_name.chars().take(32).collect();
            write!(
                f,
                "{:>10}  {:<32} {:>8.0}",
                r.product_id, name, r.actual_units
            )?;
            for (mase, wape) in &r.scores {
                write!(f, "  {:>14} {:>8}", opt(*mase), opt(*wape))?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "\noverall over {} products, last {} {}s held out ({} skipped: too little history):",
            self.rows.len(),
            self.holdout,
            self.granularity,
            self.skipped
        )?;
        writeln!(
            f,
            "{:<16} {:>10} {:>8} {:>8}",
            "model", "mean MASE", "WAPE", "sMAPE"
        )?;
        for (m, (mase, wape, smape)) in self.methods.iter().zip(&self.overall) {
            writeln!(
                f,
                "{m:<16} {:>10} {:>8} {smape:>8.3}",
                opt(*mase),
                opt(*wape)
            )?;
        }
        if let Some(r) = &self.report {
            writeln!(f, "report: {r}")?;
        }
        Ok(())
    }
}
