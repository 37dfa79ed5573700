//! Named, documented metrics in the Prometheus text format, served on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::io::retry::Health;

/// The stream job's metrics.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub events_in: AtomicU64,
    pub aggregated: AtomicU64,
    pub late: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub windows_out: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_micros: AtomicU64,
    pub open_keys: AtomicI64,
    pub totals_out: AtomicU64,
    pub top_lists_out: AtomicU64,
    pub alerts_out: AtomicU64,
    pub sql_rows: AtomicU64,
    pub redis_commands: AtomicU64,
    /// Offsets the broker's retention removed before they were consumed.
    pub offsets_removed: AtomicU64,
    /// Problems in the reference tables (inventory, customer_data), by kind.
    pub reference_problems: Mutex<BTreeMap<&'static str, u64>>,
    /// Per partition: (lag in messages is not exact on every broker, so we export the
    /// watermark delay: now - watermark, seconds) and the watermark itself.
    pub partitions: Mutex<BTreeMap<i32, PartitionGauges>>,
    /// The lake, the SQL sink and Redis, as the flush's retries see them.
    pub lake: Health,
    pub sql: Health,
    pub redis: Health,
}

impl StreamMetrics {
    /// Counts `n` reference-table problems of one kind.
    pub fn reference_problem(&self, kind: &'static str, n: u64) {
        if let Ok(mut m) = self.reference_problems.lock() {
            *m.entry(kind).or_default() += n;
        }
    }
}

/// Gauges of one partition.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionGauges {
    pub watermark_micros: i64,
    pub next_offset: i64,
    pub high_watermark: i64,
}

impl StreamMetrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "jobs_stream_events_in_total",
            "Messages consumed from the sales topic.",
            g(&self.events_in),
        );
        counter(
            "jobs_stream_events_aggregated_total",
            "Valid events counted in windows.",
            g(&self.aggregated),
        );
        counter(
            "jobs_stream_events_late_total",
            "Events older than the watermark, sent to late_sales.",
            g(&self.late),
        );
        counter(
            "jobs_stream_events_dead_lettered_total",
            "Messages that could not be decoded or were invalid.",
            g(&self.dead_lettered),
        );
        counter(
            "jobs_stream_windows_out_total",
            "Closed window rows emitted.",
            g(&self.windows_out),
        );
        counter(
            "jobs_stream_files_written_total",
            "Parquet files written to the lake.",
            g(&self.files_written),
        );
        counter(
            "jobs_stream_bytes_written_total",
            "Bytes of Parquet written to the lake.",
            g(&self.bytes_written),
        );
        counter(
            "jobs_stream_checkpoints_total",
            "Checkpoints completed.",
            g(&self.checkpoints),
        );
        counter(
            "jobs_stream_checkpoint_seconds_total",
            "Time spent in checkpoints (files, outputs, state).",
            g(&self.checkpoint_micros) / 1_000_000,
        );
        counter(
            "jobs_stream_totals_out_total",
            "Running-total updates published.",
            g(&self.totals_out),
        );
        counter(
            "jobs_stream_top_lists_out_total",
            "Top-N lists published.",
            g(&self.top_lists_out),
        );
        counter(
            "jobs_stream_stock_alerts_out_total",
            "Low-stock alerts and recoveries published.",
            g(&self.alerts_out),
        );
        counter(
            "jobs_stream_sql_rows_total",
            "Rows upserted into the SQL dashboard and top-N tables.",
            g(&self.sql_rows),
        );
        counter(
            "jobs_stream_redis_commands_total",
            "Commands sent to Redis.",
            g(&self.redis_commands),
        );
        counter(
            "jobs_stream_offsets_removed_total",
            "Offsets of the sales topic removed by the broker's retention before the stream consumed them (lost upstream; each gap is logged as an error).",
            g(&self.offsets_removed),
        );
        s.push_str("# HELP jobs_stream_reference_problems_total Bad or missing rows in inventory and customer_data, by kind.\n# TYPE jobs_stream_reference_problems_total counter\n");
        if let Ok(m) = self.reference_problems.lock() {
            for (k, v) in m.iter() {
                s.push_str(&format!(
                    "jobs_stream_reference_problems_total{{kind=\"{k}\"}} {v}\n"
                ));
            }
        }
        s.push_str("# HELP jobs_stream_dependency_up 1 while the dependency answers, 0 while a flush waits for it.\n# TYPE jobs_stream_dependency_up gauge\n");
        let deps = [
            ("lake", &self.lake),
            ("sql", &self.sql),
            ("redis", &self.redis),
        ];
        for (name, h) in deps {
            let up = h.up.load(Ordering::Relaxed);
            s.push_str(&format!(
                "jobs_stream_dependency_up{{dependency=\"{name}\"}} {up}\n"
            ));
        }
        s.push_str("# HELP jobs_stream_dependency_retries_total Failed attempts retried, by dependency.\n# TYPE jobs_stream_dependency_retries_total counter\n");
        for (name, h) in deps {
            let n = h.retries.load(Ordering::Relaxed);
            s.push_str(&format!(
                "jobs_stream_dependency_retries_total{{dependency=\"{name}\"}} {n}\n"
            ));
        }
        s.push_str(&format!(
            "# HELP jobs_stream_open_window_keys Open (window, product) aggregates.\n# TYPE jobs_stream_open_window_keys gauge\njobs_stream_open_window_keys {}\n",
            self.open_keys.load(Ordering::Relaxed)
        ));
        s.push_str("# HELP jobs_stream_watermark_delay_seconds Now minus the partition's watermark.\n# TYPE jobs_stream_watermark_delay_seconds gauge\n");
        s.push_str("# HELP jobs_stream_lag_messages Messages behind the partition's end (as the broker reports it).\n# TYPE jobs_stream_lag_messages gauge\n");
        let now = chrono::Utc::now().timestamp_micros();
        if let Ok(parts) = self.partitions.lock() {
            for (p, v) in parts.iter() {
                if v.watermark_micros > i64::MIN / 2 {
                    s.push_str(&format!(
                        "jobs_stream_watermark_delay_seconds{{partition=\"{p}\"}} {:.3}\n",
                        (now - v.watermark_micros) as f64 / 1e6
                    ));
                }
                s.push_str(&format!(
                    "jobs_stream_lag_messages{{partition=\"{p}\"}} {}\n",
                    (v.high_watermark - v.next_offset).max(0)
                ));
            }
        }
        s
    }
}

/// Metrics that render themselves in the Prometheus text format.
pub trait Render {
    fn render(&self) -> String;
}

impl Render for StreamMetrics {
    fn render(&self) -> String {
        StreamMetrics::render(self)
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve<M: Render + Send + Sync + 'static>(
    addr: String,
    metrics: std::sync::Arc<M>,
) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| crate::Error::file(format!("metrics address {addr}"), e))?;
    tracing::info!(message = "Serving metrics.", url = %format!("http://{addr}/metrics"));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /metrics") {
                    ("200 OK", m.render())
                } else {
                    ("404 Not Found", "try /metrics\n".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(())
}
