//! Benchmark input: produces COUNT Avro `ProductSale` messages (Confluent framing, schema
//! id 1) for PRODUCTS products, keyed and partitioned like `jobs ingest`. Dense (no DAYS):
//! event times rising 1 ms per event from 2026-11-01 (or from `PRODUCE_FROM`, RFC 3339). A shop (DAYS): the orders `jobs
//! generate` would make over DAYS days ending 2026-11-01 (its hourly and weekly curves,
//! customers, countries, cards), each of its 36 products split into PRODUCTS / 36 variants.
//!
//! `cargo run --release --example produce_sales -- BROKERS TOPIC PARTITIONS COUNT PRODUCTS [DAYS]`

use std::time::{Duration, Instant};

use jobs::generate::Shop;
use jobs::io::avro::Writer;
use jobs::io::kafka::partition_for;
use jobs::records::ProductSale;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic, partitions, count, products, days) = match args.as_slice() {
        [_, b, t, p, c, n] => (b, t, p, c, n, None),
        [_, b, t, p, c, n, d] => (b, t, p, c, n, Some(d.parse::<i64>()?)),
        _ => anyhow::bail!("usage: produce_sales BROKERS TOPIC PARTITIONS COUNT PRODUCTS [DAYS]"),
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
    if let Some(days) = days {
        let start = t0 - days * 86_400_000_000;
        let sales = Shop::new(7, 50_000, start, t0).backfill(start, t0, count as u64);
        let variants = (products / 36).max(1);
        let started = Instant::now();
        for (i, s) in sales.into_iter().enumerate() {
            let i = i as i64;
            let product_id = s.product_id + 36 * ((i * 7919) % variants);
            let sale = ProductSale {
                transaction_id: i + 1,
                product_id,
                product_name: match variants {
                    1 => s.name.to_string(),
                    _ => format!("{} #{product_id}", s.name),
                },
                product_category: s.category.into(),
                brand: s.brand.into(),
                quantity_sold: s.quantity as i32,
                price_per_unit_cents: s.price_cents,
                transaction_date_micros: s.at,
                customer_id: s.customer,
                country: Some(s.country),
                card_type: Some(s.card),
            };
            send(&producer, &mut w, topic, partitions, &sale)?;
        }
        producer.flush(Duration::from_secs(300))?;
        let secs = started.elapsed().as_secs_f64();
        println!("produced {count} sales over {days} days in {secs:.2} s");
        return Ok(());
    }
    let from = match std::env::var("PRODUCE_FROM") {
        Ok(t) => jobs::units::parse_micros(&t)
            .ok_or_else(|| anyhow::anyhow!("PRODUCE_FROM {t:?} is not a time"))?,
        Err(_) => t0,
    };
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
            transaction_date_micros: from + i * 1_000,
            customer_id: Some(i % 50_000),
            country: Some(
                ["India", "Germany", "France", "USA", "UK", "Brazil", "Japan"][(i % 7) as usize]
                    .into(),
            ),
            card_type: Some(["Visa", "Mastercard", "Amex", "RuPay"][(i % 4) as usize].into()),
        };
        send(&producer, &mut w, topic, partitions, &sale)?;
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {count} sales in {secs:.2} s = {:.0} msgs/s",
        count as f64 / secs
    );
    Ok(())
}

/// Encodes and sends one sale, keyed by product like `jobs ingest`.
fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    w: &mut Writer,
    topic: &str,
    partitions: i32,
    sale: &ProductSale,
) -> anyhow::Result<()> {
    w.start_framed(1);
    sale.encode(w);
    let key = sale.product_id.to_string();
    let p = partition_for(key.as_bytes(), partitions);
    jobs::io::kafka::send(
        producer,
        BaseRecord::to(topic)
            .key(&key)
            .partition(p)
            .payload(w.buf.as_slice()),
    )?;
    Ok(())
}
