//! `jobs ingest`: relational tables -> Kafka, incremental and exactly once.
//!
//! Each table is read in keyset order `(timestamp, id)` from a cursor, in batches. A batch is
//! sent with an idempotent producer (`acks=all`, ordered per partition); only when the
//! broker has acknowledged every message of it does a checkpoint (cursor plus per-partition
//! offsets) go to the state topic. Three batches overlap: one is read while the next is sent
//! and the one before is acknowledged (`flights` attributes each report to its batch). After
//! a crash, `state::scan_tails` finds the rows that reached the broker after the last
//! checkpoint, and the rerun skips exactly those: no row is lost and none is sent twice. (Kafka transactions would do the same with less reading,
//! but the local broker, Tansu 0.6.0, does not implement `EndTxn`; this works on any broker.)
//!
//! The partition of a message is chosen here, with Kafka's default murmur2 hash of the key
//! (the product id), so a product's events stay in one partition and a rerun can tell where
//! a row went. Rows whose timestamp is NULL can never pass a keyset cursor; they are
//! dead-lettered through a second cursor on the id alone, so nothing is skipped silently.

mod flights;
mod state;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::config::Config;
use crate::io::avro::{Registry, SchemaKind, Writer};
use crate::io::kafka::{self, partition_for};
use crate::io::produce::{Batcher, flush_now};
use crate::io::source::{Cursor, CursorTable, Keyset, Rows, Source, Value};
use crate::records::{PRODUCTS_TABLE, Product, SALES_TABLE, SaleRow, rfc3339_micros};
use crate::shutdown::Shutdown;
use crate::{Error, Result};

use flights::{FlightContext, Flights, NO_BATCH};
use state::{H_ORIGIN, H_TABLE, Tails, origin_prefix, tp_key};
pub use state::{Position, TableState};

/// Data messages gathered before they are handed to the producer together: enough to take
/// librdkafka's locks once per partition run, few enough that its broker thread keeps busy.
const SEND_CHUNK: usize = 2048;

/// How long `ingest` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Drain what is in the tables now, then exit.
    Once,
    /// Keep polling every `ingest.poll_interval` until SIGTERM or Ctrl-C.
    Follow,
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
struct TableJob {
    spec: &'static CursorTable,
    kind: SchemaKind,
    topic: String,
    /// The last checkpoint written.
    state: TableState,
    /// Where the batches handed to the producer end (ahead of `state` while they fly).
    sent: TableState,
    /// Batches sent and not yet checkpointed, oldest first.
    pending: VecDeque<Pending>,
    stats: Stats,
    /// What of this table reached the broker after the last checkpoint (empty unless the
    /// last run crashed).
    tails: Tails,
    /// The first read of the run, started at startup.
    first_read: Option<tokio::task::JoinHandle<Result<Keyset>>>,
}

/// A batch handed to the producer, waiting for its acknowledgements.
struct Pending {
    batch: usize,
    /// The table's position once this batch is delivered (offsets are added then).
    state: TableState,
    stats: Stats,
}

/// Runs ingest with the given config until the mode says stop.
pub async fn run(cfg: &Config, mode: Mode) -> Result<Stats> {
    run_with(cfg, mode, Shutdown::on_signals()).await
}

/// As [`run`], stopping when `shutdown` is raised.
pub async fn run_with(cfg: &Config, mode: Mode, shutdown: Shutdown) -> Result<Stats> {
    // The producer first: an idempotent producer cannot send before the broker gave it a
    // producer id (see `kafka::partition_counts_with`). The source connects and the saved
    // state is read meanwhile.
    let flights = Flights::default();
    let producer = kafka::idempotent_producer_with(&cfg.kafka, FlightContext(flights.clone()))?;
    let source = cfg.source_name();
    let saved = {
        let cfg = cfg.clone();
        let source = source.clone();
        tokio::task::spawn_blocking(move || state::load(&cfg, &source))
    };
    let db = {
        let url = cfg.database_url.clone();
        tokio::spawn(async move { Source::connect(&url).await })
    };
    let partitions = tokio::task::block_in_place(|| partition_counts(cfg, &producer));
    // The source's error first, as when it connected alone.
    let db = db
        .await
        .map_err(|e| Error::Internal(format!("connect task panicked: {e}")))??;
    let partitions = partitions?;
    let registry = Registry::for_config(cfg).await?;
    let mut saved = saved
        .await
        .map_err(|e| Error::Internal(format!("state loader panicked: {e}")))??;
    let mut jobs = vec![
        TableJob {
            spec: &SALES_TABLE,
            kind: SchemaKind::ProductSale,
            topic: cfg.topics.product_sales.clone(),
            state: TableState::default(),
            sent: TableState::default(),
            pending: VecDeque::new(),
            stats: Stats::default(),
            tails: Tails::default(),
            first_read: None,
        },
        TableJob {
            spec: &PRODUCTS_TABLE,
            kind: SchemaKind::Product,
            topic: cfg.topics.product_updates.clone(),
            state: TableState::default(),
            sent: TableState::default(),
            pending: VecDeque::new(),
            stats: Stats::default(),
            tails: Tails::default(),
            first_read: None,
        },
    ];
    let dlq = (cfg.topics.dlq.as_str(), partitions[&cfg.topics.dlq]);
    let mut first_run = Vec::new();
    for j in &mut jobs {
        match saved.remove(j.spec.table) {
            Some(st) => j.state = st,
            None => first_run.push(j.spec.table),
        }
        // The first batch is read while the checkpoints and recovery below talk to the broker.
        j.first_read = Some(spawn_read(
            &db,
            j.spec,
            j.state.cursor,
            cfg.ingest.batch_size,
        ));
    }
    if !first_run.is_empty() {
        // A table's first run: checkpoint the partitions' end offsets before sending
        // anything, so that recovery never reads what was there before us (one query and one
        // flush for every such table).
        tokio::task::block_in_place(|| {
            let mut topics = vec![dlq];
            for j in jobs.iter().filter(|j| first_run.contains(&j.spec.table)) {
                topics.push((j.topic.as_str(), partitions[&j.topic]));
            }
            let ends = kafka::end_offsets(&cfg.kafka, &topics)?;
            for j in jobs
                .iter_mut()
                .filter(|j| first_run.contains(&j.spec.table))
            {
                j.state.offsets = ends
                    .iter()
                    .filter(|(t, _, _)| *t == j.topic || *t == dlq.0)
                    .map(|(t, p, o)| (tp_key(t, *p), *o))
                    .collect();
                send_checkpoint(cfg, &producer, &source, j.spec.table, &j.state)?;
            }
            wait_for_first_checkpoints(cfg, &producer, &flights)
        })?;
    }
    // Every table's recovery scan at once.
    let tails: Vec<Result<Tails>> = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let scans: Vec<_> = jobs
                .iter()
                .map(|j| {
                    let data = (j.topic.as_str(), partitions[&j.topic]);
                    let source = source.as_str();
                    scope.spawn(move || {
                        state::scan_tails(cfg, source, j.spec.table, data, dlq, &j.state)
                    })
                })
                .collect();
            scans
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Internal("recovery scan panicked".into())))
                })
                .collect()
        })
    });
    for (j, tails) in jobs.iter_mut().zip(tails) {
        tracing::debug!(message = "Checkpointed offsets.", table = j.spec.table, offsets = ?j.state.offsets);
        j.sent = j.state.clone();
        j.tails = tails?;
        tracing::info!(
            message = "Resuming table.",
            table = j.spec.table,
            topic = %j.topic,
            cursor_ts = %rfc3339_micros(j.state.cursor.ts_micros),
            cursor_id = j.state.cursor.id,
            schema_id = registry.id(j.kind)?,
            registry = %registry.source,
        );
    }
    let ctx = Ctx {
        cfg,
        db: &db,
        registry: &registry,
        producer: &producer,
        flights: &flights,
        source: &source,
        partitions: &partitions,
        batches: AtomicUsize::new(NO_BATCH),
    };
    let started = Instant::now();
    loop {
        for job in &mut jobs {
            ctx.drain(job, &shutdown).await?;
        }
        if mode == Mode::Once || shutdown.is_raised() {
            break;
        }
        shutdown.sleep(cfg.ingest.poll_interval).await;
        if shutdown.is_raised() {
            break;
        }
    }
    let mut total = Stats::default();
    for j in &jobs {
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
    tokio::task::block_in_place(|| flush_now(&producer, Duration::from_secs(10)))
        .map_err(kafka::err(&cfg.kafka, "flush producer"))?;
    if let Some(first) = flights.first_failure()? {
        // Only a checkpoint can still fail here (every batch was acknowledged): the rerun
        // falls back to the previous one and its tail scan skips what was delivered.
        return Err(delivery_failure(
            cfg,
            format!("write the last checkpoint: {first}; rerun to resume"),
        ));
    }
    Ok(total)
}

/// Partition counts of the topics ingest writes, asked through the producer. Blocking.
fn partition_counts(
    cfg: &Config,
    producer: &ThreadedProducer<FlightContext>,
) -> Result<HashMap<String, i32>> {
    let t = &cfg.topics;
    kafka::partition_counts_with(
        producer.client(),
        &cfg.kafka,
        &[
            &t.product_sales,
            &t.product_updates,
            &t.dlq,
            &t.ingest_state,
        ],
    )
}

struct Ctx<'a> {
    cfg: &'a Config,
    db: &'a Source,
    registry: &'a Registry,
    producer: &'a ThreadedProducer<FlightContext>,
    flights: &'a Flights,
    source: &'a str,
    partitions: &'a HashMap<String, i32>,
    /// The last batch number given out (the delivery opaque of its messages).
    batches: AtomicUsize,
}

/// One batch, ready to publish.
struct Batch {
    rows: Rows,
    /// Each row's cursor; `None` for rows read by the NULL-timestamp cursor.
    cursors: Option<Vec<Cursor>>,
}

impl Ctx<'_> {
    /// Publishes everything past the table's cursor, one checkpoint per batch. While one
    /// batch is sent, the previous one is being acknowledged and the next one read.
    async fn drain(&self, job: &mut TableJob, shutdown: &Shutdown) -> Result<()> {
        let limit = self.cfg.ingest.batch_size;
        // Rows with a NULL timestamp first: they are rare and go to the dead-letter topic.
        loop {
            let rows = self
                .db
                .fetch_null_cursor(job.spec, job.sent.null_id, limit)
                .await?;
            if rows.is_empty() {
                break;
            }
            tokio::task::block_in_place(|| {
                self.publish(
                    job,
                    Batch {
                        rows,
                        cursors: None,
                    },
                )?;
                self.settle(job, 0)
            })?;
        }
        let first = match job.first_read.take() {
            Some(read) => read,
            None => spawn_read(self.db, job.spec, job.sent.cursor, limit),
        };
        let mut next = Some(first);
        while let Some(pending) = next.take() {
            let Keyset { rows, cursors } = pending
                .await
                .map_err(|e| Error::Internal(format!("reader task failed: {e}")))??;
            let Some(&last) = cursors.last() else {
                break;
            };
            if rows.len() == limit && !shutdown.is_raised() {
                next = Some(spawn_read(self.db, job.spec, last, limit));
            }
            let done = tokio::task::block_in_place(|| {
                self.publish(
                    job,
                    Batch {
                        rows,
                        cursors: Some(cursors),
                    },
                )?;
                // One batch is acknowledged while the next one is encoded and sent.
                self.settle(job, 1)
            });
            if let Err(e) = done {
                if let Some(n) = next {
                    n.abort();
                }
                return Err(e);
            }
        }
        tokio::task::block_in_place(|| {
            // The table's last batch goes out now rather than after `linger.ms`.
            flush_now(self.producer, Duration::from_secs(120)).map_err(kafka::err(
                &self.cfg.kafka,
                format!("send the last batch ({})", job.spec.table),
            ))?;
            self.settle(job, 0)
        })
    }

    /// Hands a batch to the producer (its checkpoint follows in [`Ctx::settle`]). Blocking.
    fn publish(&self, job: &mut TableJob, batch: Batch) -> Result<()> {
        let seq = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        self.flights.open(seq)?;
        let schema_id = self.registry.id(job.kind)?;
        let kerr = |what: &str| kafka::err(&self.cfg.kafka, format!("{what} ({})", job.spec.table));
        let data_parts = self.partitions[&job.topic];
        let dlq_parts = self.partitions[&self.cfg.topics.dlq];
        let n = job.spec.cols.len();
        // Data messages are handed to the producer in runs (see `io::produce`).
        let mut out = Batcher::new(self.producer, SEND_CHUNK);
        let mut w = Writer::default();
        let mut row: Vec<Value<'_>> = Vec::with_capacity(n);
        let mut key = String::new();
        let prefix = origin_prefix(self.source, job.spec.table);
        let mut origin = prefix.clone();
        let (mut sent, mut dead, mut recovered) = (0u64, 0u64, 0u64);
        let mut st = job.sent.clone();
        for r in 0..batch.rows.len() {
            batch.rows.values(r, job.spec.cols, &mut row);
            let pos = match &batch.cursors {
                Some(c) => Position::Keyset(c[r]),
                None => match row.first() {
                    Some(Value::Int(id)) => Position::NullTs(*id),
                    other => {
                        return Err(Error::Internal(format!(
                            "{}.{} read as {other:?}",
                            job.spec.table, job.spec.id_col
                        )));
                    }
                },
            };
            let encoded = if batch.cursors.is_none() {
                Err(format!("{} is NULL or not a timestamp", job.spec.ts_col))
            } else {
                match job.kind {
                    SchemaKind::ProductSale => SaleRow::from_row(&row).map(|s| {
                        w.start_framed(schema_id);
                        s.encode(&mut w);
                        s.product_id
                    }),
                    SchemaKind::Product => Product::from_row(&row).map(|p| {
                        w.start_framed(schema_id);
                        p.encode(&mut w);
                        p.id
                    }),
                    // Ingest tables are sales and products only (see `run`).
                    _ => Err("not an ingest table".to_string()),
                }
            };
            key.clear();
            // Data messages carry no header (recovery knows them by their bytes); dead letters
            // carry their origin and why.
            let (topic, payload, headers) = match encoded {
                Ok(id) => {
                    let _ = write!(key, "{id}");
                    (&job.topic, std::mem::take(&mut w.buf), None)
                }
                Err(reason) => {
                    if let Some(Value::Int(id)) = row.first() {
                        let _ = write!(key, "{id}");
                    }
                    let letter = dead_letter(self.source, job.spec, &row, &reason);
                    origin.truncate(prefix.len());
                    pos.write_header(&mut origin);
                    let headers = OwnedHeaders::new_with_capacity(4)
                        .insert(Header {
                            key: H_ORIGIN,
                            value: Some(origin.as_str()),
                        })
                        .insert(Header {
                            key: H_TABLE,
                            value: Some(job.spec.table),
                        })
                        .insert(Header {
                            key: "jobs.stage",
                            value: Some("ingest"),
                        })
                        .insert(Header {
                            key: "jobs.reason",
                            value: Some(reason.as_str()),
                        });
                    (&self.cfg.topics.dlq, letter, Some(headers))
                }
            };
            let is_dlq = *topic == self.cfg.topics.dlq;
            let partition =
                partition_for(key.as_bytes(), if is_dlq { dlq_parts } else { data_parts });
            // Tails are found only after a crash; most runs skip the lookup.
            let already = !job.tails.is_empty()
                && job.tails.has(
                    topic,
                    !is_dlq,
                    partition,
                    pos,
                    key.as_bytes(),
                    payload.as_slice(),
                );
            if already {
                recovered += 1;
            } else if let Some(h) = headers {
                // A dead letter goes alone: only a message of its own carries headers.
                self.send(
                    BaseRecord::with_opaque_to(topic, seq)
                        .key(key.as_str())
                        .partition(partition)
                        .payload(payload.as_slice())
                        .headers(h),
                )
                // Built only on failure: this runs once per message.
                .map_err(|e| kerr("send")(e))?;
                dead += 1;
            } else {
                out.push(topic, partition, key.as_bytes(), &payload, seq)
                    .map_err(|e| kerr("send")(e))?;
                sent += 1;
            }
            if !is_dlq {
                w.buf = payload;
            }
            match pos {
                Position::NullTs(id) => st.null_id = st.null_id.max(id),
                Position::Keyset(c) => st.cursor = c,
            }
        }
        out.flush().map_err(kerr("send"))?;
        self.flights.close(seq, sent + dead)?;
        st.rows += sent + dead + recovered;
        job.sent = st.clone();
        job.pending.push_back(Pending {
            batch: seq,
            state: st,
            stats: Stats {
                sent,
                dead_lettered: dead,
                batches: 1,
                recovered,
            },
        });
        Ok(())
    }

    /// Checkpoints acknowledged batches, oldest first, until at most `keep` are in flight.
    /// Blocking. Any delivery failure ends the run: the checkpoint stays at the last batch
    /// delivered in full and a rerun recovers exactly.
    fn settle(&self, job: &mut TableJob, keep: usize) -> Result<()> {
        while job.pending.len() > keep {
            let flight = self
                .flights
                .take_oldest(Duration::from_secs(120))
                .map_err(|what| delivery_failure(self.cfg, what))?;
            let Some(p) = job.pending.pop_front() else {
                return Err(Error::Internal("acknowledged batch was not pending".into()));
            };
            if p.batch != flight.batch {
                return Err(Error::Internal(format!(
                    "batch {} acknowledged while {} was the oldest",
                    flight.batch, p.batch
                )));
            }
            failpoint_before_checkpoint();
            let mut st = p.state;
            // Offsets of this batch and earlier ones only: a checkpoint never runs ahead.
            st.offsets = job.state.offsets.clone();
            for (topic, partition, next) in flight.next_offsets {
                let e = st.offsets.entry(tp_key(&topic, partition)).or_insert(0);
                *e = (*e).max(next);
            }
            send_checkpoint(self.cfg, self.producer, self.source, job.spec.table, &st)?;
            // The checkpoint is not waited for here: a failure shows at the next batch (or the
            // final flush). Until then a crash falls back to the previous checkpoint, and the
            // tail scan still finds exactly what was delivered.
            job.state = st;
            job.stats += &p.stats;
            tracing::debug!(
                message = "Batch acknowledged and checkpointed.",
                table = job.spec.table,
                sent = p.stats.sent,
                dead_lettered = p.stats.dead_lettered,
                recovered = p.stats.recovered,
                cursor_id = job.state.cursor.id,
            );
        }
        Ok(())
    }

    /// Hands one message to the producer.
    fn send<K: rdkafka::message::ToBytes + ?Sized>(
        &self,
        rec: BaseRecord<'_, K, [u8], usize>,
    ) -> std::result::Result<(), KafkaError> {
        kafka::send(self.producer, rec)
    }
}

/// Hands a table's checkpoint to the producer (its delivery failure, if any, shows in
/// [`Flights::first_failure`]).
fn send_checkpoint(
    cfg: &Config,
    producer: &ThreadedProducer<FlightContext>,
    source: &str,
    table: &str,
    st: &TableState,
) -> Result<()> {
    let (key, value) = state::record(source, table, st);
    kafka::send(
        producer,
        BaseRecord::with_opaque_to(&cfg.topics.ingest_state, NO_BATCH)
            .key(&key)
            .partition(0)
            .payload(value.as_slice()),
    )
    .map_err(kafka::err(&cfg.kafka, format!("send checkpoint ({table})")))
}

/// Reads the rows after `after` (at most `limit`) in a task of its own.
fn spawn_read(
    db: &Source,
    spec: &'static CursorTable,
    after: Cursor,
    limit: usize,
) -> tokio::task::JoinHandle<Result<Keyset>> {
    let db = db.clone();
    tokio::spawn(async move { db.fetch_after(spec, after, limit).await })
}

/// Waits until the broker has the first checkpoints handed to the producer. Blocking.
fn wait_for_first_checkpoints(
    cfg: &Config,
    producer: &ThreadedProducer<FlightContext>,
    flights: &Flights,
) -> Result<()> {
    flush_now(producer, Duration::from_secs(30))
        .map_err(kafka::err(&cfg.kafka, "send the first checkpoints"))?;
    match flights.first_failure()? {
        Some(e) => Err(delivery_failure(
            cfg,
            format!("write the first checkpoints: {e}"),
        )),
        None => Ok(()),
    }
}

/// A message that the broker did not take, as an error naming the brokers.
fn delivery_failure(cfg: &Config, what: String) -> Error {
    Error::Kafka {
        brokers: cfg.kafka.brokers.clone(),
        what,
        source: KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
    }
}

/// Test hook: `JOBS_FAILPOINT=ingest-before-checkpoint:N` aborts the process after the N-th
/// batch is acknowledged and before its checkpoint is written, the worst moment to crash.
fn failpoint_before_checkpoint() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static BATCHES: AtomicU64 = AtomicU64::new(0);
    let Ok(spec) = std::env::var("JOBS_FAILPOINT") else {
        return;
    };
    let n = BATCHES.fetch_add(1, Ordering::SeqCst) + 1;
    if spec
        .strip_prefix("ingest-before-checkpoint:")
        .and_then(|v| v.parse().ok())
        == Some(n)
    {
        eprintln!("failpoint ingest-before-checkpoint:{n}: aborting");
        std::process::abort();
    }
}

/// The dead-letter message for a row: JSON with the reason and every column.
fn dead_letter(source: &str, spec: &CursorTable, row: &[Value], reason: &str) -> Vec<u8> {
    let cols: serde_json::Map<String, serde_json::Value> = spec
        .cols
        .iter()
        .zip(row)
        .map(|(c, v)| (c.name().to_string(), v.to_json()))
        .collect();
    serde_json::json!({
        "stage": "ingest",
        "source": source,
        "table": spec.table,
        "reason": reason,
        "row": cols,
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
    .to_string()
    .into_bytes()
}
