//! The consume limit, for benchmarks: a bare rdkafka consumer that reads every partition of
//! TOPIC from the beginning to its end and only counts. Prints `consumed N msgs in S s = R msgs/s`.
//!
//! `cargo run --release --example count_consumer -- BROKERS TOPIC PARTITIONS [KEY=VALUE ...]`
//! (extra librdkafka properties, e.g. the fetch sizes `jobs stream` uses).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions, props @ ..] = args.as_slice() else {
        anyhow::bail!("usage: count_consumer BROKERS TOPIC PARTITIONS [KEY=VALUE ...]");
    };
    let partitions: i32 = partitions.parse()?;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", "bench-count")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false");
    for p in props {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{p}: expected KEY=VALUE"))?;
        cfg.set(k, v);
    }
    let c: BaseConsumer = cfg.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let start = Instant::now();
    let (mut n, mut bytes, mut eof) = (0u64, 0usize, HashSet::new());
    while eof.len() < partitions as usize {
        match c.poll(Duration::from_secs(10)) {
            None => anyhow::bail!("no message for 10 s"),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                use rdkafka::Message;
                n += 1;
                bytes += m.payload().map_or(0, |p| p.len());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "consumed {n} msgs ({bytes} bytes) in {secs:.2} s = {:.0} msgs/s",
        n as f64 / secs
    );
    Ok(())
}
