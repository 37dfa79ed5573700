//! The second step of a run: a table's batches, each read (the next one while this one is
//! sent), published, and settled (checkpointed once the broker acknowledged all of it).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::rows::{parse_product, parse_sale_row};
use super::state::{self, H_ORIGIN, H_TABLE, origin_prefix, tp_key};
use super::{Pending, Position, Prepared, SEND_CHUNK, Stats, TableJob, TableState};
use crate::config::Config;
use crate::io::avro::{SchemaKind, Writer};
use crate::io::delivery::{DeliveryContext, NO_BATCH};
use crate::io::kafka::{self, partition_for};
use crate::io::produce::{Batcher, flush_now};
use crate::io::source::{Cursor, CursorTable, Keyset, Rows, Source, Value};
use crate::shutdown::Shutdown;
use crate::{Error, Result};

pub(super) struct Ctx<'a> {
    cfg: &'a Config,
    run: &'a Prepared,
    /// The last batch number given out (the delivery opaque of its messages).
    batches: AtomicUsize,
    /// Test hook, read once: abort after this many acknowledged batches, before the
    /// checkpoint (see [`Failpoint`]).
    failpoint: Failpoint,
}

/// One batch, ready to publish.
struct Batch {
    rows: Rows,
    /// Each row's cursor; `None` for rows read by the NULL-timestamp cursor.
    cursors: Option<Vec<Cursor>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(cfg: &'a Config, run: &'a Prepared) -> Ctx<'a> {
        Ctx {
            cfg,
            run,
            batches: AtomicUsize::new(NO_BATCH),
            failpoint: Failpoint::from_env(),
        }
    }
}

impl Ctx<'_> {
    /// Publishes everything past the table's cursor, one checkpoint per batch. While one
    /// batch is sent, the previous one is being acknowledged and the next one read.
    pub(super) async fn drain(&self, job: &mut TableJob, shutdown: &Shutdown) -> Result<()> {
        let limit = self.cfg.ingest.batch_size;
        // Rows with a NULL timestamp first: they are rare and go to the dead-letter topic.
        loop {
            let rows = self
                .run
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
            None => spawn_read(&self.run.db, job.spec, job.sent.cursor, limit),
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
                next = Some(spawn_read(&self.run.db, job.spec, last, limit));
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
            flush_now(&self.run.producer, Duration::from_secs(120)).map_err(kafka::err(
                &self.cfg.kafka,
                format!("send the last batch ({})", job.spec.table),
            ))?;
            self.settle(job, 0)
        })
    }

    /// Hands a batch to the producer (its checkpoint follows in [`Ctx::settle`]). Blocking.
    fn publish(&self, job: &mut TableJob, batch: Batch) -> Result<()> {
        let seq = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        self.run.deliveries.open(seq)?;
        let schema_id = self.run.registry.id(job.kind)?;
        let kerr = |what: &str| kafka::err(&self.cfg.kafka, format!("{what} ({})", job.spec.table));
        let data_parts = self.run.partitions[&job.topic];
        let dlq_parts = self.run.partitions[&self.cfg.topics.dlq];
        let n = job.spec.cols.len();
        // Data messages are handed to the producer in runs (see `io::produce`).
        let mut out = Batcher::new(&self.run.producer, SEND_CHUNK);
        let mut w = Writer::default();
        let mut row: Vec<Value<'_>> = Vec::with_capacity(n);
        let mut key = String::new();
        let prefix = origin_prefix(&self.run.source, job.spec.table);
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
                    SchemaKind::ProductSale => parse_sale_row(&row).map(|s| {
                        w.start_framed(schema_id);
                        s.encode(&mut w);
                        s.product_id
                    }),
                    SchemaKind::Product => parse_product(&row).map(|p| {
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
                    let letter = dead_letter(&self.run.source, job.spec, &row, &reason);
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
        self.run.deliveries.close(seq, sent + dead)?;
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
                .run
                .deliveries
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
            self.failpoint.before_checkpoint();
            let mut st = p.state;
            // Offsets of this batch and earlier ones only: a checkpoint never runs ahead.
            st.offsets = job.state.offsets.clone();
            for (topic, partition, next) in flight.next_offsets {
                let e = st.offsets.entry(tp_key(&topic, partition)).or_insert(0);
                *e = (*e).max(next);
            }
            send_checkpoint(
                self.cfg,
                &self.run.producer,
                &self.run.source,
                job.spec.table,
                &st,
            )?;
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
        kafka::send(&self.run.producer, rec)
    }
}

/// Hands a table's checkpoint to the producer (its delivery failure, if any, shows in
/// [`Deliveries::first_failure`]).
pub(super) fn send_checkpoint(
    cfg: &Config,
    producer: &ThreadedProducer<DeliveryContext>,
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
pub(super) fn spawn_read(
    db: &Source,
    spec: &'static CursorTable,
    after: Cursor,
    limit: usize,
) -> tokio::task::JoinHandle<Result<Keyset>> {
    let db = db.clone();
    tokio::spawn(async move { db.fetch_after(spec, after, limit).await })
}

/// A message that the broker did not take, as an error naming the brokers.
pub(super) fn delivery_failure(cfg: &Config, what: String) -> Error {
    Error::Kafka {
        brokers: cfg.kafka.brokers.clone(),
        what,
        source: KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
    }
}

/// Test hook: `JOBS_FAILPOINT=ingest-before-checkpoint:N` aborts the process after the N-th
/// batch is acknowledged and before its checkpoint is written, the worst moment to crash.
/// The variable is read once, when the run starts.
struct Failpoint {
    abort_at: Option<u64>,
    batches: AtomicU64,
}

impl Failpoint {
    fn from_env() -> Failpoint {
        let abort_at = std::env::var("JOBS_FAILPOINT")
            .ok()
            .and_then(|spec| spec.strip_prefix("ingest-before-checkpoint:")?.parse().ok());
        Failpoint {
            abort_at,
            batches: AtomicU64::new(0),
        }
    }

    fn before_checkpoint(&self) {
        let Some(at) = self.abort_at else { return };
        let n = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
        if n == at {
            eprintln!("failpoint ingest-before-checkpoint:{n}: aborting");
            std::process::abort();
        }
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
