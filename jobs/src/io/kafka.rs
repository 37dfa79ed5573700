//! Kafka clients (rdkafka/librdkafka), configured once from [`KafkaConfig`], and topic
//! creation. Works with any Kafka-protocol broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
pub use crate::io::broker_health::{broker_answered, log_client_error, log_librdkafka, transport};
use crate::io::delivery::{Deliveries, DeliveryContext};
use crate::{Error, Result};

/// The base client configuration: brokers plus the user's extra properties.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    // Fail fast with a clear error when the broker is down, instead of retrying forever.
    c.set("socket.connection.setup.timeout.ms", "10000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Wraps a Kafka error with the brokers and what we were doing.
pub fn err(cfg: &KafkaConfig, what: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let brokers = cfg.brokers.clone();
    let what = what.into();
    move |source| Error::Kafka {
        brokers,
        what,
        source,
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Topic-level configs such as `cleanup.policy=compact`.
    pub configs: Vec<(&'static str, &'static str)>,
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn create_topics(cfg: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg)
        .create()
        .map_err(err(cfg, "create admin client"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            );
            for (k, v) in &t.configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let results = tokio::time::timeout(Duration::from_secs(30), admin.create_topics(&new, &opts))
        .await
        .map_err(|_| Error::Kafka {
            brokers: cfg.brokers.clone(),
            what: "create topics".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut),
        })?
        .map_err(err(cfg, "create topics"))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(message = "Created topic.", topic = %name),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(message = "Topic exists.", topic = %name)
            }
            Err((name, code)) => {
                return Err(Error::Kafka {
                    brokers: cfg.brokers.clone(),
                    what: format!("create topic {name}"),
                    source: KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

/// Fails with a clear error unless the cluster answers a metadata request within `timeout`.
pub fn check_reachable(cfg: &KafkaConfig, timeout: Duration) -> Result<()> {
    let c: BaseConsumer = client_config(cfg)
        .create()
        .map_err(err(cfg, "create client"))?;
    c.fetch_metadata(None, timeout).map_err(err(
        cfg,
        "reach the cluster (is the broker running? try scripts/stack up)",
    ))?;
    Ok(())
}

/// An idempotent producer (`acks=all`, ordered per partition) whose deliveries are tracked in
/// `deliveries`.
pub fn idempotent_producer(
    cfg: &KafkaConfig,
    deliveries: Deliveries,
) -> Result<ThreadedProducer<DeliveryContext>> {
    idempotent_producer_with(cfg, DeliveryContext(deliveries))
}

/// An idempotent producer (`acks=all`, ordered per partition) with its own delivery context.
pub fn idempotent_producer_with<C: ProducerContext + 'static>(
    cfg: &KafkaConfig,
    context: C,
) -> Result<ThreadedProducer<C>> {
    let mut c = client_config(cfg);
    c.set("enable.idempotence", "true").set("acks", "all");
    // Batching defaults; `kafka.properties` overrides them.
    for (k, v) in [
        // 20 ms: fewer, fuller produce requests; measured less CPU for us and the broker
        // than 5 ms at the same or better throughput (README, Benchmarks).
        ("linger.ms", "20"),
        ("batch.num.messages", "10000"),
        ("queue.buffering.max.messages", "500000"),
        ("queue.buffering.max.kbytes", "1048576"),
    ] {
        if !cfg.properties.contains_key(k) {
            c.set(k, v);
        }
    }
    c.create_with_context(context)
        .map_err(err(cfg, "create producer"))
}

/// Kafka's default partitioner: murmur2 of the key, as the Java client and librdkafka's
/// `murmur2_random` compute it.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Enqueues one message, waiting while librdkafka's queue is full.
pub fn send<C: ProducerContext + 'static, K: rdkafka::message::ToBytes + ?Sized>(
    producer: &ThreadedProducer<C>,
    mut rec: BaseRecord<'_, K, [u8], C::DeliveryOpaque>,
) -> std::result::Result<(), KafkaError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A consumer for reading partitions to their end (recovery scans): no group commits, no
/// held fetches.
pub fn scan_consumer(cfg: &KafkaConfig, group: &str) -> Result<BaseConsumer<QuietContext>> {
    let mut c = client_config(cfg);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // EOF, not data, is what a scan waits for: do not let the broker hold fetches.
        .set("fetch.wait.max.ms", "20");
    c.create_with_context(QuietContext)
        .map_err(err(cfg, "create reader"))
}

/// A client context that does not log end-of-partition as an error: for consumers that
/// read to the end on purpose.
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// Reads `assignment` (topic, partition, start offset) until every partition reports its
/// end, keeping what `f` makes of each message: in topic order, and in offset order within a
/// partition. Blocking.
///
/// End-of-partition events name the partition but not the topic, so each topic is read by a
/// consumer of its own; the topics are read in parallel (an empty partition's end takes a
/// fetch round trip or more, so one topic after another adds up on recovery).
pub fn read_to_end<T: Send>(
    cfg: &KafkaConfig,
    group: &str,
    assignment: &[(String, i32, Offset)],
    what: &str,
    f: impl Fn(&BorrowedMessage<'_>) -> Option<T> + Sync,
) -> Result<Vec<T>> {
    let mut topics: Vec<&str> = assignment.iter().map(|a| a.0.as_str()).collect();
    topics.dedup();
    let f = &f;
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = topics
            .iter()
            .map(|topic| {
                let parts: Vec<&(String, i32, Offset)> =
                    assignment.iter().filter(|a| a.0 == *topic).collect();
                scope.spawn(move || read_topic_to_end(cfg, group, topic, &parts, what, f))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal(format!("reader of {what} panicked"))))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn read_topic_to_end<T>(
    cfg: &KafkaConfig,
    group: &str,
    topic: &str,
    parts: &[&(String, i32, Offset)],
    what: &str,
    f: &(impl Fn(&BorrowedMessage<'_>) -> Option<T> + Sync),
) -> Result<Vec<T>> {
    let consumer = scan_consumer(cfg, group)?;
    let missing = || format!("read {what} from {topic} (does it exist? run `jobs init`)");
    // Where each partition's fetch starts. Tansu 0.6.0 bends two rules that a scan from the
    // start offset to the reported end would rely on:
    // * its end offset (ListOffsets, latest) is the base offset of the partition's newest
    //   record batch plus one, not the offset after its last message, so a partition whose
    //   reported end is at or before the start can still hold messages past it (a checkpoint's
    //   offset often falls inside the newest batch: skipping such partitions made recovery
    //   resend a whole batch);
    // * a fetch starting inside a record batch is answered from the next batch on, so the
    //   messages from the start to the end of its batch were missed.
    // So every partition that ever held a message is read: from the newest batch's base when
    // the start is at or past it (on a broker with exact end offsets, that is one message),
    // else from up to a record batch before the start. What precedes the start is fetched but
    // not handed to `f`. (The reported start offset is not used as a floor either: it is the
    // oldest batch *written*, which with several writers need not be the lowest offset. A
    // fetch below a real broker's log start is reset to it: `auto.offset.reset=earliest`.)
    let mut todo = Vec::new();
    let mut first = HashMap::new();
    for &&(ref t, p, o) in parts {
        let (low, high) = consumer
            .fetch_watermarks(t, p, Duration::from_secs(30))
            .map_err(|e| err(cfg, missing())(e))?;
        let start = match o {
            // Not the reported start (see above): offset 0, reset to the log start if below it.
            Offset::Beginning => Some(0),
            Offset::Offset(x) => Some(x),
            _ => None,
        };
        if high <= 0 {
            // Never written to.
            tracing::debug!(message = "Scan range: empty.", what, topic = %t, partition = p);
            continue;
        }
        let from = match start {
            Some(s) if s >= high - 1 => Offset::Offset(high - 1),
            Some(s) => Offset::Offset((s - SCAN_LOOKBACK).max(0)),
            None => o,
        };
        if let Some(s) = start {
            first.insert(p, s);
        }
        tracing::debug!(message = "Scan range.", what, topic = %t, partition = p, start = ?start, from = ?from, low, high);
        todo.push((t, p, from));
    }
    if todo.is_empty() {
        close_in_background(consumer);
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in &todo {
        tpl.add_partition_offset(t, *p, *o)
            .map_err(err(cfg, format!("assign {what}")))?;
    }
    consumer
        .assign(&tpl)
        .map_err(err(cfg, format!("assign {what}")))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut eof = std::collections::HashSet::new();
    let mut out = Vec::new();
    // Per partition: messages handed on and the last offset seen. Tansu 0.6.0 answers a
    // fetch that starts inside a record batch with the following batches, more than once
    // within one response; a message at or before the last one seen is such a repeat.
    let mut seen: std::collections::BTreeMap<i32, (u64, i64)> = Default::default();
    // A partition's end is the high watermark of the fetch response (exact on Tansu too:
    // it is moved before the batch is stored, so a fetch waits for the batch rather than
    // reporting the end early).
    while eof.len() < todo.len() {
        if Instant::now() > deadline {
            return Err(Error::Kafka {
                brokers: cfg.brokers.clone(),
                what: format!("read {what} ({topic}) to its end within 120 s"),
                source: KafkaError::NoMessageReceived,
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => return Err(err(cfg, missing())(e)),
            Some(Ok(m)) => {
                let (p, o) = (m.partition(), m.offset());
                let e = seen.entry(p).or_insert((0, -1));
                if o <= e.1 {
                    continue;
                }
                *e = (e.0 + 1, o);
                if first.get(&p).is_none_or(|s| o >= *s) {
                    out.extend(f(&m));
                }
            }
        }
    }
    close_in_background(consumer);
    tracing::debug!(message = "Scanned to the end.", what, topic, messages_and_last_offset = ?seen);
    Ok(out)
}

/// How many messages before its start offset a scan fetches from: the most a record batch
/// holds from librdkafka (`batch.num.messages`, 10,000 by default and in our producers).
const SCAN_LOOKBACK: i64 = 10_000;

/// The end offset (high watermark) of each `(topic, partition count)`'s partitions. Blocking.
pub fn end_offsets(cfg: &KafkaConfig, topics: &[(&str, i32)]) -> Result<Vec<(String, i32, i64)>> {
    let consumer = scan_consumer(cfg, "jobs-end-offsets")?;
    let mut out = Vec::new();
    let mut last = Vec::new();
    for &(t, parts) in topics {
        for p in 0..parts {
            let (_, high) = consumer
                .fetch_watermarks(t, p, Duration::from_secs(30))
                .map_err(err(cfg, format!("read the end offset of {t}/{p}")))?;
            out.push((t.to_string(), p, high));
            if high > 0 {
                last.push((t.to_string(), p, Offset::Offset(high - 1)));
            }
        }
    }
    close_in_background(consumer);
    // Tansu 0.6.0 reports the newest record batch's base offset plus one (see
    // `read_topic_to_end`): read from there to the real end.
    let seen = read_to_end(cfg, "jobs-end-offsets", &last, "end offsets", |m| {
        Some((m.topic().to_string(), m.partition(), m.offset()))
    })?;
    for (t, p, o) in seen {
        if let Some(e) = out.iter_mut().find(|e| e.0 == t && e.1 == p) {
            e.2 = e.2.max(o + 1);
        }
    }
    Ok(out)
}

/// Closes a scan consumer without waiting: rdkafka's close polls for at least 100 ms, and a
/// consumer that only had partitions assigned (no group membership, no commits) leaves
/// nothing behind that anyone waits for.
fn close_in_background(consumer: BaseConsumer<QuietContext>) {
    std::thread::spawn(move || drop(consumer));
}

/// Partition count of each topic; an error naming the first one that does not exist.
pub fn partition_counts(cfg: &KafkaConfig, topics: &[&str]) -> Result<HashMap<String, i32>> {
    let c: BaseConsumer = client_config(cfg)
        .create()
        .map_err(err(cfg, "create metadata client"))?;
    partition_counts_with(c.client(), cfg, topics)
}

/// As [`partition_counts`], asking through an existing client. For an idempotent producer
/// this also hurries its producer id: librdkafka asks for one when a metadata response
/// arrives from a broker it has connected to, and otherwise only every 500 ms (measured
/// here: the first send waited 0.5-1.0 s; after two metadata requests, ~60 ms).
pub fn partition_counts_with<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &KafkaConfig,
    topics: &[&str],
) -> Result<HashMap<String, i32>> {
    let mut out = HashMap::new();
    for topic in topics {
        let md = client
            .fetch_metadata(Some(topic), Duration::from_secs(15))
            .map_err(err(
                cfg,
                format!("read metadata of {topic} (is the broker running? try scripts/stack up)"),
            ))?;
        let n = md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n == 0 {
            return Err(Error::Kafka {
                brokers: cfg.brokers.clone(),
                what: format!("topic {topic} does not exist: run `jobs init`"),
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        out.insert(topic.to_string(), n as i32);
    }
    Ok(out)
}

/// The offsets of `topic`/`partition` a consumer expected at `cursor` that the broker no
/// longer holds (retention removed them while the consumer was down), asked after a gap
/// that outlasted its steps back ([`crate::offsets::Position::Gap`]'s `ask_start`). The
/// cursor moves to the log start and one error line names what was lost; `None` (the gap is
/// an ordinary one: seek back again) when the log start is not past the cursor, cannot be
/// read, or is not `offset`, the message at hand. The broker must show the loss itself: a
/// seek below the log start is reset to it (`auto.offset.reset = earliest`), so the gap's
/// message is the log start. A log start reported above offsets still delivered (Tansu's is
/// the oldest batch written, see [`read_to_end`]) never skips anything.
pub fn skip_removed<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
    skip: impl FnOnce(i64) -> Option<i64>,
) -> Option<(i64, i64)> {
    let (low, _) = tokio::task::block_in_place(|| {
        consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))
    })
    .inspect_err(
        |e| tracing::debug!(message = "Cannot read the log start.", topic, partition, error = %e),
    )
    .ok()?;
    if low != offset {
        return None;
    }
    let lost = skip(low)?;
    tracing::error!(
        message = "Offsets were removed by the broker's retention before they were consumed; resuming at the log start.",
        topic,
        partition,
        first_lost = low - lost,
        lost,
        log_start = low,
    );
    Some((low, lost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Kafka's own UtilsTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert!((0..3).contains(&partition_for(b"17", 3)));
    }
}
