//! `jobs init`: creates the source schema and the Kafka topics; safe to run again.

use crate::Result;
use crate::config::Config;
use crate::io::db::Db;
use crate::io::kafka::{self, TopicSpec};

/// The topics `jobs` writes, with their partition counts and configs.
pub fn topics(cfg: &Config) -> Vec<TopicSpec> {
    let p = cfg.kafka.partitions;
    let t = &cfg.topics;
    vec![
        TopicSpec {
            name: t.product_sales.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.product_updates.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.dlq.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.windowed_product_sales.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.late_sales.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            // Upserts keyed by product: compaction keeps the newest totals of each.
            name: t.aggregated_product_sales.clone(),
            partitions: p,
            configs: vec![("cleanup.policy", "compact")],
        },
        TopicSpec {
            name: t.top_products.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.low_stock_alerts.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.customer_segment_sales.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            name: t.sales_predictions.clone(),
            partitions: p,
            configs: vec![],
        },
        TopicSpec {
            // One message per customer and run: compaction keeps each customer's newest.
            name: t.product_recommendations.clone(),
            partitions: p,
            configs: vec![("cleanup.policy", "compact")],
        },
        TopicSpec {
            name: t.ingest_state.clone(),
            partitions: 1,
            configs: vec![("cleanup.policy", "compact")],
        },
    ]
}

/// Creates the tables in the source database and the topics in Kafka.
pub async fn run(cfg: &Config) -> Result<()> {
    let db = Db::connect(&cfg.database_url).await?;
    db.init_schema().await?;
    tracing::info!(message = "Schema ready.", database = %db.name);
    kafka::create_topics(&cfg.kafka, &topics(cfg)).await?;
    tracing::info!(message = "Topics ready.", brokers = %cfg.kafka.brokers, partitions = cfg.kafka.partitions);
    Ok(())
}
