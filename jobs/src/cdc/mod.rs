//! `jobs cdc`: change data capture. A MariaDB/MySQL server's binlog, read as a replica, to
//! one Kafka topic per table in Debezium's envelope, exactly once.
//!
//! A run reads as: check the server ([`schema`]), load the saved position and scan what a
//! crash may have left past it ([`state`]), take a consistent snapshot when there is no
//! position ([`snapshot`]), then follow the binlog ([`binlog`] -> [`capture`] -> [`writer`])
//! until SIGTERM, reconnecting when the server goes away. The core ([`capture`]) decides
//! every message and resume point; this module only carries it out.

mod binlog;
pub mod capture;
pub mod convert;
pub mod envelope;
mod follow;
mod metrics;
pub mod position;
mod schema;
mod snapshot;
pub mod state;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::{Config, SnapshotMode};
use crate::io::kafka::{self, TopicSpec};
use crate::shutdown::Shutdown;
use crate::{Error, Result};
use capture::{Capture, Names};
pub use metrics::CdcMetrics;
use position::Ordinal;
use schema::Server;
use state::{Checkpoint, SnapshotProgress, tp_key};
use writer::{Mark, Writer};

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Changes (c, u, d) written.
    pub changes: u64,
    pub snapshot_rows: u64,
    /// Messages found already delivered after a crash.
    pub recovered: u64,
    pub dead_lettered: u64,
}

/// The topics of a capture, by database: `<prefix>.<db>.<table>`.
pub fn table_topic(cfg: &Config, db: &str, table: &str) -> String {
    format!("{}.{db}.{table}", cfg.cdc.topic_prefix)
}

/// The URL `jobs cdc` reads and its database name.
pub fn source_url(cfg: &Config) -> Result<(String, String)> {
    let url = cfg
        .cdc
        .url
        .clone()
        .unwrap_or_else(|| cfg.database_url.clone());
    if !url.starts_with("mysql://") && !url.starts_with("mariadb://") {
        return Err(Error::Config(format!(
            "cdc.url {}: jobs cdc reads MariaDB/MySQL (mysql://USER@HOST:PORT/DB)",
            crate::io::db::redact(&url)
        )));
    }
    let url = url.replacen("mariadb://", "mysql://", 1);
    let (_, _, db) = schema::parse_url(&url)?;
    Ok((url, db))
}

/// Table and topic names go into SQL and topic names: letters, digits, `_` and `$` only.
pub fn check_identifier(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    match ok {
        true => Ok(()),
        false => Err(Error::Config(format!(
            "{what} {s:?}: use letters, digits, _ and $ only (at most 64)"
        ))),
    }
}

/// Runs `jobs cdc` until SIGTERM (or `shutdown`).
pub async fn run(cfg: &Config, shutdown: Shutdown) -> Result<Stats> {
    let p = prepare(cfg).await?;
    let metrics = Arc::new(CdcMetrics::default());
    if !cfg.cdc.metrics_addr.is_empty() {
        crate::metrics::serve(cfg.cdc.metrics_addr.clone(), metrics.clone()).await?;
    }
    let Prepared {
        mut server,
        tables,
        names,
        db,
        partitions,
        ckpt,
        delivered,
    } = p;
    let mut writer = Writer::new(
        &cfg.kafka,
        &cfg.cdc.state_topic,
        ckpt.clone(),
        cfg.cdc.checkpoint_interval,
        metrics.clone(),
    )?;
    // A snapshot when there is no position, or when one was under way.
    let snapshot = match (&ckpt.resume, &ckpt.snapshot) {
        (Some(_), None) => None,
        _ => {
            let snap =
                snapshot::Snapshot::begin(&server.opts, &server.shown, server.mariadb).await?;
            // A snapshot cut off by a crash starts again at the new snapshot's position: its
            // rows are read as of now, so the binlog must be read from now too (rows read
            // at T2 labelled with T1's position would be overwritten by older changes).
            if let Some(p) = &ckpt.snapshot {
                tracing::warn!(message = "A snapshot was under way; starting it again at a new position.", rows_before = p.rows, old = %p.at, new = %snap.at);
            }
            let progress = SnapshotProgress {
                at: snap.at.clone(),
                table: 0,
                after: None,
                rows: 0,
            };
            Some((snap, progress))
        }
    };
    let from = match (&snapshot, &ckpt.resume) {
        (Some((_, p)), _) => p.at.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => server.head().await?,
    };
    // Where a crash from now on restarts: written before anything is sent.
    if ckpt.written_ms == 0 || snapshot.is_some() {
        writer.acked.resume = Some(from.clone());
        writer.acked.snapshot = snapshot.as_ref().map(|(_, p)| p.clone());
        writer.checkpoint_durably()?;
    }
    let mut capture = Capture::new(names, &db, tables, partitions, from, ckpt.gtid.clone());
    let mut recovered = 0;
    for ((t, p), o) in delivered {
        capture.delivered(&t, p, o);
        recovered += 1;
    }
    tracing::info!(
        message = "Capture starting.",
        server = %server.shown,
        position = %capture.position(),
        snapshot = snapshot.is_some(),
        partitions_with_a_tail = recovered,
    );
    let mut stats = Stats::default();
    if let Some((snap, progress)) = snapshot {
        stats.snapshot_rows =
            follow::snapshot(cfg, snap, progress, &mut capture, &mut writer, &shutdown).await?;
        metrics
            .snapshot_rows
            .store(stats.snapshot_rows, Ordering::Relaxed);
        if shutdown.is_raised() {
            writer.finish(None, std::time::Duration::from_secs(30))?;
            return Ok(stats);
        }
    }
    follow::follow(
        cfg,
        &mut server,
        &mut capture,
        &mut writer,
        &metrics,
        &shutdown,
        &mut stats,
    )
    .await?;
    Ok(stats)
}

/// What a run starts from.
struct Prepared {
    server: Server,
    tables: Vec<envelope::TableInfo>,
    names: Names,
    db: String,
    partitions: HashMap<String, i32>,
    ckpt: Checkpoint,
    delivered: HashMap<(String, i32), Ordinal>,
}

/// Checks the server, creates the topics, loads the saved position and scans what a crash
/// left past it.
async fn prepare(cfg: &Config) -> Result<Prepared> {
    let (url, db) = source_url(cfg)?;
    check_identifier("cdc database", &db)?;
    for t in &cfg.cdc.tables {
        check_identifier("cdc.tables:", t)?;
    }
    let mut server = Server::connect(&url).await?;
    let mut tables = Vec::new();
    for t in &cfg.cdc.tables {
        tables.push(server.table(t).await?);
    }
    let names = Names {
        prefix: cfg.cdc.topic_prefix.clone(),
        dlq: cfg.cdc.dlq_topic.clone(),
        server_id: cfg.cdc.server_id,
    };
    let name = cfg.cdc.name.clone().unwrap_or_else(|| {
        format!(
            "cdc-{}-{}-{db}",
            server.opts.ip_or_hostname(),
            server.opts.tcp_port()
        )
    });
    // Topics: one per table, the schema changes, the dead letters, the positions.
    let mut specs: Vec<TopicSpec> = tables
        .iter()
        .map(|t| TopicSpec {
            name: names.topic(&db, &t.name),
            partitions: cfg.kafka.partitions,
            configs: vec![],
        })
        .collect();
    for (topic, compact) in [
        (names.schema_topic(&db), false),
        (names.dlq.clone(), false),
        (cfg.cdc.state_topic.clone(), true),
    ] {
        specs.push(TopicSpec {
            name: topic,
            partitions: 1,
            configs: if compact {
                vec![("cleanup.policy", "compact")]
            } else {
                vec![]
            },
        });
    }
    kafka::create_topics(&cfg.kafka, &specs).await?;
    let out_topics: Vec<String> = specs[..specs.len() - 1]
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let kcfg = cfg.kafka.clone();
    let (partitions, saved) = {
        let (state_topic, name) = (cfg.cdc.state_topic.clone(), name.clone());
        let topics = out_topics.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let partitions = kafka::partition_counts(&kcfg, &refs)?;
            let saved = state::load(&kcfg, &state_topic, &name)?;
            Ok((partitions, saved))
        })
        .await
        .map_err(|e| Error::Internal(format!("cdc startup: {e}")))??
    };
    // Where to start: the saved position, or a snapshot, or the head.
    let files = server.files().await?;
    let saved = match saved {
        Some(c) => {
            let gone = c.resume.as_ref().is_some_and(|r| !files.contains(&r.file));
            match (gone, cfg.cdc.snapshot) {
                (false, _) => Some(c),
                (true, SnapshotMode::WhenNeeded) => {
                    tracing::warn!(message = "The saved binlog position is no longer on the server; taking a new snapshot.", position = ?c.resume);
                    Some(Checkpoint {
                        resume: None,
                        snapshot: None,
                        ..c
                    })
                }
                (true, _) => {
                    return Err(Error::Config(format!(
                        "cdc: {}: the saved position {} is no longer on the server (its binlog was purged); set cdc.snapshot = \"when_needed\" to take a new snapshot",
                        server.shown,
                        c.resume.map(|r| r.to_string()).unwrap_or_default()
                    )));
                }
            }
        }
        None => None,
    };
    let mut ckpt = match saved {
        Some(c) if !c.tables.is_empty() && c.tables != cfg.cdc.tables => {
            return Err(Error::Config(format!(
                "cdc.tables is {:?}, the saved position {name} was taken for {:?}: a table added now would never be snapshotted; set cdc.name to a new name to start over with a snapshot of all of them",
                cfg.cdc.tables, c.tables
            )));
        }
        Some(c) => c,
        None => {
            // A first run: the partitions' ends now are where recovery scans start.
            let kcfg = cfg.kafka.clone();
            let parts: Vec<(String, i32)> =
                partitions.iter().map(|(t, n)| (t.clone(), *n)).collect();
            let ends = tokio::task::spawn_blocking(move || {
                let refs: Vec<(&str, i32)> = parts.iter().map(|(t, n)| (t.as_str(), *n)).collect();
                kafka::end_offsets(&kcfg, &refs)
            })
            .await
            .map_err(|e| Error::Internal(format!("cdc end offsets: {e}")))??;
            Checkpoint {
                name: name.clone(),
                tables: cfg.cdc.tables.clone(),
                offsets: ends
                    .into_iter()
                    .map(|(t, p, o)| (tp_key(&t, p), o))
                    .collect(),
                ..Checkpoint::default()
            }
        }
    };
    if ckpt.resume.is_none() && ckpt.snapshot.is_none() && cfg.cdc.snapshot == SnapshotMode::Never {
        ckpt.resume = Some(server.head().await?);
    }
    let delivered = {
        let (kcfg, parts, at) = (cfg.kafka.clone(), partitions.clone(), ckpt.clone());
        tokio::task::spawn_blocking(move || state::scan(&kcfg, &parts, &at))
            .await
            .map_err(|e| Error::Internal(format!("cdc recovery scan: {e}")))??
    };
    Ok(Prepared {
        server,
        tables,
        names,
        db,
        partitions,
        ckpt,
        delivered,
    })
}

/// The position after the last transaction handed out, as a checkpoint mark.
fn mark(capture: &Capture) -> Mark {
    let (resume, gtid) = capture.boundary();
    Mark {
        resume: resume.clone(),
        gtid: gtid.map(str::to_string),
        snapshot: None,
    }
}
