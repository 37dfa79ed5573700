//! The broker's produce limit, for benchmarks: sends N pre-encoded messages of a given size
//! with the same producer settings as `jobs ingest` (idempotent, acks=all, linger 20 ms, the
//! partition chosen by the key's murmur2 hash) and prints `produced N msgs in S s = R msgs/s`.
//! MODE `send` hands messages over one at a time (`rdkafka`'s `send`), `batch` a partition's
//! run at a time (`jobs::io::produce::Batcher`, as ingest does).
//!
//! `cargo run --release --example produce_bench -- BROKERS TOPIC COUNT SIZE [send|batch]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, NoCustomPartitioner, Producer, ThreadedProducer};
use rdkafka::{ClientContext, producer::ProducerContext};

// The same allocator as the `jobs` binary, so the limit is measured on equal terms.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts delivery reports.
#[derive(Default)]
struct Counting(AtomicU64);
impl ClientContext for Counting {}
impl ProducerContext<NoCustomPartitioner> for Counting {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, _: usize) {
        if let Err((e, _)) = r {
            eprintln!("delivery failed: {e}");
            std::process::exit(1);
        }
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, count, size, mode) = match args.as_slice() {
        [_, b, t, c, s] => (b, t, c, s, "send"),
        [_, b, t, c, s, m] => (b, t, c, s, m.as_str()),
        _ => anyhow::bail!("usage: produce_bench BROKERS TOPIC COUNT SIZE [send|batch]"),
    };
    let (count, size): (u64, usize) = (count.parse()?, size.parse()?);
    let producer: ThreadedProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counting::default())?;
    // Twice: the second answer comes from the broker proper, which has librdkafka ask for the
    // producer id at once (see `jobs::io::kafka::partition_counts_with`).
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    anyhow::ensure!(parts > 0, "topic {topic} does not exist");
    let payload = vec![7u8; size];
    let mut batcher = jobs::io::produce::Batcher::new(&producer, 4096);
    let start = Instant::now();
    for i in 0..count {
        let key = (i % 36).to_string();
        let partition = jobs::io::kafka::partition_for(key.as_bytes(), parts);
        match mode {
            "send" => jobs::io::kafka::send(
                &producer,
                BaseRecord::with_opaque_to(topic, 0)
                    .key(&key)
                    .partition(partition)
                    .payload(payload.as_slice()),
            )?,
            "batch" => batcher.push(topic, partition, key.as_bytes(), &payload, 0)?,
            other => anyhow::bail!("unknown mode {other}: send or batch"),
        }
    }
    batcher.flush()?;
    // As ingest ends a table: the rest goes out now, not after linger.ms.
    jobs::io::produce::flush_now(&producer, Duration::from_secs(120))?;
    let acked = producer.context().0.load(Ordering::Relaxed);
    anyhow::ensure!(acked == count, "{acked} of {count} acknowledged");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {count} msgs in {secs:.2} s = {:.0} msgs/s",
        count as f64 / secs
    );
    Ok(())
}
