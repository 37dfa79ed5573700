//! The broker's produce limit, for benchmarks: sends N pre-encoded messages of a given size
//! with the same producer settings as `jobs ingest` (idempotent, acks=all, linger 20 ms) and
//! prints `produced N msgs in S s = R msgs/s`.
//!
//! `cargo run --release --example produce_bench -- BROKERS TOPIC COUNT SIZE`

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

// The same allocator as the `jobs` binary, so the limit is measured on equal terms.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, count, size] = args.as_slice() else {
        anyhow::bail!("usage: produce_bench BROKERS TOPIC COUNT SIZE");
    };
    let (count, size): (u64, usize) = (count.parse()?, size.parse()?);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let payload = vec![7u8; size];
    let start = Instant::now();
    for i in 0..count {
        let key = (i % 36).to_string();
        jobs::io::kafka::send(
            &producer,
            BaseRecord::to(topic).key(&key).payload(payload.as_slice()),
        )?;
    }
    producer.flush(Duration::from_secs(120))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {count} msgs in {secs:.2} s = {:.0} msgs/s",
        count as f64 / secs
    );
    Ok(())
}
