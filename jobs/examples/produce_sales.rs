//! Benchmark input: produces COUNT Avro `ProductSale` messages (Confluent framing, schema
//! id 1) for PRODUCTS products, keyed and partitioned like `jobs ingest`, with event times
//! rising 1 ms per event from 2026-11-01.
//!
//! `cargo run --release --example produce_sales -- BROKERS TOPIC PARTITIONS COUNT PRODUCTS`

use std::time::{Duration, Instant};

use jobs::io::avro::Writer;
use jobs::io::kafka::partition_for;
use jobs::records::ProductSale;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions, count, products] = args.as_slice() else {
        anyhow::bail!("usage: produce_sales BROKERS TOPIC PARTITIONS COUNT PRODUCTS");
    };
    let (partitions, count, products): (i32, i64, i64) =
        (partitions.parse()?, count.parse()?, products.parse()?);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let t0 = 1_793_491_200_000_000i64; // 2026-11-01T00:00:00Z
    let mut w = Writer::default();
    let start = Instant::now();
    for i in 0..count {
        let product_id = (i * 7919) % products + 1;
        let sale = ProductSale {
            transaction_id: i + 1,
            product_id,
            product_name: format!("Product {product_id}"),
            product_category: ["Laptop", "Smartphone", "Tablet", "Accessory"]
                [(product_id % 4) as usize]
                .into(),
            brand: ["Dell", "Apple", "Lenovo", "Samsung", "HP"][(product_id % 5) as usize].into(),
            quantity_sold: 1 + (i % 3) as i32,
            price_per_unit_cents: 1_999 + (product_id % 100) * 1_000,
            transaction_date_micros: t0 + i * 1_000,
            customer_id: Some(i % 50_000),
            country: Some(
                ["India", "Germany", "France", "USA", "UK", "Brazil", "Japan"][(i % 7) as usize]
                    .into(),
            ),
            card_type: Some(["Visa", "Mastercard", "Amex", "RuPay"][(i % 4) as usize].into()),
        };
        w.start_framed(1);
        sale.encode(&mut w);
        let key = product_id.to_string();
        let p = partition_for(key.as_bytes(), partitions);
        jobs::io::kafka::send(
            &producer,
            BaseRecord::to(topic)
                .key(&key)
                .partition(p)
                .payload(w.buf.as_slice()),
        )?;
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {count} sales in {secs:.2} s = {:.0} msgs/s",
        count as f64 / secs
    );
    Ok(())
}
