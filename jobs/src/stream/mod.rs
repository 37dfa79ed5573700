//! `jobs stream`: Kafka -> event-time windows -> the Parquet lake and Kafka, exactly once.
//!
//! A thin async shell ([`shell`]) around a synchronous partition core ([`partition`], over
//! the pure [`window`] core). Per source partition the core keeps the windows, totals, stock,
//! the next offset and buffers of rows and messages; at each *flush* (every `roll_interval`,
//! when `roll_bytes` are buffered, at shutdown and at the end of `--until-idle`) it decides a
//! [`plan::FlushPlan`], and the shell carries it out in this order:
//! 1. writes an *intent* (the files it is about to write) to the lake,
//! 2. writes the Parquet files (`sales_windows`, `sales_raw`, `late_sales` and the business
//!    tables), each with one atomic put and a name fixed by (partition, flush sequence, first
//!    offset), then upserts the SQL and Redis stores (the same values on a replay),
//! 3. sends the Kafka outputs (closed windows, late events, dead letters), each with an
//!    idempotency key header, and waits for every acknowledgement,
//! 4. writes the partition's *checkpoint*: next offset, open windows, counters, and the
//!    output topics' offsets at that moment; then deletes the intent and reports the offset
//!    to the consumer group (progress only: the checkpoint is the truth).
//!
//! After a crash, a partition resumes from its checkpoint: the files of an unfinished flush
//! (named in its intent) are deleted, and the output partitions are read from the
//! checkpointed offsets to find which keys already went out, so the replay, which decides
//! exactly as before (the core depends only on the partition's own event order), writes the
//! same rows and sends each message once ([`recover`]).
//!
//! The closed date folders are compacted in the background ([`compaction`], over
//! [`crate::compact`]); the file puts and recovery's deletes hold the lake's `writers` lock
//! shared, so a folder is never exchanged under them.

pub mod business;
mod compaction;
mod consumer;
mod execute;
mod membership;
pub mod outputs;
pub mod partition;
pub mod plan;
mod recover;
pub mod reference;
mod shell;
pub mod sinks;
pub mod stock;
pub mod top;
pub mod totals;
pub mod window;
// A window's shape is read from the configuration: it lives in `formats`.
pub use formats::window_spec as spec;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::{Config, Feature};
use crate::shutdown::Shutdown;
use window::{Groups, WindowSpec};

/// How one run of `jobs stream` runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Drain the partitions to their end, close every window, flush and exit.
    pub until_idle: bool,
}

/// Counts of one run; the invariant is `consumed = aggregated + late + dead_lettered`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub consumed: u64,
    pub aggregated: u64,
    pub late: u64,
    pub dead_lettered: u64,
}

/// Runs the stream until SIGTERM/Ctrl-C (or, with `until_idle`, until drained).
pub async fn run(cfg: &Config, opts: &RunOptions) -> Result<Counters> {
    run_with(cfg, opts, Shutdown::on_signals()).await
}

/// As [`run`], stopping when `shutdown` is raised.
pub async fn run_with(cfg: &Config, opts: &RunOptions, shutdown: Shutdown) -> Result<Counters> {
    shell::run(cfg, opts, shutdown).await
}

/// The windows the core keeps: the configured ones (tumbling ones also per segment and for
/// the dashboard when those are on) and the top-N window (shared when it is also configured).
pub fn specs(cfg: &Config) -> Vec<WindowSpec> {
    let s = &cfg.stream;
    let mut specs = s.windows.clone();
    for w in &mut specs {
        let shape = (w.size_micros, w.slide_micros);
        w.groups.kafka = s
            .kafka_windows
            .as_ref()
            .is_none_or(|k| k.iter().any(|k| (k.size_micros, k.slide_micros) == shape));
        if w.is_tumbling() {
            w.groups.segments = s.has(Feature::Segments);
            w.groups.dashboard = s.has(Feature::Dashboard);
        }
    }
    if s.has(Feature::Top) {
        let mut t = s.top_window.clone();
        match specs
            .iter_mut()
            .find(|w| (w.size_micros, w.slide_micros) == (t.size_micros, t.slide_micros))
        {
            Some(w) => w.groups.top = true,
            None => {
                t.groups = Groups {
                    sales_windows: false,
                    kafka: false,
                    top: true,
                    segments: false,
                    dashboard: false,
                };
                specs.push(t);
            }
        }
    }
    specs
}

/// Where the stream keeps its checkpoints and flush intents, under the lake root.
pub(crate) fn state_dir(cfg: &Config) -> String {
    format!(
        "_state/stream/{}/{}",
        cfg.stream.group_id, cfg.topics.product_sales
    )
}

pub use compaction::closed_horizon;

/// The Kafka topics the stream writes.
fn output_topics(cfg: &Config) -> Vec<&String> {
    let t = &cfg.topics;
    vec![
        &t.windowed_product_sales,
        &t.late_sales,
        &t.dlq,
        &t.aggregated_product_sales,
        &t.top_products,
        &t.low_stock_alerts,
        &t.customer_segment_sales,
    ]
}
