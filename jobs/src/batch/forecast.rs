//! `jobs forecast`: the next days' demand per product from the lake's daily history, as
//! `sales_predictions` messages and `forecasts/run_date=.../` Parquet (a point forecast and
//! a prediction interval, from the model each product's own backtest chose), or with
//! `--evaluate` a backtest of every model on the last days against seasonal naive.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use chrono::NaiveDate;
use models::backtest::{self, Choice};
use models::features::{Calendar, Granularity, Series};
use models::forecast::{self as fc, Method};
use models::metrics;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::history::{self, DailySales, ProductInfo};
use super::{Dates, Manifest, Published, date_of, day_number};
use crate::config::{Config, ForecastModel, OutputFormat};
use crate::io::avro::{Registry, SchemaKind, Writer};
use crate::io::lake::Lake;
use crate::{Error, Result};

/// Flags of `jobs forecast`; `None` takes the config's value.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub run_date: Option<NaiveDate>,
    pub since: Option<NaiveDate>,
    pub horizon_days: Option<u32>,
    pub model: Option<ForecastModel>,
    /// Backtest instead of publishing.
    pub evaluate: bool,
    pub holdout_days: Option<u32>,
}

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    Published(Summary),
    Evaluated(Evaluation),
}

/// A published forecast run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_date: NaiveDate,
    pub model_version: String,
    pub products: usize,
    /// Products per method actually used (short histories get seasonal naive).
    pub by_method: BTreeMap<String, usize>,
    pub published: Published,
}

/// One product's backtest.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub product_id: i64,
    pub product_name: String,
    pub actual_units: f64,
    /// Per method: (MASE, WAPE); `None` where undefined.
    pub scores: Vec<(Option<f64>, Option<f64>)>,
}

/// A backtest over the last `holdout_days` days.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub holdout_days: u32,
    pub methods: Vec<&'static str>,
    pub rows: Vec<EvalRow>,
    /// Per method: mean MASE over products, overall WAPE, mean sMAPE.
    pub overall: Vec<(Option<f64>, Option<f64>, f64)>,
    pub skipped: usize,
}

/// Daily series (weekly ones are the models' too, not yet the job's).
const DAY: Granularity = Granularity::Day;

/// The models a run chooses among: every one under `auto`, else the one named.
fn candidates(m: ForecastModel) -> &'static [Method] {
    match m {
        ForecastModel::Auto => &Method::ALL,
        ForecastModel::Ols => &[Method::Ols],
        ForecastModel::Ridge => &[Method::Ridge],
        ForecastModel::Poisson => &[Method::Poisson],
        ForecastModel::SeasonalNaive => &[Method::SeasonalNaive],
    }
}

/// The model of a product whose history is too short to choose by backtest.
fn fallback(m: ForecastModel) -> Method {
    match m {
        ForecastModel::Auto => Method::Ridge,
        other => candidates(other)[0],
    }
}

fn model_name(m: ForecastModel) -> &'static str {
    match m {
        ForecastModel::Auto => "auto",
        other => candidates(other)[0].name(),
    }
}

/// The holiday calendar of the config, as day numbers.
fn calendar(cfg: &Config) -> Calendar {
    Calendar::new(
        cfg.forecast
            .holidays
            .iter()
            .map(|d| day_number(*d))
            .collect(),
    )
}

/// Each product's series: from its first sale in range to the day before `until`, zero on
/// days without sales; the price is the mean paid that day, carried forward.
pub fn build_series(daily: &DailySales, dates: &Dates) -> Vec<(i64, Series)> {
    let end = day_number(dates.until);
    let mut out = Vec::new();
    for rows in daily.rows.chunk_by(|a, b| a.product_id == b.product_id) {
        let first = rows[0].day;
        let len = (end - first).max(0) as usize;
        if len == 0 {
            continue;
        }
        let mut quantity = vec![0.0; len];
        let mut price = vec![f64::NAN; len];
        for r in rows {
            let i = (r.day - first) as usize;
            if i < len {
                quantity[i] = r.quantity;
                if r.quantity > 0.0 {
                    price[i] = r.revenue / r.quantity;
                }
            }
        }
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

/// Reads the history, then either publishes a forecast or backtests.
pub async fn run(cfg: &Config, args: &RunOptions) -> Result<Outcome> {
    let started_at = super::now_rfc3339();
    let fcfg = &cfg.forecast;
    let dates = Dates::resolve(args.run_date, args.since, fcfg.history_days)?;
    let horizon = args.horizon_days.unwrap_or(fcfg.horizon_days);
    if horizon == 0 {
        return Err(Error::Config("--horizon must be at least 1 day".into()));
    }
    let chosen = args.model.unwrap_or(fcfg.model);
    if !(fcfg.interval > 0.0 && fcfg.interval < 1.0) {
        return Err(Error::Config(format!(
            "forecast.interval = {}: the interval's coverage must lie between 0 and 1 (0.8: the 10th to the 90th percentile)",
            fcfg.interval
        )));
    }
    let cal = calendar(cfg);
    let lake = Lake::open(&cfg.lake, &cfg.s3)?;

    // 1. Read the lake.
    let daily = history::daily_sales(cfg, &lake, &dates).await?;
    let series = build_series(&daily, &dates);
    tracing::info!(
        message = "Read sales history.",
        lake = %lake.url_of(history::TABLE),
        since = %dates.since,
        until = %dates.until,
        files = daily.inputs.len(),
        products = series.len()
    );

    if args.evaluate {
        let holdout = args.holdout_days.unwrap_or(fcfg.holdout_days);
        let products = daily.products.clone();
        let eval = tokio::task::spawn_blocking(move || evaluate(&series, &products, holdout, &cal))
            .await
            .map_err(|e| Error::Internal(format!("evaluation task: {e}")))??;
        return Ok(Outcome::Evaluated(eval));
    }

    // 2. Fit and predict.
    let level = fcfg.interval;
    let holidays = cal.len();
    let fits = tokio::task::spawn_blocking(move || fit_all(series, chosen, horizon, level, &cal))
        .await
        .map_err(|e| Error::Internal(format!("forecast task: {e}")))?;
    let mut by_method: BTreeMap<String, usize> = BTreeMap::new();
    let (mut abs_err, mut units) = (0.0, 0.0);
    for f in &fits {
        *by_method.entry(f.model.clone()).or_default() += 1;
        abs_err += f.train_abs_error;
        units += f.train_units;
    }
    let version = model_version(chosen, &daily, &dates, horizon);

    // 3. Publish: the lake, Kafka, then the manifest.
    let dir = format!("forecasts/run_date={}", dates.run_date);
    let backtested = fits.iter().filter(|f| f.backtested).count();
    let batch = lake_batch(&fits, &daily.products, &dates, &version)?;
    let schema_id = Registry::for_config(&cfg.schema_registry, &cfg.topics)
        .await?
        .id(SchemaKind::SalesPrediction)?;
    let messages = messages(
        &fits,
        &daily.products,
        &dates,
        &version,
        cfg.forecast.output_format,
        schema_id,
    );
    let mut published = super::publish_outputs(
        cfg,
        &lake,
        &dir,
        batch,
        &cfg.topics.sales_predictions,
        messages,
    )
    .await?;
    let manifest = Manifest {
        job: "forecast",
        program: format!("jobs {}", env!("CARGO_PKG_VERSION")),
        model_version: &version,
        rerun: format!(
            "jobs forecast --run-date {} --since {} --horizon {horizon} --model {}",
            dates.run_date,
            dates.since,
            model_name(chosen).replace('_', "-")
        ),
        dates,
        lake: &lake.url,
        inputs: &daily.inputs,
        features: json!(DAY.names()),
        hyperparameters: json!({
            "model": model_name(chosen),
            "candidates": candidates(chosen).iter().map(|m| m.name()).collect::<Vec<_>>(),
            "fallback": fallback(chosen).name(),
            "backtest": {
                "origins": backtest::ORIGINS,
                "min_origins": backtest::MIN_ORIGINS,
                "spacing_days": (horizon / 2).max(1),
                "score": "mean absolute error of recursive forecasts over the horizon",
            },
            "ridge_penalty": fc::RIDGE_PENALTY,
            "interval": level,
            "holidays": holidays,
            "planning_price": "mean price of the last 7 days",
            "horizon_days": horizon,
            "warmup_days": DAY.warmup(),
            "min_train_rows": fc::MIN_TRAIN_ROWS,
            "standardised": true,
            "seed": null,
        }),
        metrics: json!({
            "products": fits.len(),
            "products_by_method": by_method,
            "products_backtested": backtested,
            "in_sample_one_step_wape": if units > 0.0 { Some(abs_err / units) } else { None },
        }),
        outputs: &published,
        started_at,
        finished_at: super::now_rfc3339(),
    };
    let m = super::write_manifest(&lake, &dir, &manifest).await?;
    published.files.push(m);
    tracing::info!(
        message = "Published forecasts.",
        model_version = %version,
        products = fits.len(),
        messages = published.messages,
        dir = %lake.url_of(&dir)
    );
    Ok(Outcome::Published(Summary {
        run_date: dates.run_date,
        model_version: version,
        products: fits.len(),
        by_method,
        published,
    }))
}

/// One product's fitted model and forecast.
struct ProductForecast {
    product_id: i64,
    /// The models averaged, `+`-joined (`ridge+ols`).
    model: String,
    backtested: bool,
    history_days: usize,
    forecast: Vec<f64>,
    /// `(low, high)` per forecast day.
    band: Vec<(f64, f64)>,
    train_abs_error: f64,
    train_units: f64,
}

fn fit_all(
    series: Vec<(i64, Series)>,
    chosen: ForecastModel,
    horizon: u32,
    level: f64,
    cal: &Calendar,
) -> Vec<ProductForecast> {
    let bar = super::progress(series.len() as u64, "forecast");
    let h = horizon as usize;
    let out: Vec<ProductForecast> = series
        .par_iter()
        .map(|(id, s)| {
            let choice = backtest::choose(s, candidates(chosen), fallback(chosen), h, (DAY, cal))
                .unwrap_or_else(|e| {
                    tracing::warn!(
                        message = "Model failed; this product falls back to seasonal naive.",
                        product_id = id,
                        error = %e
                    );
                    Choice::single(
                        fc::fit(s, Method::SeasonalNaive, DAY, cal)
                            .expect("seasonal naive always fits"),
                    )
                });
            let price = s.planning_price(DAY).unwrap_or(0.0);
            let forecast = choice.predict(s, h, price, cal);
            let bt = choice.backtest.as_ref();
            let band = backtest::interval(&forecast, bt.map_or(&[][..], |b| &b.residuals), level);
            let fitted = choice.fitted(s, cal);
            let actual = &s.quantity[s.len() - fitted.len()..];
            let train_abs_error = actual.iter().zip(&fitted).map(|(a, f)| (a - f).abs()).sum();
            bar.inc(1);
            ProductForecast {
                product_id: *id,
                model: choice.name(),
                backtested: bt.is_some(),
                history_days: s.len(),
                forecast,
                band,
                train_abs_error,
                train_units: actual.iter().sum(),
            }
        })
        .collect();
    bar.finish_and_clear();
    out
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

/// Backtests every method on the last `holdout` days of each product.
pub fn evaluate(
    series: &[(i64, Series)],
    products: &BTreeMap<i64, ProductInfo>,
    holdout: u32,
    cal: &Calendar,
) -> Result<Evaluation> {
    let h = holdout as usize;
    if h == 0 {
        return Err(Error::Config("--holdout-days must be at least 1".into()));
    }
    let bar = super::progress(series.len() as u64, "backtest");
    let rows: Vec<Option<Scored>> = series
        .par_iter()
        .map(|(id, s)| {
            bar.inc(1);
            // Enough history for a model after the cut, else the product is skipped.
            if s.len() < h + DAY.warmup() + fc::MIN_TRAIN_ROWS {
                return None;
            }
            let cut = s.len() - h;
            let train = s.head(cut);
            let actual = &s.quantity[cut..];
            let price = train.planning_price(DAY).unwrap_or(0.0);
            let mut scores = Vec::new();
            let mut raw = Vec::new();
            for m in EVAL_MODELS {
                // The choice is made on the training days alone, as a published run makes it.
                let choice = backtest::choose(&train, candidates(m), fallback(m), h, (DAY, cal))
                    .unwrap_or_else(|_| {
                        Choice::single(
                            fc::fit(&train, Method::SeasonalNaive, DAY, cal)
                                .expect("seasonal naive always fits"),
                        )
                    });
                let f = choice.predict(&train, h, price, cal);
                scores.push((
                    metrics::mase(actual, &f, &train.quantity, 7),
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
            "no product has {} days of history (the {holdout} held-out days plus {} to train on): lower --holdout-days or widen --since",
            h + DAY.warmup() + fc::MIN_TRAIN_ROWS,
            DAY.warmup() + fc::MIN_TRAIN_ROWS
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
        holdout_days: holdout,
        methods: EVAL_MODELS.iter().map(|m| model_name(*m)).collect(),
        rows: rows.into_iter().map(|(r, _)| r).collect(),
        overall,
        skipped,
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
            "\noverall over {} products, last {} days held out ({} skipped: too little history):",
            self.rows.len(),
            self.holdout_days,
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
        Ok(())
    }
}

fn model_version(m: ForecastModel, daily: &DailySales, dates: &Dates, horizon: u32) -> String {
    let mut parts: Vec<String> = vec![
        env!("CARGO_PKG_VERSION").into(),
        model_name(m).into(),
        dates.since.to_string(),
        dates.until.to_string(),
        horizon.to_string(),
    ];
    for i in &daily.inputs {
        parts.push(format!("{}:{}", i.path, i.rows));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!(
        "{}-{}-{}",
        model_name(m),
        dates.run_date.format("%Y%m%d"),
        super::fingerprint(&refs)
    )
}

fn lake_batch(
    fits: &[ProductForecast],
    products: &BTreeMap<i64, ProductInfo>,
    dates: &Dates,
    version: &str,
) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("product_name", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("product_category", DataType::Utf8, false),
        Field::new("forecast_date", DataType::Date32, false),
        Field::new("predicted_quantity", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("history_days", DataType::Int32, false),
        Field::new("predicted_low", DataType::Float64, false),
        Field::new("predicted_high", DataType::Float64, false),
    ]));
    let (mut id, mut date, mut hist) = (
        Int64Builder::new(),
        Date32Builder::new(),
        Int32Builder::new(),
    );
    let (mut name, mut brand, mut cat, mut model, mut ver) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut qty, mut low, mut high) = (
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    );
    let start = day_number(dates.run_date);
    let unknown = ProductInfo::default();
    for f in fits {
        let info = products.get(&f.product_id).unwrap_or(&unknown);
        for (d, q) in f.forecast.iter().enumerate() {
            id.append_value(f.product_id);
            name.append_value(&info.name);
            brand.append_value(&info.brand);
            cat.append_value(&info.category);
            date.append_value((start + d as i64) as i32);
            qty.append_value(*q);
            model.append_value(&f.model);
            ver.append_value(version);
            hist.append_value(f.history_days as i32);
            low.append_value(f.band[d].0);
            high.append_value(f.band[d].1);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(name.finish()),
        Arc::new(brand.finish()),
        Arc::new(cat.finish()),
        Arc::new(date.finish()),
        Arc::new(qty.finish()),
        Arc::new(model.finish()),
        Arc::new(ver.finish()),
        Arc::new(hist.finish()),
        Arc::new(low.finish()),
        Arc::new(high.finish()),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| Error::Internal(format!("arrow batch: {e}")))
}

fn messages(
    fits: &[ProductForecast],
    products: &BTreeMap<i64, ProductInfo>,
    dates: &Dates,
    version: &str,
    format: OutputFormat,
    schema_id: u32,
) -> Vec<(String, Vec<u8>)> {
    let start = day_number(dates.run_date);
    let run = day_number(dates.run_date);
    let unknown = ProductInfo::default();
    let mut w = Writer::default();
    let mut out = Vec::new();
    for f in fits {
        let name = &products.get(&f.product_id).unwrap_or(&unknown).name;
        for (d, q) in f.forecast.iter().enumerate() {
            let day = start + d as i64;
            let value = match format {
                OutputFormat::Avro => {
                    w.start_framed(schema_id);
                    w.long(f.product_id);
                    w.string(name);
                    w.int32(day as i32);
                    w.double(*q);
                    w.string(&f.model);
                    w.string(version);
                    w.int32(run as i32);
                    w.double(f.band[d].0);
                    w.double(f.band[d].1);
                    w.buf.clone()
                }
                OutputFormat::Json => serde_json::to_vec(&json!({
                    "product_id": f.product_id,
                    "product_name": name,
                    "forecast_date": date_of(day).to_string(),
                    "predicted_quantity": q,
                    "model": &f.model,
                    "model_version": version,
                    "run_date": dates.run_date.to_string(),
                    "predicted_low": f.band[d].0,
                    "predicted_high": f.band[d].1,
                }))
                .expect("a JSON value always encodes"),
            };
            out.push((f.product_id.to_string(), value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::history::DaySales;

    #[test]
    fn series_fill_gaps_and_carry_prices() {
        let d = |day, quantity, revenue| DaySales {
            product_id: 1,
            day,
            quantity,
            revenue,
        };
        let daily = DailySales {
            inputs: vec![],
            rows: vec![d(100, 2.0, 20.0), d(103, 1.0, 12.0)],
            products: BTreeMap::new(),
        };
        let dates = Dates {
            run_date: date_of(105),
            since: date_of(90),
            until: date_of(105),
        };
        let s = build_series(&daily, &dates);
        assert_eq!(s.len(), 1);
        let (id, s) = &s[0];
        assert_eq!(*id, 1);
        assert_eq!(s.first_day, 100);
        assert_eq!(s.quantity, vec![2.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(s.price, vec![10.0, 10.0, 10.0, 12.0, 12.0]);
    }
}
