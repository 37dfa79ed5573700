//! The first step of a run: the producer, the saved state, the source connection and the
//! topics' partition counts (at once); a table's first checkpoints; the recovery scans; and
//! each table's first read, started so that it overlaps all of that.

use std::collections::HashMap;

use rdkafka::producer::{Producer, ThreadedProducer};

use super::drain::{delivery_failure, send_checkpoint, spawn_read};
use super::rows::{PRODUCTS_TABLE, SALES_TABLE};
use super::state::{self, Tails, tp_key};
use super::{Prepared, TableJob};
use crate::config::Config;
use crate::io::avro::SchemaKind;
use crate::io::delivery::{Deliveries, DeliveryContext};
use crate::io::kafka;
use crate::io::produce::flush_now;
use crate::io::registry;
use crate::io::source::Source;
use crate::shutdown::Shutdown;
use crate::units::rfc3339_micros;
use crate::{Error, Result};
use std::time::Duration;

/// Connects, loads the state, writes a table's first checkpoints and scans for what reached
/// the broker after the last ones; returns what the run works with and its tables.
pub(super) async fn prepare(
    cfg: &Config,
    wait_for_registry: Option<&Shutdown>,
) -> Result<(Prepared, Vec<TableJob>)> {
    // The producer first: an idempotent producer cannot send before the broker gave it a
    // producer id (see `kafka::partition_counts_with`). The source connects and the saved
    // state is read meanwhile.
    let deliveries = Deliveries::default();
    let producer = kafka::idempotent_producer(&cfg.kafka, deliveries.clone())?;
    let source = cfg.source_name();
    let saved = {
        let cfg = cfg.clone();
        let source = source.clone();
        tokio::task::spawn_blocking(move || state::load(&cfg, &source))
    };
    let db = {
        let url = cfg.database_url.clone();
        tokio::spawn(async move { Source::connect(&url).await })
    };
    let partitions = tokio::task::block_in_place(|| partition_counts(cfg, &producer));
    // The source's error first, as when it connected alone.
    let db = db
        .await
        .map_err(|e| Error::Internal(format!("connect task panicked: {e}")))??;
    let partitions = partitions?;
    let registry =
        registry::for_config(&cfg.schema_registry, &cfg.topics, wait_for_registry).await?;
    let mut saved = saved
        .await
        .map_err(|e| Error::Internal(format!("state loader panicked: {e}")))??;
    let mut jobs = vec![
        TableJob::new(
            &SALES_TABLE,
            SchemaKind::ProductSale,
            &cfg.topics.product_sales,
        ),
        TableJob::new(
            &PRODUCTS_TABLE,
            SchemaKind::Product,
            &cfg.topics.product_updates,
        ),
    ];
    let dlq = (cfg.topics.dlq.as_str(), partitions[&cfg.topics.dlq]);
    let mut first_run = Vec::new();
    for j in &mut jobs {
        match saved.remove(j.spec.table) {
            Some(st) => j.state = st,
            None => first_run.push(j.spec.table),
        }
        // The first batch is read while the checkpoints and recovery below talk to the broker.
        j.first_read = Some(spawn_read(
            &db,
            j.spec,
            j.state.cursor,
            cfg.ingest.batch_size,
        ));
    }
    if !first_run.is_empty() {
        // A table's first run: checkpoint the partitions' end offsets before sending
        // anything, so that recovery never reads what was there before us (one query and one
        // flush for every such table).
        tokio::task::block_in_place(|| {
            let mut topics = vec![dlq];
            for j in jobs.iter().filter(|j| first_run.contains(&j.spec.table)) {
                topics.push((j.topic.as_str(), partitions[&j.topic]));
            }
            let ends = kafka::end_offsets(&cfg.kafka, &topics)?;
            for j in jobs
                .iter_mut()
                .filter(|j| first_run.contains(&j.spec.table))
            {
                j.state.offsets = ends
                    .iter()
                    .filter(|(t, _, _)| *t == j.topic || *t == dlq.0)
                    .map(|(t, p, o)| (tp_key(t, *p), *o))
                    .collect();
                send_checkpoint(cfg, &producer, &source, j.spec.table, &j.state)?;
            }
            wait_for_first_checkpoints(cfg, &producer, &deliveries)
        })?;
    }
    // Every table's recovery scan at once.
    let tails: Vec<Result<Tails>> = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let scans: Vec<_> = jobs
                .iter()
                .map(|j| {
                    let data = (j.topic.as_str(), partitions[&j.topic]);
                    let source = source.as_str();
                    scope.spawn(move || {
                        state::scan_tails(cfg, source, j.spec.table, data, dlq, &j.state)
                    })
                })
                .collect();
            scans
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Internal("recovery scan panicked".into())))
                })
                .collect()
        })
    });
    for (j, tails) in jobs.iter_mut().zip(tails) {
        tracing::debug!(message = "Checkpointed offsets.", table = j.spec.table, offsets = ?j.state.offsets);
        j.sent = j.state.clone();
        j.tails = tails?;
        tracing::info!(
            message = "Resuming table.",
            table = j.spec.table,
            topic = %j.topic,
            cursor_ts = %rfc3339_micros(j.state.cursor.ts_micros),
            cursor_id = j.state.cursor.id,
            schema_id = registry.id(j.kind)?,
            registry = %registry.source,
        );
    }
    let run = Prepared {
        producer,
        deliveries,
        db,
        registry,
        partitions,
        source,
    };
    Ok((run, jobs))
}

/// Partition counts of the topics ingest writes, asked through the producer. Blocking.
fn partition_counts(
    cfg: &Config,
    producer: &ThreadedProducer<DeliveryContext>,
) -> Result<HashMap<String, i32>> {
    let t = &cfg.topics;
    kafka::partition_counts_with(
        producer.client(),
        &cfg.kafka,
        &[
            &t.product_sales,
            &t.product_updates,
            &t.dlq,
            &t.ingest_state,
        ],
    )
}

/// Waits until the broker has the first checkpoints handed to the producer. Blocking.
fn wait_for_first_checkpoints(
    cfg: &Config,
    producer: &ThreadedProducer<DeliveryContext>,
    deliveries: &Deliveries,
) -> Result<()> {
    flush_now(producer, Duration::from_secs(30))
        .map_err(kafka::err(&cfg.kafka, "send the first checkpoints"))?;
    match deliveries.first_failure()? {
        Some(e) => Err(delivery_failure(
            cfg,
            format!("write the first checkpoints: {e}"),
        )),
        None => Ok(()),
    }
}
