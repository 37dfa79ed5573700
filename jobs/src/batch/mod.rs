//! The nightly batch jobs, each three visible steps: read the lake's history (polars), fit a
//! model (`models`), publish (Kafka and the lake, then the run's manifest).
//!
//! - [`forecast`]: daily demand per product (OLS, Poisson or seasonal naive) ->
//!   `sales_predictions` and `forecasts/run_date=.../`.
//! - [`recommend`]: implicit ALS over customer x product purchases ->
//!   `product_recommendations` and `recommendations/run_date=.../`.
//!
//! **Invariant:** a run publishes nothing until its model is fitted, and writes its
//! `manifest.json` last, after Kafka acknowledged every message: a run folder with a manifest
//! is complete. A re-run of the same run date replaces that folder.

pub mod forecast;
pub mod history;
pub mod recommend;

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use rdkafka::producer::BaseRecord;
use serde::Serialize;

use crate::config::Config;
use crate::io::delivery::{Deliveries, NO_BATCH};
use crate::io::kafka;
use crate::io::lake::Lake;
use crate::{Error, Result};

/// What a batch run did: published its outputs, or (`--evaluate`) scored its models.
#[derive(Debug)]
pub enum Outcome<S, E> {
    Published(S),
    Evaluated(E),
}

/// The dates a batch run covers: history in `[since, until)`, outputs dated `run_date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dates {
    /// The run's date: forecasts start here; outputs go under `run_date=...`.
    pub run_date: NaiveDate,
    /// First day of history read.
    pub since: NaiveDate,
    /// Day after the last day of history read (= `run_date`: the run date itself is
    /// usually incomplete).
    pub until: NaiveDate,
}

impl Dates {
    /// Resolves the flags: `run_date` defaults to today (UTC), `since` to `history_days`
    /// before it.
    pub fn resolve(
        run_date: Option<NaiveDate>,
        since: Option<NaiveDate>,
        history_days: u32,
    ) -> Result<Dates> {
        let run_date = run_date.unwrap_or_else(|| Utc::now().date_naive());
        let since = since.unwrap_or(run_date - chrono::Days::new(u64::from(history_days)));
        if since >= run_date {
            return Err(Error::Config(format!(
                "--since {since} must be before the run date {run_date}"
            )));
        }
        Ok(Dates {
            run_date,
            since,
            until: run_date,
        })
    }
}

/// Days since 1970-01-01 of a date.
pub fn day_number(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days()
}

/// The date of a day number.
pub fn date_of(day: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date") + chrono::TimeDelta::days(day)
}

/// One input file of a run and the rows read from it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InputFile {
    /// Path or URL as polars read it.
    pub path: String,
    /// Rows read (after the date filter).
    pub rows: u64,
}

/// What a run wrote, for its manifest and its summary line.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Published {
    /// Lake objects written, relative to the lake root.
    pub files: Vec<String>,
    /// Kafka topic.
    pub topic: String,
    /// Messages acknowledged by the broker.
    pub messages: u64,
}

/// A run's manifest, `manifest.json` beside its outputs: enough to trace and re-run it.
#[derive(Debug, Serialize)]
pub struct Manifest<'a> {
    /// `forecast` or `recommend`.
    pub job: &'a str,
    /// `jobs <version>`.
    pub program: String,
    /// The version stamped on every output of the run.
    pub model_version: &'a str,
    /// The command line that re-runs it.
    pub rerun: String,
    /// Dates covered.
    pub dates: Dates,
    /// Lake root.
    pub lake: &'a str,
    /// Files read and their row counts.
    pub inputs: &'a [InputFile],
    /// Feature names (forecast) or matrix shape (recommend).
    pub features: serde_json::Value,
    /// Model and hyperparameters, including the seed.
    pub hyperparameters: serde_json::Value,
    /// Quality figures measured in this run.
    pub metrics: serde_json::Value,
    /// What was written.
    pub outputs: &'a Published,
    /// Start and end (RFC 3339).
    pub started_at: String,
    /// See `started_at`.
    pub finished_at: String,
}

/// A stable short hash (FNV-1a, 64 bits) of what determines a run's result.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", h >> 32)
}

/// A progress bar on stderr for `len` steps; invisible when stderr is not a terminal.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} ({eta} left)",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Sends `(key, value)` messages to `topic` with an idempotent producer and waits until the
/// broker acknowledged every one. The topic must exist (`jobs init` creates it).
pub fn publish(cfg: &Config, topic: &str, messages: &[(String, Vec<u8>)]) -> Result<u64> {
    let deliveries = Deliveries::default();
    let producer = kafka::idempotent_producer(&cfg.kafka, deliveries.clone())?;
    for (key, value) in messages {
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, NO_BATCH)
                .key(key.as_bytes())
                .payload(value.as_slice()),
        )
        .map_err(kafka::err(&cfg.kafka, format!("send to {topic}")))?;
    }
    deliveries.wait_for_reports(messages.len() as u64, Duration::from_secs(120))?;
    if let Some((n, e)) = deliveries.failures()? {
        return Err(Error::Internal(format!(
            "{n} of {} messages to {topic} failed, first: {e}",
            messages.len(),
        )));
    }
    Ok(messages.len() as u64)
}

/// A run's outputs before its manifest: once the broker answers and `topic` exists, replaces
/// the run folder `dir` with `batch` as `part-0.parquet`, then sends `messages` to `topic` and
/// waits until the broker acknowledged every one.
pub async fn publish_outputs(
    cfg: &Config,
    lake: &Lake,
    dir: &str,
    batch: arrow_array::RecordBatch,
    topic: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> Result<Published> {
    let parquet = crate::io::lake::parquet_bytes(&[batch])?;
    // Nothing is written, and an earlier run of the date stays as it is, unless the broker
    // answers and the topic is there: else the run would end without its manifest.
    let (k, t) = (cfg.kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || crate::io::kafka::partition_counts(&k, &[&t]))
        .await
        .map_err(|e| Error::Internal(format!("broker check: {e}")))??;
    let files = write_run(lake, dir, vec![("part-0.parquet".into(), parquet)]).await?;
    let (name, cfg) = (topic.to_string(), cfg.clone());
    let topic = name.clone();
    let messages = tokio::task::spawn_blocking(move || publish(&cfg, &topic, &messages))
        .await
        .map_err(|e| Error::Internal(format!("publish task: {e}")))??;
    Ok(Published {
        files,
        topic: name,
        messages,
    })
}

/// Replaces the run folder `dir` with `files`.
pub async fn write_run(
    lake: &Lake,
    dir: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Vec<String>> {
    lake.delete_folder(dir).await?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let rel = format!("{dir}/{name}");
        lake.put(&rel, bytes).await?;
        written.push(rel);
    }
    Ok(written)
}

/// Writes `manifest.json` into `dir`.
pub async fn write_manifest(lake: &Lake, dir: &str, m: &Manifest<'_>) -> Result<String> {
    let rel = format!("{dir}/manifest.json");
    let text = serde_json::to_vec_pretty(m)
        .map_err(|e| Error::Internal(format!("manifest encoding: {e}")))?;
    lake.put(&rel, text).await?;
    Ok(rel)
}

/// Writes an `--evaluate` report to `evaluations/<job>/run_date=<date>/report.json` (apart
/// from the published runs, which a later run of the date replaces); returns its path.
pub async fn write_report(
    lake: &Lake,
    job: &str,
    run_date: NaiveDate,
    report: &serde_json::Value,
) -> Result<String> {
    let rel = format!("evaluations/{job}/run_date={run_date}/report.json");
    let text = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::Internal(format!("report encoding: {e}")))?;
    lake.put(&rel, text).await?;
    Ok(rel)
}

/// Now, RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_default_to_history_before_today() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let r = Dates::resolve(Some(d), None, 30).unwrap();
        assert_eq!(r.since, NaiveDate::from_ymd_opt(2026, 10, 22).unwrap());
        assert_eq!(r.until, d);
        assert!(Dates::resolve(Some(d), Some(d), 30).is_err());
        assert_eq!(date_of(day_number(d)), d);
        assert_eq!(day_number(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }

    #[test]
    fn fingerprints_are_stable_and_separate_parts() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
        assert_eq!(fingerprint(&["x"]).len(), 8);
    }
}
