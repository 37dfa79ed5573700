//! Carrying out what the core decided: a flush plan written to the lake, the stores and
//! Kafka in the documented order, and messages handed to the producer with the headers
//! recovery reads back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::StreamContext;
use super::partition::OutMsg;
use super::plan::FlushPlan;
use super::sinks::{RedisSink, SqlSink};
use crate::config::Config;
use crate::io::delivery::{Deliveries, DeliveryContext, NO_BATCH};
use crate::io::kafka::{self, partition_for};
use crate::io::lake::Lake;
use crate::io::lock::LakeLock;
use crate::io::retry::retry;
use crate::metrics::StreamMetrics;
use crate::shutdown::Shutdown;
use crate::{Error, Result};

/// Everything the shell writes to, and what it knows of the outputs.
pub(super) struct Io<'a> {
    pub(super) cfg: &'a Config,
    pub(super) lake: Lake,
    pub(super) producer: Arc<ThreadedProducer<DeliveryContext>>,
    pub(super) deliveries: Deliveries,
    pub(super) sql: Option<SqlSink>,
    pub(super) redis: Option<RedisSink>,
    pub(super) metrics: Arc<StreamMetrics>,
    /// Partition counts of the source and output topics.
    pub(super) out_parts: HashMap<String, i32>,
    /// The next offset of every output partition we have written to (max over runs).
    pub(super) output_offsets: BTreeMap<String, i64>,
    /// Held shared while table files are put or deleted: compaction exchanges a folder only
    /// when nobody holds it.
    pub(super) writers: LakeLock,
    /// Ends the retries of a dependency that is down.
    pub(super) shutdown: Shutdown,
}

impl Io<'_> {
    pub(super) fn checkpoint_path(&self, p: i32) -> String {
        format!("{}/p{p}.json", super::state_dir(self.cfg))
    }
    pub(super) fn intent_path(&self, p: i32) -> String {
        format!("{}/p{p}.intent.json", super::state_dir(self.cfg))
    }

    /// Hands messages to the producer, tagged with the group, the source partition and their
    /// idempotency keys (what recovery reads back); blocking.
    pub(super) fn send(&self, p: i32, msgs: &[OutMsg]) -> Result<()> {
        let (group, sp) = (self.cfg.stream.group_id.as_str(), p.to_string());
        // Messages come in runs of one topic: look its partition count up once a run.
        let mut parts: (&str, i32) = ("", 1);
        for m in msgs {
            let mut h = OwnedHeaders::new_with_capacity(3 + m.headers.len())
                .insert(Header {
                    key: "jobs.idempotency_key",
                    value: Some(m.idempotency_key.as_str()),
                })
                .insert(Header {
                    key: "jobs.group",
                    value: Some(group),
                })
                .insert(Header {
                    key: "jobs.source_partition",
                    value: Some(sp.as_str()),
                });
            for (k, v) in &m.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_str()),
                });
            }
            if parts.0 != &*m.topic {
                parts = (
                    &m.topic,
                    self.out_parts.get(&*m.topic).copied().unwrap_or(1),
                );
            }
            let n = parts.1;
            kafka::send(
                &self.producer,
                BaseRecord::with_opaque_to(&m.topic, NO_BATCH)
                    .key(m.key.as_slice())
                    .partition(partition_for(&m.key, n))
                    .payload(m.value.as_slice())
                    .headers(h),
            )
            .map_err(kafka::err(&self.cfg.kafka, format!("send to {}", m.topic)))?;
        }
        Ok(())
    }

    /// Waits for every output acknowledgement and records the output offsets; blocking.
    pub(super) fn wait_for_acks(&mut self) -> Result<()> {
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(kafka::err(
                &self.cfg.kafka,
                "wait for output acknowledgements",
            ))?;
        if let Some((n, first)) = self.deliveries.failures()? {
            return Err(Error::Kafka {
                brokers: self.cfg.kafka.brokers.clone(),
                what: format!(
                    "{n} output messages not delivered, first: {first}; the checkpoint did not move"
                ),
                source: KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::Fail),
            });
        }
        for (t, q, next) in self.deliveries.take_next_offsets()? {
            let e = self.output_offsets.entry(format!("{t}/{q}")).or_insert(0);
            *e = (*e).max(next);
        }
        Ok(())
    }

    /// Carries a flush plan out: intent, files, SQL and Redis, Kafka, acknowledgements, the
    /// totals snapshot, the checkpoint; then the intent goes and the consumer group hears of
    /// the progress (the checkpoint is the truth). A step whose dependency is down is retried
    /// until it answers (every step is idempotent: the same objects, upserts and sorted-set
    /// members again); the checkpoint moves only after all of them.
    pub(super) async fn execute(
        &mut self,
        plan: FlushPlan,
        consumer: &StreamConsumer<StreamContext>,
    ) -> Result<()> {
        let (p, next) = (plan.partition, plan.checkpoint.next_offset);
        let intent = serde_json::to_vec(&plan.intent)
            .map_err(|e| Error::Internal(format!("intent: {e}")))?;
        self.put(&self.intent_path(p), intent.into()).await?;
        let files: Vec<(String, Bytes)> = plan
            .files
            .into_iter()
            .map(|(path, data)| (path, Bytes::from(data)))
            .collect();
        let (lake, m, stop) = (&self.lake, &self.metrics, &self.shutdown);
        retry("lake", &m.lake, stop, || async {
            let _held = tokio::task::block_in_place(|| self.writers.shared())?;
            futures::future::try_join_all(
                files
                    .iter()
                    .map(|(path, data)| async move { lake.put(path, data.clone()).await }),
            )
            .await
        })
        .await?;

        let tops = plan.stores.tops();
        if let Some(sql) = &self.sql {
            let (countries, cards) = plan.stores.labels();
            let n = retry("sql", &m.sql, stop, || sql.write(&countries, &cards, &tops)).await?;
            m.sql_rows.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(redis) = &self.redis {
            let n = retry("redis", &m.redis, stop, || redis.write_top(&tops)).await?;
            m.redis_commands.fetch_add(n as u64, Ordering::Relaxed);
        }
        drop(tops);

        tokio::task::block_in_place(|| {
            self.send(p, &plan.messages)?;
            self.wait_for_acks()
        })?;
        if let Some((path, bytes)) = plan.totals_file {
            self.put(&path, bytes.into()).await?;
        }
        let mut ck = plan.checkpoint;
        ck.output_offsets = self.output_offsets.clone();
        let ck =
            serde_json::to_vec(&ck).map_err(|e| Error::Internal(format!("checkpoint: {e}")))?;
        self.put(&self.checkpoint_path(p), ck.into()).await?;
        let intent = self.intent_path(p);
        retry("lake", &self.metrics.lake, &self.shutdown, || {
            self.lake.delete(&intent)
        })
        .await?;
        if let Some(next) = next {
            let mut tpl = TopicPartitionList::new();
            let _ =
                tpl.add_partition_offset(&self.cfg.topics.product_sales, p, Offset::Offset(next));
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(message = "Progress commit failed (the checkpoint is the truth).", error = %e);
            }
        }
        Ok(())
    }

    /// Writes one lake object, waiting out an outage of the lake.
    async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        retry("lake", &self.metrics.lake, &self.shutdown, || {
            self.lake.put(rel, bytes.clone())
        })
        .await
    }
}
