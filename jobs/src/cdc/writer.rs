//! Sending what the capture core decided, and checkpointing only what the broker
//! acknowledged.
//!
//! Messages go out in batches that end between transactions. A batch's resume point is
//! checkpointed once every message of it and of every batch before it is acknowledged
//! (`io::delivery` counts the reports per batch), so a checkpoint never covers a message that
//! could still be lost, and a restart from it loses nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::capture::Message;
use super::metrics::CdcMetrics;
use super::position::BinlogPos;
use super::state::{Checkpoint, H_CAPTURE, H_POS, SnapshotProgress, tp_key};
use crate::config::KafkaConfig;
use crate::io::delivery::{Deliveries, DeliveryContext, NO_BATCH};
use crate::io::kafka;
use crate::{Error, Result};

/// A batch closes at the first transaction boundary after it holds this many messages ...
const BATCH_MESSAGES: u64 = 5000;
/// ... or has been open this long.
const BATCH_AGE: Duration = Duration::from_millis(50);

/// What becomes true once a batch (or, without one, everything before it) is acknowledged.
#[derive(Debug, Clone)]
pub struct Mark {
    pub resume: BinlogPos,
    pub gtid: Option<String>,
    pub snapshot: Option<SnapshotProgress>,
}

struct Pending {
    batch: Option<usize>,
    mark: Mark,
    changes: u64,
}

pub struct Writer {
    pub producer: ThreadedProducer<DeliveryContext>,
    deliveries: Deliveries,
    kafka: KafkaConfig,
    state_topic: String,
    next_batch: usize,
    /// The batch being filled: id, messages, changes, opened at.
    open: Option<(usize, u64, u64, Instant)>,
    pending: VecDeque<Pending>,
    /// What is acknowledged: the checkpoint to write.
    pub acked: Checkpoint,
    written: Instant,
    dirty: bool,
    interval: Duration,
    metrics: Arc<CdcMetrics>,
}

impl Writer {
    pub fn new(
        kafka: &KafkaConfig,
        state_topic: &str,
        acked: Checkpoint,
        interval: Duration,
        metrics: Arc<CdcMetrics>,
    ) -> Result<Writer> {
        let deliveries = Deliveries::default();
        // Gapless: a message that fails makes the producer fail, so no later message of its
        // partition is delivered after it (recovery takes "at or before the partition's last"
        // for "delivered").
        let mut gapless = kafka.clone();
        gapless
            .properties
            .insert("enable.gapless.guarantee".into(), "true".into());
        let producer = kafka::idempotent_producer(&gapless, deliveries.clone())?;
        Ok(Writer {
            producer,
            deliveries,
            kafka: kafka.clone(),
            state_topic: state_topic.to_string(),
            next_batch: NO_BATCH + 1,
            open: None,
            pending: VecDeque::new(),
            acked,
            written: Instant::now(),
            dirty: false,
            interval,
            metrics,
        })
    }

    /// Hands one message to the producer, in the open batch.
    pub fn send(&mut self, m: &Message) -> Result<()> {
        let (batch, n, changes, _) = match &mut self.open {
            Some(o) => o,
            None => {
                let id = self.next_batch;
                self.next_batch += 1;
                self.deliveries.open(id)?;
                self.open.insert((id, 0, 0, Instant::now()))
            }
        };
        let pos = m.ordinal.key();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: H_POS,
                value: Some(pos.as_bytes()),
            })
            .insert(Header {
                key: H_CAPTURE,
                value: Some(self.acked.name.as_bytes()),
            });
        let mut rec = BaseRecord::with_opaque_to(&m.topic, *batch)
            .partition(m.partition)
            .key(&m.key[..])
            .headers(headers);
        if let Some(v) = &m.value {
            rec = rec.payload(&v[..]);
        }
        kafka::send(&self.producer, rec)
            .map_err(kafka::err(&self.kafka, format!("send to {}", m.topic)))?;
        *n += 1;
        if matches!(m.op, "c" | "u" | "d") {
            *changes += 1;
        }
        self.metrics.count(&m.table, m.op);
        Ok(())
    }

    /// A transaction boundary: the open batch closes here if it is full or old enough (or
    /// `force`); without an open batch the position itself is pending.
    pub fn boundary(&mut self, mark: Mark, force: bool) -> Result<()> {
        match self.open {
            Some((id, n, changes, at)) => {
                if force || n >= BATCH_MESSAGES || at.elapsed() >= BATCH_AGE {
                    self.deliveries.close(id, n)?;
                    self.open = None;
                    self.pending.push_back(Pending {
                        batch: Some(id),
                        mark,
                        changes,
                    });
                }
            }
            None => match self.pending.back_mut() {
                Some(p) if p.batch.is_none() => p.mark = mark,
                _ => self.pending.push_back(Pending {
                    batch: None,
                    mark,
                    changes: 0,
                }),
            },
        }
        self.settle()
    }

    /// Takes what is acknowledged, and checkpoints it when the interval is up.
    pub fn settle(&mut self) -> Result<()> {
        while let Some(front) = self.pending.front() {
            match front.batch {
                None => {}
                Some(_) => match self.deliveries.try_take_oldest() {
                    Ok(Some(flight)) => {
                        for (t, p, next) in flight.next_offsets {
                            let e = self.acked.offsets.entry(tp_key(&t, p)).or_insert(next);
                            *e = (*e).max(next);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(self.failed(e)),
                },
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.acked.resume = Some(p.mark.resume);
            self.acked.gtid = p.mark.gtid;
            self.acked.snapshot = p.mark.snapshot;
            self.acked.changes += p.changes;
            self.dirty = true;
        }
        if self.dirty && self.written.elapsed() >= self.interval {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn failed(&self, e: String) -> Error {
        Error::Kafka {
            brokers: self.kafka.brokers.clone(),
            what: e,
            source: rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
            ),
        }
    }

    /// Writes the acknowledged position to the state topic now.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.acked.written_ms = chrono::Utc::now().timestamp_millis();
        let value = serde_json::to_vec(&self.acked).unwrap_or_default();
        // Partition 0, where `state::load` reads (a state topic may have more).
        let rec = BaseRecord::with_opaque_to(&self.state_topic, NO_BATCH)
            .partition(0)
            .key(self.acked.name.as_bytes())
            .payload(&value[..]);
        kafka::send(&self.producer, rec)
            .map_err(kafka::err(&self.kafka, "write the cdc checkpoint"))?;
        self.written = Instant::now();
        self.dirty = false;
        self.metrics.checkpoint(&self.acked);
        Ok(())
    }

    /// Writes the checkpoint and waits for the broker to acknowledge it: before a first run
    /// sends anything, so that a crash at any later moment restarts from it.
    pub fn checkpoint_durably(&mut self) -> Result<()> {
        self.checkpoint()?;
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(kafka::err(&self.kafka, "write the first cdc checkpoint"))?;
        match self.deliveries.first_failure()? {
            Some(e) => Err(self.failed(format!("write the first cdc checkpoint: {e}"))),
            None => Ok(()),
        }
    }

    /// Waits for every batch sent (the open one is left out unless `mark` closes it),
    /// checkpoints, and flushes the producer.
    pub fn finish(&mut self, mark: Option<Mark>, timeout: Duration) -> Result<()> {
        if let Some(mark) = mark {
            self.boundary(mark, true)?;
        }
        let deadline = Instant::now() + timeout;
        while self.pending.iter().any(|p| p.batch.is_some()) {
            self.settle()?;
            if Instant::now() >= deadline {
                return Err(self.failed(format!("batches not acknowledged within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.settle()?;
        self.checkpoint()?;
        self.producer
            .flush(timeout)
            .map_err(kafka::err(&self.kafka, "flush the producer"))?;
        if let Some(e) = self.deliveries.first_failure()? {
            return Err(self.failed(format!("write the last checkpoint: {e}; rerun to resume")));
        }
        Ok(())
    }
}
