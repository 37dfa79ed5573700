//! The async shell of `jobs cdc`: pages of the snapshot and events of the binlog into the
//! capture core, its messages to the writer, and reconnection when the server goes away
//! (capped exponential backoff with jitter, one log line per state change, the position
//! kept: reading resumes at the last transaction boundary and the core drops what was sent).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::capture::{Capture, Input, Step};
use super::metrics::CdcMetrics;
use super::schema::Server;
use super::snapshot::Snapshot;
use super::state::SnapshotProgress;
use super::writer::{Mark, Writer};
use super::{Stats, binlog, mark};
use crate::config::Config;
use crate::io::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::{Error, Result};

/// How long SIGTERM waits for the last acknowledgements.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the snapshot's tables from `progress` on; returns the rows read.
pub async fn snapshot(
    cfg: &Config,
    mut snap: Snapshot,
    mut progress: SnapshotProgress,
    capture: &mut Capture,
    writer: &mut Writer,
    shutdown: &Shutdown,
) -> Result<u64> {
    let tables = &cfg.cdc.tables;
    let mut rows = 0;
    tracing::info!(message = "Snapshot starting.", position = %progress.at, table = progress.table, rows = progress.rows);
    while progress.table < tables.len() {
        if shutdown.is_raised() {
            snap.finish().await?;
            return Ok(rows);
        }
        let Some(table) = capture.table(&tables[progress.table]).cloned() else {
            return Err(Error::Internal(format!(
                "snapshot of unknown table {}",
                tables[progress.table]
            )));
        };
        let page = snap
            .page(&table, progress.after.as_deref(), cfg.cdc.snapshot_batch)
            .await?;
        for values in &page.rows {
            progress.rows += 1;
            if let Some(m) = capture.snapshot_row(&table.name, values, &progress.at, progress.rows)
            {
                writer.send(&m)?;
            }
        }
        rows += page.rows.len() as u64;
        if page.rows.len() < cfg.cdc.snapshot_batch {
            tracing::info!(message = "Snapshot of a table done.", table = %table.name, rows_so_far = progress.rows);
            progress.table += 1;
            progress.after = None;
        } else {
            progress.after = page.last_key;
        }
        let done = progress.table >= tables.len();
        writer.boundary(
            Mark {
                resume: progress.at.clone(),
                gtid: None,
                snapshot: (!done).then(|| progress.clone()),
            },
            true,
        )?;
    }
    snap.finish().await?;
    // Saved at once: a crash after this must not take the snapshot again.
    writer.finish(None, FINISH_TIMEOUT)?;
    tracing::info!(message = "Snapshot done.", rows = progress.rows, position = %progress.at);
    Ok(rows)
}

/// Whether reconnecting cannot help: the server refused us for good.
fn fatal(e: &Error) -> bool {
    match e {
        Error::Binlog { source, .. } => matches!(
            &**source,
            mysql_async::Error::Server(s) if matches!(s.code, 1045 | 1227 | 1236 | 1044)
        ),
        Error::Config(_) => true,
        _ => false,
    }
}

/// Explains a fatal refusal in one line.
fn explain(server: &Server, cfg: &Config, e: Error) -> Error {
    let Error::Binlog { source, url, .. } = &e else {
        return e;
    };
    let mysql_async::Error::Server(s) = &**source else {
        return e;
    };
    match s.code {
        1045 | 1227 | 1044 => Error::Config(format!(
            "cdc: {url}: the user may not read the binlog ({}); run: {}",
            s.message,
            server.grant()
        )),
        1236 => Error::Config(format!(
            "cdc: {url}: the server refused to send the binlog ({}); if the file was purged, set cdc.snapshot = \"when_needed\"; if another replica uses server id {}, set cdc.server_id",
            s.message, cfg.cdc.server_id
        )),
        _ => e,
    }
}

/// Follows the binlog until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    cfg: &Config,
    server: &mut Server,
    capture: &mut Capture,
    writer: &mut Writer,
    metrics: &CdcMetrics,
    shutdown: &Shutdown,
    stats: &mut Stats,
) -> Result<()> {
    let heartbeat = cfg.cdc.heartbeat;
    let db = server.db.clone();
    let tables = cfg.cdc.tables.clone();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut stream = None;
    let mut last_event = Instant::now();
    let mut head_polled = Instant::now() - Duration::from_secs(60);
    while !shutdown.is_raised() {
        let Some(s) = stream.as_mut() else {
            let from = capture.boundary().0.clone();
            match binlog::open(
                &server.opts,
                &server.shown,
                cfg.cdc.server_id,
                &from,
                heartbeat,
            )
            .await
            {
                Ok(s) => {
                    if backoff.failures() > 0 {
                        tracing::info!(message = "Binlog connection restored.", position = %from);
                    }
                    backoff.reset();
                    metrics.binlog_up.store(1, Ordering::Relaxed);
                    stream = Some(s);
                    last_event = Instant::now();
                }
                Err(e) if fatal(&e) => return Err(explain(server, cfg, e)),
                Err(e) => {
                    if backoff.failures() == 0 {
                        tracing::warn!(message = "Binlog connection lost; retrying with backoff.", error = %e, position = %from);
                    }
                    metrics.binlog_up.store(0, Ordering::Relaxed);
                    metrics.binlog_retries.fetch_add(1, Ordering::Relaxed);
                    writer.settle()?;
                    shutdown.sleep(backoff.wait()).await;
                }
            }
            continue;
        };
        let mut lost = None;
        match tokio::time::timeout(Duration::from_millis(100), s.next()).await {
            Err(_) => {
                if capture.between_transactions() {
                    writer.boundary(mark(capture), true)?;
                } else {
                    writer.settle()?;
                }
                if last_event.elapsed() > heartbeat * 3 {
                    lost = Some(format!(
                        "no event or heartbeat for {:?}",
                        last_event.elapsed()
                    ));
                }
            }
            Ok(None) => lost = Some("the server closed the binlog stream".to_string()),
            Ok(Some(Err(e))) => {
                // The dump's own error packet (a purged file, a taken server id) arrives
                // here: a retry cannot mend it.
                let e = Error::Binlog {
                    url: server.shown.clone(),
                    what: "read the binlog".into(),
                    source: Box::new(e),
                };
                if fatal(&e) {
                    return Err(explain(server, cfg, e));
                }
                lost = Some(e.to_string());
            }
            Ok(Some(Ok(event))) => {
                last_event = Instant::now();
                let h = event.header();
                let (pos, ts) = (
                    u64::from(h.log_pos()).saturating_sub(u64::from(h.event_size())),
                    h.timestamp(),
                );
                let input = if binlog::wanted(s, &event, &db, &tables) {
                    binlog::input(s, &event)
                } else {
                    Ok(Some(Input::Other {
                        end: u64::from(h.log_pos()),
                    }))
                };
                if ts > 0 {
                    metrics
                        .last_event_ms
                        .store(i64::from(ts) * 1000, Ordering::Relaxed);
                }
                match input {
                    Err(reason) => {
                        let step = capture.undecodable(&reason, pos, ts);
                        apply(step, capture, writer, metrics, stats)?;
                    }
                    Ok(None) => {}
                    Ok(Some(input)) => {
                        let ddl = match &input {
                            Input::Query { sql, pos, ts, .. } => Some((sql.clone(), *pos, *ts)),
                            _ => None,
                        };
                        let step = capture.on(input);
                        let reload = step.reload.clone();
                        apply(step, capture, writer, metrics, stats)?;
                        if let (Some((sql, pos, ts)), false) = (ddl, reload.is_empty()) {
                            for (i, t) in reload.iter().enumerate() {
                                let info = match server.table(t).await {
                                    Ok(info) => info,
                                    Err(e) if fatal(&e) => return Err(e),
                                    Err(e) => {
                                        server.reconnect().await.ok();
                                        lost =
                                            Some(format!("re-read {t} after a DDL statement: {e}"));
                                        break;
                                    }
                                };
                                tracing::info!(message = "Schema change.", table = %t, ddl = %sql, columns = info.columns.len());
                                let step = capture.schema_changed(
                                    info,
                                    &sql,
                                    (pos, ts),
                                    (i, i + 1 == reload.len()),
                                );
                                apply(step, capture, writer, metrics, stats)?;
                            }
                        }
                    }
                }
            }
        }
        if let Some(why) = lost {
            tracing::warn!(message = "Binlog connection lost; reconnecting from the last transaction boundary.", reason = %why, position = %capture.boundary().0);
            metrics.binlog_up.store(0, Ordering::Relaxed);
            metrics.binlog_retries.fetch_add(1, Ordering::Relaxed);
            stream = None;
            capture.rewind();
            shutdown.sleep(backoff.wait()).await;
        }
        if head_polled.elapsed() >= Duration::from_secs(2) {
            head_polled = Instant::now();
            super::metrics::CdcMetrics::set(&metrics.read, capture.position());
            match server.head().await {
                Ok(h) => super::metrics::CdcMetrics::set(&metrics.head, h),
                Err(_) => {
                    server.reconnect().await.ok();
                }
            }
        }
    }
    tracing::info!(message = "Capture stopping: waiting for the last acknowledgements.", position = %capture.position());
    let m = capture.between_transactions().then(|| mark(capture));
    writer.finish(m, FINISH_TIMEOUT)
}

/// Sends a step's messages and records its boundary.
fn apply(
    step: Step,
    capture: &Capture,
    writer: &mut Writer,
    metrics: &CdcMetrics,
    stats: &mut Stats,
) -> Result<()> {
    for m in &step.messages {
        writer.send(m)?;
        match m.op {
            "c" | "u" | "d" => stats.changes += 1,
            "dlq" => {
                stats.dead_lettered += 1;
                tracing::warn!(message = "Dead-lettered a change.", table = %m.table, position = %m.ordinal.key());
            }
            _ => {}
        }
    }
    if step.skipped > 0 {
        stats.recovered += step.skipped;
        metrics.recovered.fetch_add(step.skipped, Ordering::Relaxed);
    }
    if step.boundary {
        writer.boundary(mark(capture), false)?;
    }
    Ok(())
}
