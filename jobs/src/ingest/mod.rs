//! `jobs ingest`: relational tables -> Kafka, incremental and exactly once.
//!
//! Each table is read in keyset order `(timestamp, id)` from a cursor, in batches. A batch is
//! sent with an idempotent producer (`acks=all`, ordered per partition); only when the
//! broker has acknowledged every message of it does a checkpoint (cursor plus per-partition
//! offsets) go to the state topic. Three batches overlap: one is read while the next is sent
//! and the one before is acknowledged (`io::delivery` attributes each report to its batch). After
//! a crash, `state::scan_tails` finds the rows that reached the broker after the last
//! checkpoint, and the rerun skips exactly those: no row is lost and none is sent twice.
//! (Kafka transactions would do the same with less reading,
//! but the local broker, Tansu 0.6.0, does not implement `EndTxn`; this works on any broker.)
//!
//! The partition of a message is chosen here, with Kafka's default murmur2 hash of the key
//! (the product id), so a product's events stay in one partition and a rerun can tell where
//! a row went. Rows whose timestamp is NULL can never pass a keyset cursor; they are
//! dead-lettered through a second cursor on the id alone, so nothing is skipped silently.
//!
//! A run reads as three steps: [`prepare`] (producer, saved state, first checkpoints, recovery
//! scans), [`drain`] (each table's batches: read, publish, settle), and the final flush.

mod drain;
mod prepare;
pub mod rows;
mod state;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Config;
use rdkafka::producer::ThreadedProducer;

use crate::io::avro::Registry;
use crate::io::avro::SchemaKind;
use crate::io::delivery::{Deliveries, DeliveryContext};
use crate::io::kafka;
use crate::io::produce::flush_now;
use crate::io::retry::{self, Backoff};
use crate::io::source::Source;
use crate::io::source::{CursorTable, Keyset};
use crate::shutdown::Shutdown;
use crate::{Error, Result};
use state::Tails;
pub use state::{Position, TableState};
use std::collections::HashMap;

/// Data messages gathered before they are handed to the producer together: enough to take
/// librdkafka's locks once per partition run, few enough that its broker thread keeps busy.
const SEND_CHUNK: usize = 2048;

/// How one run of `jobs ingest` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Keep polling every `ingest.poll_interval` until SIGTERM or Ctrl-C; otherwise drain
    /// what is in the tables now, then exit.
    pub follow: bool,
}

/// What one run did, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rows published to the data topic.
    pub sent: u64,
    /// Rows published to the dead-letter topic.
    pub dead_lettered: u64,
    /// Batches acknowledged and checkpointed.
    pub batches: u64,
    /// Rows found already delivered after the last checkpoint (crash recovery), not resent.
    pub recovered: u64,
}

impl std::ops::AddAssign<&Stats> for Stats {
    fn add_assign(&mut self, o: &Stats) {
        self.sent += o.sent;
        self.dead_lettered += o.dead_lettered;
        self.batches += o.batches;
        self.recovered += o.recovered;
    }
}

/// One table's job: where it reads, what it writes, and how far it got.
pub(crate) struct TableJob {
    pub(crate) spec: &'static CursorTable,
    pub(crate) kind: SchemaKind,
    pub(crate) topic: String,
    /// The last checkpoint written.
    pub(crate) state: TableState,
    /// Where the batches handed to the producer end (ahead of `state` while they fly).
    pub(crate) sent: TableState,
    /// Batches sent and not yet checkpointed, oldest first.
    pub(crate) pending: VecDeque<Pending>,
    pub(crate) stats: Stats,
    /// What of this table reached the broker after the last checkpoint (empty unless the
    /// last run crashed).
    pub(crate) tails: Tails,
    /// The first read of the run, started by [`prepare`] so that it overlaps the startup's
    /// talk with the broker; [`drain`] takes it.
    pub(crate) first_read: Option<tokio::task::JoinHandle<Result<Keyset>>>,
}

/// What a run works with once prepared.
pub(crate) struct Prepared {
    pub(crate) producer: ThreadedProducer<DeliveryContext>,
    pub(crate) deliveries: Deliveries,
    pub(crate) db: Source,
    pub(crate) registry: Registry,
    pub(crate) partitions: HashMap<String, i32>,
    /// The name under which the state is saved.
    pub(crate) source: String,
}

impl TableJob {
    fn new(spec: &'static CursorTable, kind: SchemaKind, topic: &str) -> TableJob {
        TableJob {
            spec,
            kind,
            topic: topic.to_string(),
            state: TableState::default(),
            sent: TableState::default(),
            pending: VecDeque::new(),
            stats: Stats::default(),
            tails: Tails::default(),
            first_read: None,
        }
    }
}

/// A batch handed to the producer, waiting for its acknowledgements.
pub(crate) struct Pending {
    pub(crate) batch: usize,
    /// The table's position once this batch is delivered (offsets are added then).
    pub(crate) state: TableState,
    pub(crate) stats: Stats,
}

/// Runs ingest with the given config until the options say stop.
pub async fn run(cfg: &Config, opts: RunOptions) -> Result<Stats> {
    run_with(cfg, opts, Shutdown::on_signals()).await
}

/// As [`run`], stopping when `shutdown` is raised.
pub async fn run_with(cfg: &Config, opts: RunOptions, shutdown: Shutdown) -> Result<Stats> {
    // Following, an unreachable schema registry is waited for; a single pass stops with it.
    let (run, mut jobs) = prepare::prepare(cfg, opts.follow.then_some(&shutdown)).await?;
    let ctx = drain::Ctx::new(cfg, &run);
    let started = Instant::now();
    // Drain every table, once or until shut down.
    loop {
        for job in &mut jobs {
            drain_waiting_out_outages(&ctx, job, opts.follow, &shutdown).await?;
        }
        if !opts.follow || shutdown.is_raised() {
            break;
        }
        shutdown.sleep(cfg.ingest.poll_interval).await;
        if shutdown.is_raised() {
            break;
        }
    }
    finish(cfg, &run.producer, &run.deliveries, &jobs, started)
}

/// Drains one table; in follow mode, an outage of the source database (a restart, a
/// failover) is waited out with backoff and the drain resumes at the table's cursor, which
/// only ever covers what was published. Once (`--once`), the error ends the run.
async fn drain_waiting_out_outages(
    ctx: &drain::Ctx<'_>,
    job: &mut TableJob,
    follow: bool,
    shutdown: &Shutdown,
) -> Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        match ctx.drain(job, shutdown).await {
            Ok(()) => {
                if backoff.failures() > 0 {
                    tracing::info!(
                        message = "Source database is back; reading on from the cursor.",
                        table = job.spec.table,
                        retries = backoff.failures()
                    );
                }
                return Ok(());
            }
            Err(e @ Error::Database { .. })
                if follow && retry::transient(&e) && !shutdown.is_raised() =>
            {
                if backoff.failures() == 0 {
                    tracing::warn!(message = "Source database failed; retrying with backoff, the cursor stays.", table = job.spec.table, error = %e);
                }
                shutdown.sleep(backoff.wait()).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The last step: the totals logged, the last checkpoints flushed and their delivery checked.
fn finish(
    cfg: &Config,
    producer: &ThreadedProducer<DeliveryContext>,
    deliveries: &Deliveries,
    jobs: &[TableJob],
    started: Instant,
) -> Result<Stats> {
    let mut total = Stats::default();
    for j in jobs {
        tracing::info!(
            message = "Table done.",
            table = j.spec.table,
            sent = j.stats.sent,
            dead_lettered = j.stats.dead_lettered,
            batches = j.stats.batches,
            recovered = j.stats.recovered,
        );
        total += &j.stats;
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        message = "Ingest finished.",
        sent = total.sent,
        dead_lettered = total.dead_lettered,
        seconds = secs,
        rows_per_sec = (total.sent + total.dead_lettered) as f64 / secs.max(1e-9),
    );
    // Every batch is acknowledged; the last checkpoints may still be on their way.
    tokio::task::block_in_place(|| flush_now(producer, Duration::from_secs(10)))
        .map_err(kafka::err(&cfg.kafka, "flush producer"))?;
    if let Some(first) = deliveries.first_failure()? {
        // Only a checkpoint can still fail here (every batch was acknowledged): the rerun
        // falls back to the previous one and its tail scan skips what was delivered.
        return Err(drain::delivery_failure(
            cfg,
            format!("write the last checkpoint: {first}; rerun to resume"),
        ));
    }
    Ok(total)
}
