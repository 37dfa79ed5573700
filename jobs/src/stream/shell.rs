//! The async shell of `jobs stream`: the consumer loop, rebalances, the reference tables, and
//! carrying out what the [partition core](super::partition) decided, a flush plan in the
//! order of the module docs of [`super`]. It makes no business decision of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};

use super::compaction::{self, Background};
use super::consumer::{self, Change, StreamContext};
use super::execute::Io;
use super::membership::Membership;
use super::partition::{self, Event, Partition, Position, Recorded, SchemaIds, Settings};
use super::reference::{self, Snapshot};
use super::sinks::{RedisSink, SqlSink};
use super::{Counters, RunOptions, output_topics, recover};
use crate::config::{Config, Feature};
use crate::io::avro::Registry;
use crate::io::db::Db;
use crate::io::delivery::Deliveries;
use crate::io::kafka;
use crate::io::lake::Lake;
use crate::metrics::StreamMetrics;
use crate::shutdown::Shutdown;
use crate::{Error, Result};

/// The reference tables (`inventory`, `customer_data`) as last read.
#[derive(Default)]
struct Reference {
    /// Connected on first use.
    db: Option<Db>,
    snapshot: Snapshot,
    last_refresh: Option<Instant>,
    health: reference::Health,
}

struct Shell<'a> {
    io: Io<'a>,
    settings: Settings,
    registry: Registry,
    parts: HashMap<i32, Partition>,
    /// Whether this process holds source partition 0, and so runs the group's compaction.
    owns_first: Arc<AtomicBool>,
    reference: Reference,
    total: Counters,
    /// A coarse clock (set on every tick, twice a second) for idle detection: cheaper than a
    /// clock read per event.
    clock: Instant,
    /// The latest acceptable sale time: the wall clock plus `stream.max_future`, set with
    /// `clock`.
    latest_event: i64,
    last_rebalance: Instant,
    session_timeout: Duration,
    membership: Membership,
}

/// Runs the stream until `shutdown` is raised (or, with `until_idle`, until drained).
pub(super) async fn run(cfg: &Config, opts: &RunOptions, shutdown: Shutdown) -> Result<Counters> {
    let lake = Lake::open(&cfg.lake, &cfg.s3)?;
    lake.healthcheck().await?;
    let registry =
        crate::io::registry::for_config(&cfg.schema_registry, &cfg.topics, Some(&shutdown)).await?;
    let specs = super::specs(cfg);
    let metrics = Arc::new(StreamMetrics::default());
    if !cfg.stream.metrics_addr.is_empty() {
        crate::metrics::serve(cfg.stream.metrics_addr.clone(), metrics.clone()).await?;
    }
    let t = &cfg.topics;
    let out_parts = tokio::task::block_in_place(|| {
        let topics: Vec<&str> = std::iter::once(&t.product_sales)
            .chain(output_topics(cfg))
            .map(|t| t.as_str())
            .collect();
        kafka::partition_counts(&cfg.kafka, &topics)
    })?;
    let s = &cfg.stream;
    let sql = match s.sql_url.as_deref().unwrap_or(&cfg.database_url) {
        "" => None,
        url if s.has(Feature::Dashboard) || s.has(Feature::Top) => {
            let sink = SqlSink::connect(url).await?;
            tracing::info!(message = "Writing dashboard and top-N tables.", database = %sink.name());
            Some(sink)
        }
        _ => None,
    };
    let redis = match s.redis_url.as_deref() {
        Some(url) if !url.is_empty() && s.has(Feature::Top) => {
            Some(RedisSink::connect(url, &s.group_id, s.redis_ttl).await?)
        }
        _ => None,
    };
    let deliveries = Deliveries::default();
    let producer = Arc::new(kafka::idempotent_producer(&cfg.kafka, deliveries.clone())?);
    // Before joining: a crashed predecessor's membership is ended, so the group need not
    // wait for its session to time out.
    let membership = Membership::claim(cfg, &lake).await?;
    let consumer = consumer::subscribe(cfg, producer.clone(), metrics.clone())?;
    tracing::info!(message = "Streaming.", topic = %t.product_sales, group = %s.group_id, lake = %lake.url, windows = ?s.windows.iter().map(|w| w.to_string()).collect::<Vec<_>>());

    let source_parts = out_parts.get(&t.product_sales).copied().unwrap_or(1);
    let lake_writers = lake.lock("writers")?;
    let owns_first = Arc::new(AtomicBool::new(false));
    let compactor = Background::start(cfg, &lake, source_parts, owns_first.clone())?;
    let mut shell = Shell {
        settings: Settings::new(
            cfg,
            specs,
            SchemaIds::from_registry(&registry)?,
            source_parts,
        ),
        io: Io {
            cfg,
            lake,
            producer,
            deliveries,
            sql,
            redis,
            metrics,
            out_parts,
            output_offsets: BTreeMap::new(),
            writers: lake_writers,
            shutdown: shutdown.clone(),
        },
        registry,
        owns_first,
        parts: HashMap::new(),
        reference: Reference::default(),
        total: Counters::default(),
        clock: Instant::now(),
        latest_event: latest_event(cfg),
        last_rebalance: Instant::now(),
        session_timeout: consumer::session_timeout(cfg),
        membership,
    };
    shell.refresh_reference().await;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // One message stream for the whole run (`recv()` builds and registers a new one per message).
    let mut messages = consumer.stream();
    loop {
        tokio::select! {
            Some(m) = messages.next() => {
                shell.apply_changes(&consumer).await?;
                match m {
                    Ok(m) => {
                        kafka::broker_answered();
                        shell.on_message(&m, &consumer).await?
                    }
                    Err(KafkaError::PartitionEOF(p)) => shell.on_end(p, &consumer),
                    // librdkafka recovers from lost connections by itself (logged once in
                    // the client context); anything else stops the stream.
                    Err(KafkaError::MessageConsumption(code)) if kafka::transport(code) => {}
                    Err(e) => return Err(kafka::err(&cfg.kafka, "consume")(e)),
                }
            }
            _ = tick.tick() => {
                shell.clock = Instant::now();
                shell.latest_event = latest_event(cfg);
                shell.apply_changes(&consumer).await?;
                shell.on_tick(&consumer).await?;
            }
        }
        if shutdown.is_raised() || (opts.until_idle && shell.drained()) {
            break;
        }
    }
    drop(messages);
    if let Some(c) = compactor {
        c.stop().await;
    }
    let ids: Vec<i32> = shell.parts.keys().copied().collect();
    for p in ids {
        if opts.until_idle
            && let Some(part) = shell.parts.get_mut(&p)
        {
            part.close_all();
        }
        shell.flush(p, &consumer).await?;
    }
    // Drained and alone: every window is closed, every date can be compacted.
    if opts.until_idle && shell.parts.len() as i32 >= shell.settings.source_partitions {
        compaction::final_pass(cfg, &shell.io.lake).await?;
    }
    let total = shell.total;
    tracing::info!(
        message = "Stream stopped.",
        consumed = total.consumed,
        aggregated = total.aggregated,
        late = total.late,
        dead_lettered = total.dead_lettered,
        windows_out = shell.io.metrics.windows_out.load(Ordering::Relaxed),
    );
    consumer.unsubscribe();
    Ok(total)
}

/// The wall clock plus `stream.max_future`, in microseconds.
fn latest_event(cfg: &Config) -> i64 {
    let ahead = i64::try_from(cfg.stream.max_future.as_micros()).unwrap_or(i64::MAX);
    chrono::Utc::now().timestamp_micros().saturating_add(ahead)
}

/// Seeks partition `p` of `topic` to `to` (`None`: its beginning).
fn seek(consumer: &StreamConsumer<StreamContext>, topic: &str, p: i32, to: Option<i64>) {
    let offset = to.map_or(Offset::Beginning, Offset::Offset);
    if let Err(e) = consumer.seek(topic, p, offset, Duration::from_secs(5)) {
        // Not fatal: the offset check in `on_message` seeks again on the first gap.
        tracing::debug!(message = "Seek failed.", partition = p, error = %e);
    }
}

impl Shell<'_> {
    fn seek(&self, consumer: &StreamConsumer<StreamContext>, p: i32, to: Option<i64>) {
        seek(consumer, &self.io.cfg.topics.product_sales, p, to);
    }

    /// The consumer reported the end of partition `p`: it is at its end, or its cursor
    /// (restored from a checkpoint, nothing taken since) has not been reached yet and the
    /// partition is probed further back ([`Partition::reached_end`]).
    fn on_end(&mut self, p: i32, consumer: &StreamConsumer<StreamContext>) {
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        if let Some(to) = part.reached_end() {
            tracing::info!(message = "End of partition reported before the checkpoint's offset was reached; stepping back.", partition = p, expected = ?part.next_offset(), seek_to = to);
            self.seek(consumer, p, Some(to));
        }
    }

    /// `--until-idle` is done: every partition we own is at its end, and we own them all,
    /// or the assignment has been stable long enough that no dead member still holds any
    /// (a member killed without leaving keeps its partitions for the session timeout).
    fn drained(&self) -> bool {
        // Checked after every message: the cheap test first.
        if self.parts.is_empty() || !self.parts.values().all(|p| p.at_end) {
            return false;
        }
        self.parts.len() as i32 >= self.settings.source_partitions
            || self.last_rebalance.elapsed() > 2 * self.session_timeout
    }

    async fn apply_changes(&mut self, consumer: &StreamConsumer<StreamContext>) -> Result<()> {
        let changes: Vec<Change> = match consumer.context().changes.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return Err(Error::Internal("rebalance lock poisoned".into())),
        };
        let changes_seen = !changes.is_empty();
        if changes_seen {
            self.last_rebalance = Instant::now();
        }
        for ch in changes {
            match ch {
                Change::Revoke(ps) => {
                    for p in ps {
                        // The next owner resumes from our last checkpoint.
                        self.parts.remove(&p);
                        tracing::info!(message = "Partition revoked.", partition = p);
                    }
                }
                Change::Assign(ps) => {
                    tracing::debug!(message = "Assignment received.", partitions = ?ps);
                    let new: Vec<i32> = ps
                        .into_iter()
                        .filter(|p| !self.parts.contains_key(p))
                        .collect();
                    // What this process sent between checkpoints must be visible to the
                    // recovery scan (the partition may come straight back to us).
                    if !new.is_empty() {
                        tokio::task::block_in_place(|| self.io.wait_for_acks())?;
                    }
                    for mut part in recover::recover(&self.io, &self.settings, &new).await? {
                        part.apply_inventory(&self.settings, &self.reference.snapshot.inventory);
                        // Start exactly at the checkpoint; a seek also drops anything fetched
                        // for this partition before (e.g. by a previous assignment).
                        self.seek(consumer, part.id, part.next_offset());
                        self.parts.insert(part.id, part);
                    }
                }
            }
        }
        if changes_seen {
            self.owns_first
                .store(self.parts.contains_key(&0), Ordering::Relaxed);
            let id = consumer::member_id(consumer);
            if let Err(e) = self.membership.record(&self.io.lake, id).await {
                tracing::warn!(message = "Cannot record the group member id; a crash of this process will hold its partitions for the session timeout.", error = %e);
            }
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        m: &BorrowedMessage<'_>,
        consumer: &StreamConsumer<StreamContext>,
    ) -> Result<()> {
        let p = m.partition();
        let Some(part) = self.parts.get_mut(&p) else {
            return Ok(()); // not ours (any more)
        };
        let offset = m.offset();
        part.heard(self.clock);
        match part.position(offset) {
            Position::Covered => return Ok(()),
            Position::Gap { to, ask_start } => {
                let topic = &self.io.cfg.topics.product_sales;
                let removed = if ask_start {
                    kafka::skip_removed(consumer, topic, p, offset, |low| part.skip_removed(low))
                } else {
                    None
                };
                let seek_to = match removed {
                    Some((low, lost)) => {
                        let removed = &self.io.metrics.offsets_removed;
                        removed.fetch_add(lost.unsigned_abs(), Ordering::Relaxed);
                        // The message at hand may be the log start itself: take it.
                        (part.position(offset) != Position::Next).then_some(low)
                    }
                    None => Some(to),
                };
                if let Some(to) = seek_to {
                    tracing::debug!(message = "Gap in offsets; stepping back.", partition = p, offset, expected = ?part.next_offset(), seek_to = to);
                    if let Err(e) =
                        consumer.seek(topic, p, Offset::Offset(to), Duration::from_secs(5))
                    {
                        tracing::warn!(message = "Seek back failed; will retry.", partition = p, error = %e);
                    }
                    return Ok(());
                }
            }
            Position::Next => {}
        }
        let payload = m.payload().unwrap_or_default();
        let sale = partition::decode_sale(&self.registry, payload, self.latest_event);
        let segments = &self.reference.snapshot.segments;
        let segment = sale
            .as_ref()
            .ok()
            .and_then(|s| s.customer_id)
            .and_then(|c| segments.get(&c))
            .map(|s| &**s);
        let ev = Event {
            // The one topic subscribed to; `m.topic()` would measure a C string per event.
            topic: &self.io.cfg.topics.product_sales,
            offset,
            key: m.key().unwrap_or_default(),
            payload,
        };
        let recorded = part.record(&self.settings, ev, sale, segment, self.clock);
        let (metrics, total) = (&self.io.metrics, &mut self.total);
        total.consumed += 1;
        metrics.events_in.fetch_add(1, Ordering::Relaxed);
        let (counter, gauge) = match recorded {
            Recorded::Aggregated => (&mut total.aggregated, &metrics.aggregated),
            Recorded::Late => (&mut total.late, &metrics.late),
            Recorded::DeadLettered => (&mut total.dead_lettered, &metrics.dead_lettered),
        };
        *counter += 1;
        gauge.fetch_add(1, Ordering::Relaxed);
        if part.full(&self.settings) {
            self.flush(p, consumer).await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self, consumer: &StreamConsumer<StreamContext>) -> Result<()> {
        self.refresh_reference().await;
        let now = Instant::now();
        let active = self
            .parts
            .values()
            .filter_map(|p| p.active_watermark(&self.settings, now))
            .min();
        let ids: Vec<i32> = self.parts.keys().copied().collect();
        for p in ids {
            let Some(part) = self.parts.get_mut(&p) else {
                continue;
            };
            part.follow(&self.settings, active, now);
            if let Some(to) = part.stalled(now) {
                tracing::info!(message = "Nothing came from the checkpoint's offset; stepping back.", partition = p, expected = ?part.next_offset(), seek_to = to);
                seek(consumer, &self.io.cfg.topics.product_sales, p, Some(to));
            }
            if let Ok(mut g) = self.io.metrics.partitions.lock() {
                let e = g.entry(p).or_default();
                e.watermark_micros = part.watermark();
                e.next_offset = part.next_offset().unwrap_or(0);
            }
            let eager = part.eager(&self.settings, false, now);
            if !eager.msgs.is_empty() {
                tokio::task::block_in_place(|| self.io.send(p, &eager.msgs))?;
            }
            let m = &self.io.metrics;
            m.totals_out.fetch_add(eager.totals, Ordering::Relaxed);
            m.alerts_out.fetch_add(eager.alerts, Ordering::Relaxed);
            if eager.alerts > 0 {
                tracing::info!(
                    message = "Low-stock alerts sent.",
                    partition = p,
                    alerts = eager.alerts
                );
            }
            if part.due(&self.settings, now) {
                self.flush(p, consumer).await?;
            }
        }
        let open: usize = self.parts.values().map(|p| p.open_keys()).sum();
        let m = &self.io.metrics.open_keys;
        m.store(open as i64, Ordering::Relaxed);
        Ok(())
    }

    /// Plans partition `p`'s flush, carries it out, and confirms it to the core.
    async fn flush(&mut self, p: i32, consumer: &StreamConsumer<StreamContext>) -> Result<()> {
        let Some(part) = self.parts.get_mut(&p) else {
            return Ok(());
        };
        let started = Instant::now();
        let plan = tokio::task::block_in_place(|| part.plan_flush(&self.settings, started))?;
        let (seq, stats, next_offset) = (plan.seq, plan.stats, plan.checkpoint.next_offset);
        self.io.execute(plan, consumer).await?;
        part.flushed(seq, Instant::now());
        let m = &self.io.metrics;
        m.windows_out
            .fetch_add(stats.windows as u64, Ordering::Relaxed);
        m.top_lists_out
            .fetch_add(stats.top_lists as u64, Ordering::Relaxed);
        m.files_written
            .fetch_add(stats.files as u64, Ordering::Relaxed);
        m.bytes_written
            .fetch_add(stats.bytes as u64, Ordering::Relaxed);
        m.totals_out.fetch_add(stats.totals, Ordering::Relaxed);
        m.alerts_out.fetch_add(stats.alerts, Ordering::Relaxed);
        m.checkpoints.fetch_add(1, Ordering::Relaxed);
        m.checkpoint_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        tracing::debug!(
            message = "Flushed and checkpointed.",
            partition = p,
            seq,
            next_offset = ?next_offset,
            files = stats.files,
            bytes = stats.bytes,
            windows = stats.windows,
            skipped_already_sent = stats.skipped,
            ms = started.elapsed().as_millis() as u64,
        );
        Ok(())
    }

    /// Reads `inventory` and `customer_data` again (at start and every `reference_refresh`)
    /// and hands new stock levels to our partitions.
    async fn refresh_reference(&mut self) {
        let s = &self.io.cfg.stream;
        let (segments, alerts) = (s.has(Feature::Segments), s.has(Feature::Alerts));
        let r = &mut self.reference;
        if (!segments && !alerts)
            || r.last_refresh
                .is_some_and(|t| t.elapsed() < s.reference_refresh)
        {
            return;
        }
        r.last_refresh = Some(Instant::now());
        if r.db.is_none() {
            let url = s
                .reference_url
                .as_deref()
                .unwrap_or(&self.io.cfg.database_url);
            match Db::connect(url).await {
                Ok(db) => r.db = Some(db),
                Err(e) => {
                    r.health.report(&[e.to_string()]);
                    self.io.metrics.reference_problem("database_unreachable", 1);
                    return;
                }
            }
        }
        let Some(db) = &r.db else { return };
        let (snapshot, failures) =
            reference::load(db, &r.snapshot, segments, alerts, &self.io.metrics).await;
        r.snapshot = snapshot;
        r.health.report(&failures);
        tracing::debug!(
            message = "Reference tables read.",
            customers = r.snapshot.segments.len(),
            inventory = r.snapshot.inventory.len()
        );
        for part in self.parts.values_mut() {
            part.apply_inventory(&self.settings, &r.snapshot.inventory);
        }
    }
}
