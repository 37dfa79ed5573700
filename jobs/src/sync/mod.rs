//! `jobs sync`: the cdc topics -> Redis and a document store (PostgreSQL JSONB), kept equal to
//! the captured tables.
//!
//! A consumer group reads the `cdc.<db>.<table>` topics in batches; each batch is reduced to
//! the newest change per row ([`doc`]) and applied to every sink ([`sinks`]), each of which
//! writes a row only when the change's source position is newer than the row's. Offsets are
//! committed after every sink has written: a crash replays at most the last batch, and the
//! positions make the replay a no-op. A sink that is down is retried with capped backoff
//! (one log line when it goes, one when it is back), the batch held and nothing committed.

pub mod doc;
#[cfg(feature = "mongodb")]
mod mongo;
pub mod sinks;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

use crate::cdc::state::H_POS;
use crate::config::Config;
use crate::io::delivery::{Deliveries, NO_BATCH};
use crate::io::kafka;
use crate::io::retry::Backoff;
use crate::metrics::Render;
use crate::offsets::{Cursor, Position};
use crate::shutdown::Shutdown;
use crate::{Error, Result};
use doc::{Change, Parsed};
use sinks::DocSink;

/// How one run goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once the assigned partitions are read to their end and nothing came for a second.
    pub until_idle: bool,
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Row writes (per sink).
    pub applied: u64,
    /// Changes older than what a sink held (replays, duplicates), left out.
    pub stale: u64,
    pub dead_lettered: u64,
}

/// Counters of `jobs sync`.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    pub applied: AtomicU64,
    pub stale: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    pub sink_up: AtomicI64,
    pub sink_retries: AtomicU64,
    /// Offsets removed by the broker's retention before they were applied.
    pub offsets_removed: AtomicU64,
}

impl Render for SyncMetrics {
    fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        for (name, kind, help, v) in [
            (
                "jobs_sync_applied_total",
                "counter",
                "Row writes, summed over the sinks.",
                g(&self.applied),
            ),
            (
                "jobs_sync_stale_total",
                "counter",
                "Changes older than what the sink held, left out.",
                g(&self.stale),
            ),
            (
                "jobs_sync_dead_lettered_total",
                "counter",
                "Unreadable messages sent to the dead-letter topic.",
                g(&self.dead_lettered),
            ),
            (
                "jobs_sync_batches_total",
                "counter",
                "Batches applied and committed.",
                g(&self.batches),
            ),
            (
                "jobs_sync_sink_retries_total",
                "counter",
                "Sink writes retried after a failure.",
                g(&self.sink_retries),
            ),
            (
                "jobs_sync_offsets_removed_total",
                "counter",
                "Offsets of the cdc topics removed by the broker's retention before they were applied (lost upstream; each gap is logged as an error).",
                g(&self.offsets_removed),
            ),
        ] {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        let up = self.sink_up.load(Ordering::Relaxed);
        s.push_str(&format!("# HELP jobs_sync_sinks_up 1 while every sink accepts writes.\n# TYPE jobs_sync_sinks_up gauge\njobs_sync_sinks_up {up}\n"));
        s
    }
}

/// Logs each rebalance (which partitions this process now reads) and flags it, so the
/// expected offsets are read again from the group's commits.
#[derive(Default)]
struct SyncContext {
    rebalanced: Arc<AtomicBool>,
}

impl ClientContext for SyncContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        kafka::log_client_error(error, reason);
    }
}

impl ConsumerContext for SyncContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalanced.store(true, Ordering::Release);
        let list = |tpl: &TopicPartitionList| -> Vec<String> {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(message = "Partitions assigned.", partitions = ?list(tpl))
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(message = "Partitions revoked.", partitions = ?list(tpl))
            }
            Rebalance::Error(e) => tracing::warn!(message = "Rebalance failed.", error = %e),
        }
    }
}

/// The sinks the configuration names.
async fn open_sinks(cfg: &Config) -> Result<Vec<Box<dyn DocSink>>> {
    let set = |u: &Option<String>| u.clone().filter(|u| !u.trim().is_empty());
    let mut out: Vec<Box<dyn DocSink>> = Vec::new();
    if let Some(url) = set(&cfg.sync.redis_url) {
        out.push(Box::new(
            sinks::RedisDocs::connect(&url, &cfg.sync.redis_prefix).await?,
        ));
    }
    if let Some(url) = set(&cfg.sync.postgres_url) {
        crate::cdc::check_identifier("sync.postgres_schema", &cfg.sync.postgres_schema)?;
        out.push(Box::new(
            sinks::PgDocs::connect(&url, &cfg.sync.postgres_schema).await?,
        ));
    }
    if let Some(url) = set(&cfg.sync.mongodb_url) {
        #[cfg(feature = "mongodb")]
        out.push(Box::new(mongo::MongoDocs::connect(&url).await?));
        #[cfg(not(feature = "mongodb"))]
        return Err(Error::Config(format!(
            "sync.mongodb_url {}: this build has no MongoDB sink (build with --features mongodb)",
            crate::io::db::redact(&url)
        )));
    }
    if out.is_empty() {
        return Err(Error::Config(
            "sync: no sink configured; set sync.redis_url and/or sync.postgres_url".into(),
        ));
    }
    Ok(out)
}

/// Runs `jobs sync` until SIGTERM (or, with `until_idle`, the end of the topics).
pub async fn run(cfg: &Config, opts: &RunOptions, shutdown: Shutdown) -> Result<Stats> {
    let (_, db) = crate::cdc::source_url(cfg)?;
    let tables = match cfg.sync.tables.is_empty() {
        true => cfg.cdc.tables.clone(),
        false => cfg.sync.tables.clone(),
    };
    let mut by_topic: HashMap<String, String> = HashMap::new();
    for t in &tables {
        crate::cdc::check_identifier("sync.tables:", t)?;
        by_topic.insert(crate::cdc::table_topic(cfg, &db, t), t.clone());
    }
    let mut sinks = open_sinks(cfg).await?;
    let metrics = Arc::new(SyncMetrics::default());
    metrics.sink_up.store(1, Ordering::Relaxed);
    if !cfg.sync.metrics_addr.is_empty() {
        crate::metrics::serve(cfg.sync.metrics_addr.clone(), metrics.clone()).await?;
    }
    let mut c = kafka::client_config(&cfg.kafka);
    c.set("group.id", &cfg.sync.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let rebalanced = Arc::new(AtomicBool::new(false));
    let consumer: StreamConsumer<SyncContext> = c
        .create_with_context(SyncContext {
            rebalanced: rebalanced.clone(),
        })
        .map_err(kafka::err(&cfg.kafka, "create consumer"))?;
    let topics: Vec<&str> = by_topic.keys().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(kafka::err(&cfg.kafka, "subscribe to the cdc topics"))?;
    let dlq_reports = Deliveries::default();
    let dlq = kafka::idempotent_producer(&cfg.kafka, dlq_reports.clone())?;
    tracing::info!(message = "Sync starting.", topics = ?topics, sinks = ?sinks.iter().map(|s| s.name()).collect::<Vec<_>>());

    let mut stats = Stats::default();
    let mut idle_since = Instant::now();
    // The offset expected next per partition: from the group's commit when the partition is
    // (re)assigned, then each message's successor. A message past it is a gap (the broker
    // skipped part of a record batch: Tansu 0.6.0 answers a fetch from inside a batch with the
    // next one), and committing past it would lose changes for good.
    let mut cursors: HashMap<(String, i32), Cursor> = HashMap::new();
    // When each partition last delivered a message (see `Watch::unstick`).
    let mut progress: HashMap<(String, i32), Instant> = HashMap::new();
    let mut last_watch = Instant::now();
    while !shutdown.is_raised() {
        // Between batches (also while other partitions keep the batches coming).
        if last_watch.elapsed() >= STALL_CHECK {
            last_watch = Instant::now();
            if rebalanced.swap(false, Ordering::AcqRel) {
                cursors.clear();
                progress.clear();
            }
            let w = Watch {
                consumer: &consumer,
                kafka: &cfg.kafka,
                shutdown: &shutdown,
            };
            w.unstick(&mut cursors, &mut progress).await?;
        }
        // A batch: what arrives within 200 ms of the first message, up to `sync.batch`.
        let mut changes: Vec<Change> = Vec::new();
        let dead_before = stats.dead_lettered;
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        while changes.len() < cfg.sync.batch && !shutdown.is_raised() {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
                None => Duration::from_millis(500),
            };
            let m = match tokio::time::timeout(wait, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    tracing::warn!(message = "Kafka consumer error.", error = %e);
                    break;
                }
                Ok(Ok(m)) => m,
            };
            if rebalanced.swap(false, Ordering::AcqRel) {
                cursors.clear();
                progress.clear();
            }
            let tp = (m.topic().to_string(), m.partition());
            // Any message is progress of the fetcher, a covered one too: after a step back,
            // re-reading what is covered must not look like a stall.
            progress.insert(tp.clone(), Instant::now());
            let cursor = match cursors.entry(tp.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Cursor::at(
                    committed_offset(&consumer, &cfg.kafka, &tp, &shutdown).await?,
                )),
            };
            match cursor.take(m.offset()) {
                Position::Covered => continue,
                Position::Gap { to, ask_start } => {
                    let removed = match ask_start {
                        true => kafka::skip_removed(&consumer, &tp.0, tp.1, m.offset(), |low| {
                            cursor.skip_removed(low)
                        }),
                        false => None,
                    };
                    let to = match removed {
                        Some((low, lost)) => {
                            metrics
                                .offsets_removed
                                .fetch_add(lost.unsigned_abs(), Ordering::Relaxed);
                            // The message at hand may be the log start itself.
                            match cursor.take(m.offset()) {
                                Position::Next => None,
                                _ => Some(low),
                            }
                        }
                        None => Some(to),
                    };
                    if let Some(to) = to {
                        tracing::info!(message = "Gap in offsets; stepping back.", topic = %tp.0, partition = tp.1, offset = m.offset(), expected = ?cursor.next(), seek_to = to);
                        if let Err(e) =
                            consumer.seek(&tp.0, tp.1, Offset::Offset(to), Duration::from_secs(5))
                        {
                            tracing::warn!(message = "Seek back failed; the stall check seeks again.", topic = %tp.0, partition = tp.1, error = %e);
                        }
                        continue;
                    }
                }
                Position::Next => {}
            }
            deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(200));
            let table = by_topic.get(m.topic()).cloned().unwrap_or_default();
            let pos = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == H_POS)
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok().map(String::from))
            });
            match doc::parse(&table, m.key(), m.payload(), pos.as_deref()) {
                Parsed::Change(ch) => changes.push(ch),
                Parsed::Tombstone => {}
                Parsed::Bad(reason) => {
                    let v = serde_json::json!({
                        "reason": format!("sync: {reason}"),
                        "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                    })
                    .to_string();
                    let rec = BaseRecord::with_opaque_to(&cfg.cdc.dlq_topic, NO_BATCH)
                        .key(m.topic())
                        .payload(v.as_bytes());
                    kafka::send(&dlq, rec)
                        .map_err(kafka::err(&cfg.kafka, "dead-letter a message"))?;
                    tracing::warn!(message = "Dead-lettered an unreadable cdc message.", topic = m.topic(), offset = m.offset(), %reason);
                    stats.dead_lettered += 1;
                    metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
            }
            next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
        }
        if next.is_empty() {
            if opts.until_idle
                && idle_since.elapsed() >= Duration::from_secs(1)
                && caught_up(&consumer, &cursors)
            {
                break;
            }
            continue;
        }
        idle_since = Instant::now();
        let batch = doc::reduce(changes);
        // A poll of tombstones and dead letters only holds nothing to apply; its offsets
        // are committed all the same (a sink may refuse an empty write: Redis does).
        for sink in sinks.iter_mut().filter(|_| !batch.is_empty()) {
            let a = apply_with_retry(sink.as_mut(), &batch, &metrics, &shutdown).await?;
            stats.applied += a.written;
            stats.stale += a.stale;
        }
        if stats.dead_lettered > dead_before {
            // The dead letters are in the broker before the offsets that pass their messages.
            tokio::task::block_in_place(|| {
                crate::io::produce::flush_now(&dlq, Duration::from_secs(30))
            })
            .map_err(kafka::err(&cfg.kafka, "flush dead letters"))?;
            if let Some(e) = dlq_reports.first_failure()? {
                return Err(Error::Config(format!(
                    "sync: a dead letter was not delivered to {} ({e}); nothing committed, rerun to resume",
                    cfg.cdc.dlq_topic
                )));
            }
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &next {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .map_err(kafka::err(&cfg.kafka, "build the offsets to commit"))?;
        }
        // A commit refused across a rebalance (the partitions moved on) loses nothing: the
        // sinks hold the batch, and whoever owns the partitions now replays it, which the
        // positions make a no-op.
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(message = "Offset commit refused; the batch will be replayed by the partitions' owner.", error = %e);
        }
        metrics.batches.fetch_add(1, Ordering::Relaxed);
        metrics.applied.store(stats.applied, Ordering::Relaxed);
        metrics.stale.store(stats.stale, Ordering::Relaxed);
    }
    tokio::task::block_in_place(|| crate::io::produce::flush_now(&dlq, Duration::from_secs(10)))
        .map_err(kafka::err(&cfg.kafka, "flush dead letters"))?;
    Ok(stats)
}

/// Applies a batch, retrying a failing sink (capped backoff, the batch held) until it
/// accepts or `shutdown` is raised.
async fn apply_with_retry(
    sink: &mut dyn DocSink,
    batch: &[Change],
    metrics: &SyncMetrics,
    shutdown: &Shutdown,
) -> Result<sinks::Applied> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        match sink.apply(batch).await {
            Ok(a) => {
                if backoff.failures() > 0 {
                    tracing::info!(
                        message = "Sink is back.",
                        sink = sink.name(),
                        failures = backoff.failures()
                    );
                    metrics.sink_up.store(1, Ordering::Relaxed);
                }
                return Ok(a);
            }
            Err(e @ Error::Config(_)) => return Err(e),
            Err(e) => {
                if backoff.failures() == 0 {
                    tracing::warn!(message = "Sink write failed; retrying with backoff, nothing committed.", sink = sink.name(), error = %e);
                    metrics.sink_up.store(0, Ordering::Relaxed);
                }
                metrics.sink_retries.fetch_add(1, Ordering::Relaxed);
                if shutdown.is_raised() {
                    return Err(e);
                }
                shutdown.sleep(backoff.wait()).await;
            }
        }
    }
}

/// The group's committed offset of one partition (`None`: nothing committed yet), asked
/// again with capped backoff while the broker does not answer (until `shutdown`).
async fn committed_offset(
    consumer: &StreamConsumer<SyncContext>,
    kafka_cfg: &crate::config::KafkaConfig,
    (topic, partition): &(String, i32),
    shutdown: &Shutdown,
) -> Result<Option<i64>> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, *partition);
        match tokio::task::block_in_place(|| {
            consumer.committed_offsets(tpl, Duration::from_secs(10))
        }) {
            Ok(got) => {
                return Ok(got
                    .find_partition(topic, *partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    }));
            }
            Err(e) if shutdown.is_raised() => {
                return Err(kafka::err(kafka_cfg, "read a committed offset")(e));
            }
            Err(e) => {
                if backoff.failures() == 0 {
                    tracing::warn!(message = "Committed offset unreadable; retrying with backoff.", topic, partition, error = %e);
                }
                tokio::time::sleep(backoff.wait()).await;
            }
        }
    }
}

/// Every assigned partition applied to its end: its cursor (what was taken, not librdkafka's
/// fetch position, which moves past skipped and gap messages) settled and at the high
/// watermark.
fn caught_up(
    consumer: &StreamConsumer<SyncContext>,
    cursors: &HashMap<(String, i32), Cursor>,
) -> bool {
    let Ok(assigned) = consumer.assignment() else {
        return false;
    };
    if assigned.count() == 0 {
        return false;
    }
    let Ok(committed) = consumer.committed(Duration::from_secs(5)) else {
        return false;
    };
    assigned.elements().iter().all(|e| {
        let tp = (e.topic().to_string(), e.partition());
        // Tansu's high watermark is its last batch's base offset + 1: a commit inside that
        // batch looks caught up until a probe (`Watch::unstick`) has shown what is after it.
        let settled = cursors.get(&tp).is_some_and(Cursor::settled);
        let at = match cursors.get(&tp).and_then(Cursor::next) {
            Some(o) => Some(o),
            None => committed
                .find_partition(e.topic(), e.partition())
                .and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
        };
        let Ok((low, high)) =
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
        else {
            return false;
        };
        // An empty partition (retention removed everything) has nothing to probe for.
        (settled || low >= high) && at.map_or(low >= high, |o| o >= high)
    })
}

/// How long a partition may deliver nothing, while the broker holds more of it, before
/// [`Watch::unstick`] seeks back.
const STALL_CHECK: Duration = Duration::from_secs(2);

/// What the stall check needs of the run.
struct Watch<'a> {
    consumer: &'a StreamConsumer<SyncContext>,
    kafka: &'a crate::config::KafkaConfig,
    shutdown: &'a Shutdown,
}

impl Watch<'_> {
    /// Seeks back every assigned partition that has delivered no message for
    /// [`STALL_CHECK`] since its cursor was set from the group's commit (or since its last
    /// seek): a restart whose commit fell inside the last record batch, which Tansu 0.6.0
    /// answers with nothing (see [`Cursor::probe`]), or a gap whose seek back failed.
    async fn unstick(
        &self,
        cursors: &mut HashMap<(String, i32), Cursor>,
        progress: &mut HashMap<(String, i32), Instant>,
    ) -> Result<()> {
        let Ok(assigned) = self.consumer.assignment() else {
            return Ok(());
        };
        for e in assigned.elements() {
            let tp = (e.topic().to_string(), e.partition());
            let quiet = *progress.entry(tp.clone()).or_insert_with(Instant::now);
            if quiet.elapsed() < STALL_CHECK {
                continue;
            }
            let cursor = match cursors.entry(tp.clone()) {
                Entry::Occupied(c) => c.into_mut(),
                Entry::Vacant(v) => v.insert(Cursor::at(
                    committed_offset(self.consumer, self.kafka, &tp, self.shutdown).await?,
                )),
            };
            if let Some(to) = cursor.probe() {
                tracing::info!(message = "Nothing came from the committed offset; stepping back.", topic = %tp.0, partition = tp.1, expected = ?cursor.next(), seek_to = to);
                if let Err(e) =
                    self.consumer
                        .seek(&tp.0, tp.1, Offset::Offset(to), Duration::from_secs(5))
                {
                    tracing::debug!(message = "Seek failed; the next check seeks again.", topic = %tp.0, partition = tp.1, error = %e);
                }
                progress.insert(tp, Instant::now());
            }
        }
        Ok(())
    }
}
