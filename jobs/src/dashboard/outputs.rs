//! The dashboard's shell over the other outputs: the newest published forecast and
//! recommendation runs in the lake (re-read when a newer manifest appears), and the
//! `low_stock_alerts` topic (read on from where the last read ended). Each publishes into the
//! shared view and tells the browsers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::Message;
use rdkafka::Offset;

use super::alerts::{self, AlertMsg};
use super::refresh::Shared;
use super::runs::{ForecastRun, Rec, RecRun};
use crate::config::{KafkaConfig, OutputFormat};
use crate::io::lake::Lake;
use crate::shutdown::Shutdown;
use crate::{Error, Result};

const DAY: i64 = 86_400_000_000;

/// Bumps the view's generation after `f` changed it, and tells the browsers.
fn publish(shared: &Shared, f: impl FnOnce(&mut super::refresh::View)) {
    let g = match shared.view.write() {
        Ok(mut v) => {
            f(&mut v);
            v.generation += 1;
            v.generation
        }
        Err(_) => return,
    };
    let _ = shared.updates.send(g);
}

/// The newest `run_date=` folder of `table` that has a manifest, and the manifest's
/// signature (path, size, time): a rerun of the same date changes it.
async fn newest_run(lake: &Lake, table: &str) -> Result<Option<(String, (String, u64, i64))>> {
    let listing = lake.list_modified(table).await?;
    let best = listing
        .iter()
        .filter(|(p, _, _)| p.ends_with("/manifest.json"))
        .filter_map(|(p, size, t)| {
            let dir = p.strip_suffix("/manifest.json")?;
            let date = dir.rsplit('/').next()?.strip_prefix("run_date=")?;
            Some((date.to_string(), dir.to_string(), (p.clone(), *size, *t)))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    Ok(best.map(|(_, dir, sig)| (dir, sig)))
}

/// The Parquet files of a run folder, decoded.
async fn run_batches(lake: &Lake, dir: &str) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for (path, _) in lake.list(dir).await? {
        if !path.ends_with(".parquet") {
            continue;
        }
        let Some(b) = lake.get(&path).await? else {
            continue;
        };
        out.extend(parquet_batches(&path, b)?);
    }
    Ok(out)
}

fn parquet_batches(path: &str, b: Bytes) -> Result<Vec<RecordBatch>> {
    let err = |e: &dyn std::fmt::Display| Error::Internal(format!("{path}: {e}"));
    ParquetRecordBatchReaderBuilder::try_new(b)
        .map_err(|e| err(&e))?
        .build()
        .map_err(|e| err(&e))?
        .map(|r| r.map_err(|e| err(&e)))
        .collect()
}

/// A column of a batch as the type it must have.
macro_rules! column {
    ($b:expr, $name:expr, $as:ident $(::<$t:ty>)?) => {
        $b.column_by_name($name)
            .and_then(|c| c.$as$(::<$t>)?().cloned())
            .ok_or_else(|| Error::Internal(format!("run column {} missing or of another type", $name)))?
    };
}

fn date_of(dir: &str) -> String {
    dir.rsplit('/')
        .next()
        .and_then(|d| d.strip_prefix("run_date="))
        .unwrap_or_default()
        .to_string()
}

fn forecast_run(dir: &str, batches: &[RecordBatch]) -> Result<ForecastRun> {
    let mut run = ForecastRun {
        run_date: date_of(dir),
        ..Default::default()
    };
    for b in batches {
        let id = column!(b, "product_id", as_primitive_opt::<Int64Type>);
        let name = column!(b, "product_name", as_string_opt::<i32>);
        let date = column!(b, "forecast_date", as_primitive_opt::<Date32Type>);
        let pred = column!(b, "predicted_quantity", as_primitive_opt::<Float64Type>);
        let model = column!(b, "model", as_string_opt::<i32>);
        let version = column!(b, "model_version", as_string_opt::<i32>);
        for i in 0..b.num_rows() {
            let e = run
                .products
                .entry(id.value(i))
                .or_insert_with(|| (model.value(i).to_string(), vec![]));
            e.1.push((i64::from(date.value(i)) * DAY, pred.value(i)));
            run.names
                .entry(id.value(i))
                .or_insert_with(|| name.value(i).to_string());
            if run.model_version.is_empty() {
                run.model_version = version.value(i).to_string();
            }
        }
    }
    for (_, days) in run.products.values_mut() {
        days.sort_by_key(|d| d.0);
    }
    Ok(run)
}

fn rec_run(dir: &str, batches: &[RecordBatch]) -> Result<RecRun> {
    let mut run = RecRun {
        run_date: date_of(dir),
        ..Default::default()
    };
    for b in batches {
        let customer = column!(b, "customer_id", as_primitive_opt::<Int64Type>);
        let rank = column!(b, "rank", as_primitive_opt::<Int32Type>);
        let id = column!(b, "product_id", as_primitive_opt::<Int64Type>);
        let name = column!(b, "product_name", as_string_opt::<i32>);
        let score = column!(b, "score", as_primitive_opt::<Float64Type>);
        let source = column!(b, "source", as_string_opt::<i32>);
        let version = column!(b, "model_version", as_string_opt::<i32>);
        for i in 0..b.num_rows() {
            let rec = Rec {
                rank: rank.value(i),
                product_id: id.value(i),
                name: name.value(i).to_string(),
                score: score.value(i),
                source: source.value(i).to_string(),
            };
            if customer.is_null(i) {
                run.cold_start.push(rec);
            } else {
                run.by_customer
                    .entry(customer.value(i))
                    .or_default()
                    .push(rec);
            }
            if run.model_version.is_empty() {
                run.model_version = version.value(i).to_string();
            }
        }
    }
    run.cold_start.sort_by_key(|r| r.rank);
    for list in run.by_customer.values_mut() {
        list.sort_by_key(|r| r.rank);
    }
    Ok(run)
}

/// Keeps the newest forecast and recommendation runs in the view until shutdown, polling
/// the lake every `every`. A run that fails to read is logged once and retried.
pub async fn runs(lake: Lake, shared: Arc<Shared>, stop: Shutdown, every: Duration) {
    let mut loaded: BTreeMap<&str, (String, u64, i64)> = BTreeMap::new();
    let mut failing: BTreeMap<&str, String> = BTreeMap::new();
    while !stop.is_raised() {
        for table in ["forecasts", "recommendations"] {
            let got = async {
                let Some((dir, sig)) = newest_run(&lake, table).await? else {
                    return Ok(None);
                };
                if loaded.get(table) == Some(&sig) {
                    return Ok(None);
                }
                let batches = run_batches(&lake, &dir).await?;
                Ok::<_, Error>(Some((dir, sig, batches)))
            }
            .await;
            match got.and_then(|g| {
                g.map(|(dir, sig, b)| {
                    if table == "forecasts" {
                        forecast_run(&dir, &b).map(|r| (sig, Ok(r)))
                    } else {
                        rec_run(&dir, &b).map(|r| (sig, Err(r)))
                    }
                })
                .transpose()
            }) {
                Ok(None) => {}
                Ok(Some((sig, run))) => {
                    tracing::info!(message = "Dashboard loaded a batch run.", table, manifest = %sig.0);
                    failing.remove(table);
                    loaded.insert(table, sig);
                    publish(&shared, |v| match run {
                        Ok(f) => v.forecast = Some(Arc::new(f)),
                        Err(r) => v.recommendations = Some(Arc::new(r)),
                    });
                }
                Err(e) => {
                    let text = e.to_string();
                    if failing.get(table) != Some(&text) {
                        tracing::warn!(message = "Cannot read the newest batch run; retrying.", table, error = %text);
                        failing.insert(table, text);
                    }
                }
            }
        }
        stop.sleep(every).await;
    }
}

/// Reads `low_stock_alerts` on from where the last read ended, every `every`, until
/// shutdown. One log line when the broker stops or starts answering.
pub async fn alerts(
    kafka: KafkaConfig,
    topic: String,
    format: OutputFormat,
    shared: Arc<Shared>,
    stop: Shutdown,
    every: Duration,
) {
    let mut up = true;
    while !stop.is_raised() {
        let next = shared
            .view
            .read()
            .map(|v| v.alerts.next.clone())
            .unwrap_or_default();
        let (k, t) = (kafka.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || read_alerts(&k, &t, &next, format))
            .await
            .map_err(|e| Error::Internal(e.to_string()))
            .and_then(|r| r);
        match got {
            Ok(read) => {
                if !up {
                    tracing::info!(message = "Broker answers again; alerts are shown.", topic = %topic);
                }
                up = true;
                let fresh = !read.is_empty();
                let first = shared
                    .view
                    .read()
                    .map(|v| !v.alerts.loaded)
                    .unwrap_or(false);
                if fresh || first {
                    publish(&shared, |v| {
                        let log = &mut v.alerts;
                        for (p, offset, m) in read {
                            log.next.insert(p, offset + 1);
                            match m {
                                Some(m) => {
                                    log.apply(m);
                                }
                                None => log.undecodable += 1,
                            }
                        }
                        log.loaded = true;
                        log.reachable = true;
                    });
                }
            }
            Err(e) => {
                if up {
                    tracing::warn!(message = "Cannot read the alerts topic; alerts are shown as last read.", topic = %topic, error = %e);
                    publish(&shared, |v| v.alerts.reachable = false);
                }
                up = false;
            }
        }
        stop.sleep(every).await;
    }
}

/// The messages after `next` of every partition: (partition, offset, decoded or `None`).
fn read_alerts(
    cfg: &KafkaConfig,
    topic: &str,
    next: &BTreeMap<i32, i64>,
    format: OutputFormat,
) -> Result<Vec<(i32, i64, Option<AlertMsg>)>> {
    let n = crate::io::kafka::partition_counts(cfg, &[topic])?
        .get(topic)
        .copied()
        .unwrap_or(0);
    let assignment: Vec<(String, i32, Offset)> = (0..n)
        .map(|p| {
            let o = next
                .get(&p)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            (topic.to_string(), p, o)
        })
        .collect();
    crate::io::kafka::read_to_end(cfg, "jobs-dashboard", &assignment, "alerts", |m| {
        let decoded = m.payload().and_then(|v| alerts::decode(format, v).ok());
        Some((m.partition(), m.offset(), decoded))
    })
}
