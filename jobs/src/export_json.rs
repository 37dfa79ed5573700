//! `jobs export-json` (seed 000's consumer): a consumer group that decodes the Avro on a
//! topic and appends one JSON object per line to a file per partition.
//!
//! Offsets are stored only after the lines they cover are flushed and synced to disk, and
//! committed from there (also when a partition is revoked in a rebalance), so a crash can
//! repeat lines but never lose one. Several instances in one group split the partitions.
//! A message that cannot be decoded goes to the dead-letter topic, unchanged, with the reason
//! in its headers.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::io::avro::{self, Reader, Registry, SchemaKind};
use crate::io::kafka;
use crate::records::{Product, ProductSale};
use crate::shutdown::Shutdown;
use crate::units::{format_cents, rfc3339_micros};
use crate::{Error, Result};

/// What to export and where.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The topic to read.
    pub topic: String,
    /// Folder for `<topic>-<partition>.jsonl` files.
    pub out_dir: PathBuf,
    /// Consumer group id.
    pub group_id: String,
    /// Exit once the assigned partitions reach the end offsets they had at start.
    pub until_idle: bool,
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub lines: u64,
    pub dead_lettered: u64,
}

/// Open files and the offsets whose lines are written but not yet synced.
#[derive(Default)]
struct Sink {
    dir: PathBuf,
    topic: String,
    files: HashMap<i32, BufWriter<File>>,
    pending: HashMap<i32, i64>,
}

impl Sink {
    fn writer(&mut self, partition: i32) -> Result<&mut BufWriter<File>> {
        if !self.files.contains_key(&partition) {
            let path = self.dir.join(format!("{}-{partition}.jsonl", self.topic));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::file(&path, e))?;
            self.files
                .insert(partition, BufWriter::with_capacity(1 << 20, f));
        }
        self.files
            .get_mut(&partition)
            .ok_or_else(|| Error::Internal("writer vanished".into()))
    }

    /// Flushes and syncs every file, then stores the offsets they cover.
    fn sync_and_store<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        for (p, w) in &mut self.files {
            let path = self.dir.join(format!("{}-{p}.jsonl", self.topic));
            w.flush().map_err(|e| Error::file(&path, e))?;
            w.get_ref().sync_data().map_err(|e| Error::file(&path, e))?;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in self.pending.drain() {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(next))
                .map_err(|e| Error::Internal(format!("offset list: {e}")))?;
        }
        consumer
            .store_offsets(&tpl)
            .map_err(|e| Error::Internal(format!("store offsets: {e}")))?;
        Ok(())
    }
}

/// Syncs and stores before partitions are taken away, so the next owner starts after the
/// last line this instance wrote.
struct ExportContext {
    sink: Arc<Mutex<Sink>>,
}

impl ClientContext for ExportContext {
    fn error(&self, error: KafkaError, reason: &str) {
        kafka::log_client_error(error, reason);
    }
}

impl ConsumerContext for ExportContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            if let Ok(mut sink) = self.sink.lock() {
                if let Err(e) = sink.sync_and_store(consumer) {
                    tracing::error!(message = "Could not sync before a rebalance.", error = %e);
                }
                sink.files.clear();
            }
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(message = "Commit before rebalance failed.", error = %e);
            }
        }
    }
}

#[derive(Serialize)]
struct ProductJson<'a> {
    id: i64,
    name: &'a str,
    category: &'a str,
    brand: &'a str,
    price: &'a RawValue,
    last_updated: String,
}

#[derive(Serialize)]
struct SaleJson<'a> {
    transaction_id: i64,
    product_id: i64,
    product_name: &'a str,
    product_category: &'a str,
    brand: &'a str,
    quantity_sold: i32,
    price_per_unit: &'a RawValue,
    transaction_date: String,
    customer_id: Option<i64>,
    country: Option<&'a str>,
    card_type: Option<&'a str>,
}

/// Decodes a Confluent-framed Avro message into one JSON line (without the newline).
/// Money is written as an exact JSON number with two decimals.
pub fn to_json_line(registry: &Registry, payload: &[u8]) -> Result<String> {
    let (id, body) = avro::unframe(payload)?;
    let kind = registry
        .kind(id)
        .ok_or_else(|| Error::Avro(format!("unknown schema id {id} ({})", registry.source)))?;
    let mut r = Reader::new(body);
    let line = match kind {
        SchemaKind::Product => {
            let p = Product::decode(&mut r)?;
            r.finish()?;
            let price = RawValue::from_string(format_cents(p.price_cents))
                .map_err(|e| Error::Internal(format!("price: {e}")))?;
            serde_json::to_string(&ProductJson {
                id: p.id,
                name: &p.name,
                category: &p.category,
                brand: &p.brand,
                price: &price,
                last_updated: rfc3339_micros(p.last_updated_micros),
            })
        }
        other @ (SchemaKind::WindowedSales
        | SchemaKind::ProductTotals
        | SchemaKind::TopProducts
        | SchemaKind::LowStockAlert
        | SchemaKind::SegmentSales
        | SchemaKind::SalesPrediction
        | SchemaKind::Recommendations) => {
            return Err(Error::Avro(format!(
                "schema id {id} is an output of jobs ({}); export-json reads sales and products",
                other.file()
            )));
        }
        SchemaKind::ProductSale => {
            let s = ProductSale::decode(&mut r)?;
            r.finish()?;
            let price = RawValue::from_string(format_cents(s.price_per_unit_cents))
                .map_err(|e| Error::Internal(format!("price: {e}")))?;
            serde_json::to_string(&SaleJson {
                transaction_id: s.transaction_id,
                product_id: s.product_id,
                product_name: &s.product_name,
                product_category: &s.product_category,
                brand: &s.brand,
                quantity_sold: s.quantity_sold,
                price_per_unit: &price,
                transaction_date: rfc3339_micros(s.transaction_date_micros),
                customer_id: s.customer_id,
                country: s.country.as_deref(),
                card_type: s.card_type.as_deref(),
            })
        }
    };
    line.map_err(|e| Error::Internal(format!("json: {e}")))
}

/// Runs the exporter until `shutdown` (or, with `until_idle`, until drained). Blocking.
pub fn run(
    cfg: &Config,
    registry: &Registry,
    opts: &RunOptions,
    shutdown: &Shutdown,
) -> Result<Stats> {
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::file(&opts.out_dir, e))?;
    let sink = Arc::new(Mutex::new(Sink {
        dir: opts.out_dir.clone(),
        topic: opts.topic.clone(),
        ..Default::default()
    }));
    let mut c = kafka::client_config(&cfg.kafka);
    c.set("group.id", &opts.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    if !cfg.kafka.properties.contains_key("session.timeout.ms") {
        c.set("session.timeout.ms", "10000");
    }
    let consumer: BaseConsumer<ExportContext> = c
        .create_with_context(ExportContext { sink: sink.clone() })
        .map_err(kafka::err(&cfg.kafka, "create consumer"))?;
    let dlq: BaseProducer = kafka::client_config(&cfg.kafka)
        .set("enable.idempotence", "true")
        .create()
        .map_err(kafka::err(&cfg.kafka, "create dead-letter producer"))?;
    check_topic(&consumer, &cfg.kafka, &opts.topic)?;
    consumer.subscribe(&[&opts.topic]).map_err(kafka::err(
        &cfg.kafka,
        format!("subscribe to {}", opts.topic),
    ))?;
    tracing::info!(message = "Exporting.", topic = %opts.topic, group = %opts.group_id, dir = %opts.out_dir.display());

    let mut stats = Stats::default();
    // Partitions whose end we reached and that have had nothing new since.
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut last_sync = Instant::now();
    while !shutdown.is_raised() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                handle(&m, registry, &sink, &dlq, cfg, &mut stats)?;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => {
                return Err(kafka::err(&cfg.kafka, format!("consume {}", opts.topic))(e));
            }
            None => {}
        }
        if last_sync.elapsed() > Duration::from_millis(500) {
            lock(&sink)?.sync_and_store(&consumer)?;
            last_sync = Instant::now();
        }
        if opts.until_idle && drained(&consumer, &opts.topic, &at_end) {
            break;
        }
    }
    lock(&sink)?.sync_and_store(&consumer)?;
    dlq.flush(Duration::from_secs(30))
        .map_err(kafka::err(&cfg.kafka, "flush dead letters"))?;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing to commit is not an error worth failing for.
        tracing::debug!(message = "Final commit.", error = %e);
    }
    tracing::info!(
        message = "Export finished.",
        lines = stats.lines,
        dead_lettered = stats.dead_lettered
    );
    Ok(stats)
}

fn lock(sink: &Arc<Mutex<Sink>>) -> Result<std::sync::MutexGuard<'_, Sink>> {
    sink.lock()
        .map_err(|_| Error::Internal("sink lock poisoned".into()))
}

fn handle(
    m: &BorrowedMessage<'_>,
    registry: &Registry,
    sink: &Arc<Mutex<Sink>>,
    dlq: &BaseProducer,
    cfg: &Config,
    stats: &mut Stats,
) -> Result<()> {
    let payload = m.payload().unwrap_or_default();
    match to_json_line(registry, payload) {
        Ok(line) => {
            let mut s = lock(sink)?;
            let w = s.writer(m.partition())?;
            w.write_all(line.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| {
                    Error::file(
                        Path::new(&format!("{}-{}.jsonl", m.topic(), m.partition())),
                        e,
                    )
                })?;
            stats.lines += 1;
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(message = "Dead-lettering a message.", topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = %reason);
            let (partition, offset) = (m.partition().to_string(), m.offset().to_string());
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "jobs.stage",
                    value: Some("export-json"),
                })
                .insert(Header {
                    key: "jobs.reason",
                    value: Some(reason.as_str()),
                })
                .insert(Header {
                    key: "jobs.topic",
                    value: Some(m.topic()),
                })
                .insert(Header {
                    key: "jobs.partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "jobs.offset",
                    value: Some(offset.as_str()),
                });
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&cfg.topics.dlq)
                .payload(payload)
                .headers(headers);
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            dlq.send(rec)
                .map_err(|(e, _)| kafka::err(&cfg.kafka, "send a dead letter")(e))?;
            // The dead letter must be durable before the offset moves past the message.
            dlq.flush(Duration::from_secs(30))
                .map_err(kafka::err(&cfg.kafka, "flush a dead letter"))?;
            stats.dead_lettered += 1;
        }
    }
    lock(sink)?.pending.insert(m.partition(), m.offset() + 1);
    Ok(())
}

/// Fails with a clear error unless `topic` exists.
fn check_topic<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &crate::config::KafkaConfig,
    topic: &str,
) -> Result<()> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka::err(cfg, format!("read metadata of {topic}")))?;
    let exists = md
        .topics()
        .first()
        .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
    if exists {
        Ok(())
    } else {
        Err(Error::Kafka {
            brokers: cfg.brokers.clone(),
            what: format!("topic {topic} does not exist (run `jobs init`)"),
            source: KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ),
        })
    }
}

/// Whether every partition assigned to this instance has reached its end. (The end is the
/// broker's own end-of-partition signal; some brokers answer offset queries inexactly.)
fn drained<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    at_end: &HashSet<i32>,
) -> bool {
    let Ok(assigned) = consumer.assignment() else {
        return false;
    };
    let parts: Vec<i32> = assigned
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    !parts.is_empty() && parts.iter().all(|p| at_end.contains(p))
}
