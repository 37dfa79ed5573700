//! The sections of the batch jobs, the scheduler, compaction and the dashboard: what each
//! key means and its default. Re-exported by [`super`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::OutputFormat;
/// The live dashboard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Address to listen on. Anything but loopback needs `token`.
    pub addr: String,
    /// Required on every request when set (at least 16 characters): the header
    /// `Authorization: Bearer <token>` or the login cookie. Never logged; `jobs config`
    /// prints it redacted.
    pub token: Option<String>,
    /// How long the stream may go without a checkpoint before the page says it is stale.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// How often the stream's checkpoints are looked at.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            addr: "127.0.0.1:8080".into(),
            token: None,
            stale_after: Duration::from_secs(120),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Compaction: the closed date folders of the stream's tables merged into few large files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Compact in the background of `jobs stream` (in the process holding source partition
    /// 0), and once at the end of `--until-idle`.
    pub enabled: bool,
    /// How often the stream looks for closed folders with small files.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Size a merged file grows to before the next one starts; files this large or larger are
    /// left as they are.
    pub target_file_bytes: u64,
    /// Share of one core the stream's background compaction may use (it sleeps in
    /// proportion to the time it merged).
    pub cpu_share: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            interval: Duration::from_secs(600),
            target_file_bytes: 128 << 20,
            cpu_share: 0.25,
        }
    }
}

/// `jobs forecast`: daily demand per product from the lake's `sales_raw`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Days to forecast, starting at the run date.
    pub horizon_days: u32,
    /// Days of history to train on, ending the day before the run date (`--since`
    /// overrides).
    pub history_days: u32,
    /// `auto` (per product, the mean of the two models with the least error in a
    /// rolling-origin backtest on its own history), or one model for every product: `ols` (least squares), `ridge`
    /// (least squares with an L2 penalty), `poisson` (log-link GLM) or `seasonal_naive`.
    pub model: ForecastModel,
    /// Days held out by `--evaluate` when `--holdout-days` is not given.
    pub holdout_days: u32,
    /// Holidays and events that move demand (`"2026-12-24"`, ...): a day on the list is a
    /// feature, in the history and in the forecast days.
    pub holidays: Vec<chrono::NaiveDate>,
    /// `day` (one value per day) or `week` (7-day periods counted back from the run date,
    /// for slow sellers: weekly lags, a year-ago lag, and `horizon_days` rounded up to weeks).
    pub granularity: ForecastGranularity,
    /// Coverage of the published prediction interval (`predicted_low` .. `predicted_high`),
    /// from the backtest's errors; between 0 and 1.
    pub interval: f64,
    /// Encoding of the `sales_predictions` messages: `avro` (Confluent framing) or `json`.
    pub output_format: OutputFormat,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            horizon_days: 7,
            history_days: 730,
            model: ForecastModel::Auto,
            holdout_days: 14,
            holidays: Vec::new(),
            granularity: ForecastGranularity::Day,
            interval: 0.8,
            output_format: OutputFormat::Avro,
        }
    }
}

/// The period a forecast counts in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ForecastGranularity {
    /// One value per day.
    Day,
    /// One value per 7 days, the last ending the day before the run date.
    Week,
}

/// The forecast model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ForecastModel {
    /// Per product, the mean of the two models with the least error in a rolling-origin
    /// backtest.
    Auto,
    /// Ordinary least squares on the demand features (linfa-linear).
    Ols,
    /// Least squares with an L2 penalty on the standardised features.
    Ridge,
    /// Poisson regression with a log link on the same features.
    Poisson,
    /// The same weekday of the last week.
    SeasonalNaive,
}

/// `jobs recommend`: implicit-feedback ALS over the customer x product purchases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecommendConfig {
    /// Products recommended per customer.
    pub top_k: usize,
    /// Days of purchases to train on, ending the day before the run date (`--since`
    /// overrides).
    pub history_days: u32,
    /// Also recommend products the customer already bought.
    pub include_bought: bool,
    /// Latent factors.
    pub factors: usize,
    /// L2 regularisation.
    pub regularization: f32,
    /// Scale the regularisation by each customer's and product's number of purchases
    /// (ALS-WR, as Spark does); then `regularization` is per purchase.
    pub scale_regularization: bool,
    /// Confidence per unit bought: `1 + alpha * quantity`.
    pub alpha: f32,
    /// ALS iterations.
    pub iterations: usize,
    /// Conjugate-gradient steps per row and iteration.
    pub cg_steps: usize,
    /// Seed of the initial factors and of the `--evaluate` split.
    pub seed: u64,
    /// Choose `regularization` and `alpha` per run: 20% of each customer's products held
    /// out of the training data, 9 settings (the configured ones and a factor of 4 and 3
    /// either side) fitted on the rest, the best nDCG@K kept. About 6 fits' time more.
    pub tune: bool,
    /// Encoding of the `product_recommendations` messages: `avro` (Confluent framing) or
    /// `json`.
    pub output_format: OutputFormat,
}

impl Default for RecommendConfig {
    /// The ALS settings are `models::als::Params::default()`'s, written out so that this crate
    /// does not build the models (a test in `jobs::batch::recommend` checks they agree).
    fn default() -> Self {
        RecommendConfig {
            top_k: 5,
            history_days: 365,
            include_bought: false,
            factors: 32,
            regularization: 0.25,
            scale_regularization: true,
            alpha: 3.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
            tune: true,
            output_format: OutputFormat::Avro,
        }
    }
}

/// `jobs schedule`: the cron runner over `schedules/*.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Folder of the schedule files (`--dir` overrides).
    pub dir: PathBuf,
    /// Folder of the run history: `runs.jsonl` (one JSON line per run), `logs/<entry>/`
    /// (the output of every attempt) and the scheduler's lock.
    pub history_dir: PathBuf,
    /// On SIGTERM or Ctrl-C, how long running jobs may go on before they are stopped.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// After the SIGTERM that stops a job (timeout or end of the grace period), how long
    /// before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Lines of each attempt's log kept in the history's `log_tail`.
    pub log_tail_lines: usize,
    /// Log files kept per entry (the oldest are deleted).
    pub keep_logs: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            dir: PathBuf::from("schedules"),
            history_dir: PathBuf::from("schedule-history"),
            grace_period: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
            log_tail_lines: 20,
            keep_logs: 50,
        }
    }
}
