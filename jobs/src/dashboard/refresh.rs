//! The dashboard's shell over the lake: it polls the stream's checkpoint folder, and when a
//! checkpoint moved it reads the checkpoints, lists the hourly windows and reads only the
//! files it has not read, then publishes a new view and tells the browsers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use tokio::sync::broadcast;

use super::core::{HourRow, Index, LabelRow, Live, PartitionState, Table, WindowFile};
use crate::io::lake::Lake;
use crate::shutdown::Shutdown;
use crate::stream::partition::Checkpoint;
use crate::stream::window::ProductInfo;
use crate::{Error, Result};

/// What the server reads from: the index and the checkpoints as of the last refresh.
#[derive(Default)]
pub struct View {
    pub index: Index,
    pub live: Live,
    /// Bumped by every change of the view (a lake refresh, new alerts, a new batch run).
    pub generation: u64,
    /// Lake refreshes done: 0 until the index was built once.
    pub refreshed: u64,
    pub last: RefreshStats,
    /// The input topic's end offset per partition (for the lag), as last read.
    pub ends: BTreeMap<i32, i64>,
    /// `low_stock_alerts` as read so far.
    pub alerts: super::alerts::AlertLog,
    /// The newest published runs of the batch jobs.
    pub forecast: Option<Arc<super::runs::ForecastRun>>,
    pub recommendations: Option<Arc<super::runs::RecRun>>,
}

/// What the last refresh cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RefreshStats {
    pub files_read: usize,
    pub bytes_read: u64,
    pub files_forgotten: usize,
    pub files_held: usize,
    pub micros: u64,
}

/// The view and the channel that announces a new one.
pub struct Shared {
    pub view: RwLock<View>,
    pub updates: broadcast::Sender<u64>,
}

/// Where things are.
pub struct Source {
    pub lake: Lake,
    pub state_dir: String,
    /// The name of the hourly tumbling window (`1h`): its folder in each table.
    pub window: String,
    pub hour_spec: Option<usize>,
    /// The name of the daily tumbling window (`1d`), if the stream has one.
    pub day_window: Option<String>,
    pub day_spec: Option<usize>,
    pub lateness: i64,
    pub poll: Duration,
}

impl Source {
    /// The folders the index reads, with their tables.
    fn dirs(&self) -> Vec<(Table, String)> {
        Table::ALL
            .into_iter()
            .filter_map(|t| match t {
                Table::Daily => self.day_window.as_deref().map(|w| (t, t.dir(w))),
                _ => Some((t, t.dir(&self.window))),
            })
            .collect()
    }
}

/// Refreshes until shutdown. A failed refresh is logged and retried at the next poll.
pub async fn run(src: Source, shared: Arc<Shared>, stop: Shutdown) {
    let mut seen: Option<Vec<(String, u64, i64)>> = None;
    while !stop.is_raised() {
        match refresh(&src, &shared, seen.as_deref()).await {
            Ok(Some(sig)) => seen = Some(sig),
            Ok(None) => {}
            Err(e) => tracing::warn!(message = "Dashboard refresh failed; retrying.", error = %e),
        }
        stop.sleep(src.poll).await;
    }
}

/// Reads the input topic's end offsets every `every` until shutdown, for the lag. One log
/// line when the broker stops or starts answering, not one per attempt.
pub async fn end_offsets(
    kafka: crate::config::KafkaConfig,
    topic: String,
    shared: Arc<Shared>,
    stop: Shutdown,
    every: Duration,
) {
    let mut up = true;
    while !stop.is_raised() {
        let (k, t) = (kafka.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || {
            let n = crate::io::kafka::partition_counts(&k, &[&t])?
                .get(&t)
                .copied()
                .unwrap_or(0);
            crate::io::kafka::end_offsets(&k, &[(&t, n)])
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))
        .and_then(|r| r);
        match got {
            Ok(ends) => {
                if !up {
                    tracing::info!(message = "Broker answers again; the lag is shown.", topic = %topic);
                }
                up = true;
                if let Ok(mut v) = shared.view.write() {
                    v.ends = ends.into_iter().map(|(_, p, end)| (p, end)).collect();
                }
            }
            Err(e) => {
                if up {
                    tracing::warn!(message = "Cannot read the topic's end offsets; the lag is not shown.", topic = %topic, error = %e);
                }
                up = false;
                if let Ok(mut v) = shared.view.write() {
                    v.ends.clear();
                }
            }
        }
        stop.sleep(every).await;
    }
}

/// One poll: `Some(signature)` when the checkpoints moved and the view was rebuilt.
async fn refresh(
    src: &Source,
    shared: &Shared,
    seen: Option<&[(String, u64, i64)]>,
) -> Result<Option<Vec<(String, u64, i64)>>> {
    let sig = checkpoints(&src.lake, &src.state_dir).await?;
    if seen == Some(sig.as_slice()) {
        return Ok(None);
    }
    let t0 = Instant::now();
    for _attempt in 0..3 {
        let live = read_live(src, &sig).await?;
        let dirs = src.dirs();
        let mut listing = Vec::new();
        for (_, dir) in &dirs {
            listing.extend(src.lake.list(dir).await?);
        }
        let wanted = shared
            .view
            .read()
            .map_err(|_| Error::Internal("dashboard view poisoned".into()))?
            .index
            .wanted(&listing, &live);
        let mut read = Vec::with_capacity(wanted.len());
        let mut bytes_read = 0;
        let mut vanished = false;
        for path in wanted {
            match src.lake.get(&path).await? {
                Some(b) => {
                    bytes_read += b.len() as u64;
                    let table = dirs
                        .iter()
                        .find(|(_, d)| {
                            path.strip_prefix(d.as_str())
                                .is_some_and(|r| r.starts_with('/'))
                        })
                        .map_or(Table::Products, |(t, _)| *t);
                    read.push((path.clone(), decode(&path, table, b)?));
                }
                // Compacted away between the listing and the read: list again.
                None => vanished = true,
            }
        }
        // A checkpoint that moved while we listed may cover files a compaction merged:
        // the view is consistent only if the checkpoints are as they were.
        if vanished || checkpoints(&src.lake, &src.state_dir).await? != sig {
            continue;
        }
        let mut v = shared
            .view
            .write()
            .map_err(|_| Error::Internal("dashboard view poisoned".into()))?;
        let files_read = read.len();
        let forgotten = v.index.apply(&listing, read);
        let mut live = live;
        live.rates = super::health::rates(&v.live, &live);
        v.live = live;
        v.generation += 1;
        v.refreshed += 1;
        v.last = RefreshStats {
            files_read,
            bytes_read,
            files_forgotten: forgotten,
            files_held: v.index.files(),
            micros: t0.elapsed().as_micros() as u64,
        };
        tracing::debug!(
            message = "Dashboard refreshed.",
            generation = v.generation,
            files_read,
            bytes_read,
            micros = v.last.micros
        );
        let g = v.generation;
        drop(v);
        let _ = shared.updates.send(g);
        return Ok(Some(sig));
    }
    Ok(None)
}

/// The checkpoint objects with their sizes and times: what changes when the stream flushes.
async fn checkpoints(lake: &Lake, dir: &str) -> Result<Vec<(String, u64, i64)>> {
    Ok(lake
        .list_modified(dir)
        .await?
        .into_iter()
        .filter(|(p, _, _)| {
            let name = p.rsplit('/').next().unwrap_or_default();
            name.starts_with('p') && name.ends_with(".json") && !name.ends_with(".intent.json")
        })
        .collect())
}

async fn read_live(src: &Source, sig: &[(String, u64, i64)]) -> Result<Live> {
    let mut live = Live {
        hour_spec: src.hour_spec,
        day_spec: src.day_spec,
        lateness: src.lateness,
        ..Default::default()
    };
    for (path, _, written_at) in sig {
        let name = path.rsplit('/').next().unwrap_or_default();
        let Some(p) = name
            .strip_prefix('p')
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(b) = src.lake.get(path).await? else {
            continue;
        };
        let checkpoint: Checkpoint = serde_json::from_slice(&b)
            .map_err(|e| Error::Internal(format!("checkpoint {path} unreadable: {e}")))?;
        live.partitions.insert(
            p,
            PartitionState {
                checkpoint,
                written_at: *written_at,
            },
        );
    }
    Ok(live)
}

/// The rows of one hourly window file of `table`.
pub fn decode(path: &str, table: Table, bytes: Bytes) -> Result<WindowFile> {
    let err = |e: &dyn std::fmt::Display| Error::Internal(format!("{path}: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| err(&e))?
        .build()
        .map_err(|e| err(&e))?;
    let mut out = WindowFile::new(table);
    for batch in reader {
        let b = batch.map_err(|e| err(&e))?;
        let col = |name: &str| {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| err(&format!("no column {name}")))
        };
        let bad = |name: &str| err(&format!("column {name} has an unexpected type"));
        let int = |name: &str| -> Result<arrow_array::Int64Array> {
            col(name)?
                .as_primitive_opt::<Int64Type>()
                .cloned()
                .ok_or_else(|| bad(name))
        };
        let text = |name: &str| -> Result<arrow_array::StringArray> {
            col(name)?
                .as_string_opt::<i32>()
                .cloned()
                .ok_or_else(|| bad(name))
        };
        let start = col("window_start")?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .cloned()
            .ok_or_else(|| bad("window_start"))?;
        let rev = col("total_revenue")?
            .as_primitive_opt::<Decimal128Type>()
            .cloned()
            .ok_or_else(|| bad("total_revenue"))?;
        let (qty, orders) = (int("total_quantity_sold")?, int("order_count")?);
        if let Some(label_col) = table.label_col() {
            let label = text(label_col)?;
            for i in 0..b.num_rows() {
                out.labels.push(LabelRow {
                    start: start.value(i),
                    label: label.value(i).into(),
                    quantity: qty.value(i),
                    revenue_cents: rev.value(i) as i64,
                    orders: orders.value(i),
                });
            }
            continue;
        }
        let id = int("product_id")?;
        let (name, brand, cat) = (
            text("product_name")?,
            text("brand")?,
            text("product_category")?,
        );
        for i in 0..b.num_rows() {
            out.rows.push(HourRow {
                start: start.value(i),
                product: id.value(i),
                quantity: qty.value(i),
                revenue_cents: rev.value(i) as i64,
                orders: orders.value(i),
            });
            if out.products.last().is_none_or(|p| p.0 != id.value(i)) {
                out.products.push((
                    id.value(i),
                    ProductInfo {
                        name: name.value(i).to_string(),
                        brand: brand.value(i).to_string(),
                        category: cat.value(i).to_string(),
                    },
                ));
            }
        }
    }
    Ok(out)
}
