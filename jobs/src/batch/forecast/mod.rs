//! `jobs forecast`: the next days' (or weeks') demand per product from the lake's daily
//! history, as `sales_predictions` messages and `forecasts/run_date=.../` Parquet (a point
//! forecast and a prediction interval, from the models each product's own backtest chose),
//! or with `--evaluate` a backtest of every model on the last periods against seasonal
//! naive.

mod evaluate;
mod publish;
mod series;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use models::backtest::{self, Choice};
use models::features::{Calendar, Granularity, Series};
use models::forecast::{self as fc, Method};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

pub use self::evaluate::{EvalRow, Evaluation, evaluate};
pub use self::series::build_series;
use super::history::{self, DailySales};
use super::{Dates, Manifest, Published, day_number};
use crate::config::{Config, ForecastGranularity, ForecastModel};
use crate::io::avro::SchemaKind;
use crate::io::lake::Lake;
use crate::io::registry;
use crate::{Error, Result};

/// Flags of `jobs forecast`; `None` takes the config's value.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub run_date: Option<NaiveDate>,
    pub since: Option<NaiveDate>,
    pub horizon_days: Option<u32>,
    pub model: Option<ForecastModel>,
    pub granularity: Option<ForecastGranularity>,
    /// Backtest instead of publishing.
    pub evaluate: bool,
    pub holdout_days: Option<u32>,
}

/// What a run did.
pub type Outcome = super::Outcome<Summary, Evaluation>;

/// A published forecast run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_date: NaiveDate,
    pub model_version: String,
    pub products: usize,
    /// Periods forecast, of `granularity` (`day` or `week`).
    pub periods: usize,
    pub granularity: &'static str,
    /// Products per method actually used (short histories get seasonal naive).
    pub by_method: BTreeMap<String, usize>,
    pub published: Published,
}

fn granularity(g: ForecastGranularity) -> Granularity {
    match g {
        ForecastGranularity::Day => Granularity::Day,
        ForecastGranularity::Week => Granularity::Week,
    }
}

/// Days in periods of `g`, rounded up: a 7-day horizon is one week.
fn periods(days: u32, g: Granularity) -> usize {
    (i64::from(days) + g.days() - 1).div_euclid(g.days()) as usize
}

/// The models a run chooses among: every one under `auto`, else the one named.
pub(super) fn candidates(m: ForecastModel) -> &'static [Method] {
    match m {
        ForecastModel::Auto => &Method::ALL,
        ForecastModel::Ols => &[Method::Ols],
        ForecastModel::Ridge => &[Method::Ridge],
        ForecastModel::Poisson => &[Method::Poisson],
        ForecastModel::SeasonalNaive => &[Method::SeasonalNaive],
    }
}

/// The model of a product whose history is too short to choose by backtest.
pub(super) fn fallback(m: ForecastModel) -> Method {
    match m {
        ForecastModel::Auto => Method::Ridge,
        other => candidates(other)[0],
    }
}

pub(super) fn model_name(m: ForecastModel) -> &'static str {
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
    let g = granularity(args.granularity.unwrap_or(fcfg.granularity));
    let h = periods(horizon, g);
    let lake = Lake::open(&cfg.lake, &cfg.s3)?;

    // 1. Read the lake.
    let daily = history::daily_sales(cfg, &lake, &dates).await?;
    let series = build_series(&daily, &dates, g);
    tracing::info!(
        message = "Read sales history.",
        lake = %lake.url_of(history::TABLE),
        since = %dates.since,
        until = %dates.until,
        files = daily.inputs.len(),
        products = series.len()
    );

    if args.evaluate {
        let holdout = periods(args.holdout_days.unwrap_or(fcfg.holdout_days), g);
        let products = daily.products.clone();
        let mut eval =
            tokio::task::spawn_blocking(move || evaluate(&series, &products, holdout, (g, &cal)))
                .await
                .map_err(|e| Error::Internal(format!("evaluation task: {e}")))??;
        let report = json!({
            "job": "forecast --evaluate",
            "program": format!("jobs {}", env!("CARGO_PKG_VERSION")),
            "dates": &dates,
            "inputs": &daily.inputs,
            "protocol": "each product's last `holdout` periods held out; every model fitted on the periods before (auto chooses on those alone); recursive forecasts at the planning price; MASE against the in-sample seasonal-naive error",
            "evaluation": &eval,
            "finished_at": super::now_rfc3339(),
        });
        let rel = super::write_report(&lake, "forecast", dates.run_date, &report).await?;
        eval.report = Some(lake.url_of(&rel));
        return Ok(Outcome::Evaluated(eval));
    }

    // 2. Fit and predict.
    let level = fcfg.interval;
    let holidays = cal.len();
    let fits = tokio::task::spawn_blocking(move || fit_all(series, chosen, (h, g), level, &cal))
        .await
        .map_err(|e| Error::Internal(format!("forecast task: {e}")))?;
    let mut by_method: BTreeMap<String, usize> = BTreeMap::new();
    let (mut abs_err, mut units) = (0.0, 0.0);
    for f in &fits {
        *by_method.entry(f.model.clone()).or_default() += 1;
        abs_err += f.train_abs_error;
        units += f.train_units;
    }
    let version = model_version(chosen, &daily, &dates, (horizon, g));

    // 3. Publish: the lake, Kafka, then the manifest.
    let dir = format!("forecasts/run_date={}", dates.run_date);
    let backtested = fits.iter().filter(|f| f.backtested).count();
    let batch = publish::lake_batch(&fits, &daily.products, (&dates, g), &version)?;
    let schema_id = registry::for_config(&cfg.schema_registry, &cfg.topics, None)
        .await?
        .id(SchemaKind::SalesPrediction)?;
    let messages = publish::messages(
        &fits,
        &daily.products,
        (&dates, g),
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
            "jobs forecast --run-date {} --since {} --horizon {horizon} --model {} --granularity {}",
            dates.run_date,
            dates.since,
            model_name(chosen).replace('_', "-"),
            g.name()
        ),
        dates,
        lake: &lake.url,
        inputs: &daily.inputs,
        features: json!(g.names()),
        hyperparameters: json!({
            "model": model_name(chosen),
            "candidates": candidates(chosen).iter().map(|m| m.name()).collect::<Vec<_>>(),
            "fallback": fallback(chosen).name(),
            "backtest": {
                "origins": backtest::ORIGINS,
                "min_origins": backtest::MIN_ORIGINS,
                "spacing_periods": (h / 2).max(1),
                "score": "mean absolute error of recursive forecasts over the horizon",
            },
            "ridge_penalty": fc::RIDGE_PENALTY,
            "interval": level,
            "holidays": holidays,
            "planning_price": "mean price of the last week",
            "granularity": g.name(),
            "horizon_days": horizon,
            "horizon_periods": h,
            "warmup_periods": g.warmup(),
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
        periods: h,
        granularity: g.name(),
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
    /// `(low, high)` per forecast period.
    band: Vec<(f64, f64)>,
    train_abs_error: f64,
    train_units: f64,
}

fn fit_all(
    series: Vec<(i64, Series)>,
    chosen: ForecastModel,
    (h, g): (usize, Granularity),
    level: f64,
    cal: &Calendar,
) -> Vec<ProductForecast> {
    let bar = super::progress(series.len() as u64, "forecast");
    let out: Vec<ProductForecast> = series
        .par_iter()
        .map(|(id, s)| {
            let choice = backtest::choose(s, candidates(chosen), fallback(chosen), h, (g, cal))
                .unwrap_or_else(|e| {
                    tracing::warn!(
                        message = "Model failed; this product falls back to seasonal naive.",
                        product_id = id,
                        error = %e
                    );
                    Choice::single(
                        fc::fit(s, Method::SeasonalNaive, g, cal)
                            .expect("seasonal naive always fits"),
                    )
                });
            let price = s.planning_price(g).unwrap_or(0.0);
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
                history_days: s.len() * g.days() as usize,
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

fn model_version(
    m: ForecastModel,
    daily: &DailySales,
    dates: &Dates,
    (horizon, g): (u32, Granularity),
) -> String {
    let mut parts: Vec<String> = vec![
        env!("CARGO_PKG_VERSION").into(),
        model_name(m).into(),
        dates.since.to_string(),
        dates.until.to_string(),
        horizon.to_string(),
    ];
    // Daily runs keep the versions they had before weekly ones existed.
    if g != Granularity::Day {
        parts.push(g.name().into());
    }
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
