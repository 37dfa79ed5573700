//! Compaction: the small files of the lake's closed date folders merged into files of the
//! target size, switched in so that a reader sees each row exactly once ([`switch`]), in the
//! background of `jobs stream` and as `jobs compact`.
//!
//! A pass: finish or undo what a crashed pass left; per table, list it, then read the flush
//! intents (in that order: a file listed before the intents were read and not named by one
//! belongs to a finished flush); per date folder inside the horizon, merge its committed
//! small files ([`plan`]) and switch them in. A file an unfinished flush names is never
//! merged: the stream's recovery may delete it and write it again.

pub mod merge;
pub mod plan;
mod switch;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

pub use plan::{Horizon, TABLES};

use crate::config::CompactionConfig;
use crate::io::lake::Lake;
use crate::io::lock::LakeLock;
use crate::{Error, Result};

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Folders whose files were merged.
    pub folders: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Folders left as they were (columns that differ, or a folder that changed meanwhile).
    pub skipped: usize,
    /// Crashed passes finished or undone first.
    pub recovered: usize,
}

/// How a pass runs.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Share of one core: after merging for `t`, sleep `t * (1 - share) / share`.
    pub cpu_share: f64,
}

/// Compacts one lake; at most one per lake at a time (the `compactor` lock on a local lake).
pub struct Compactor {
    lake: Lake,
    target: u64,
    compactor: LakeLock,
    writers: LakeLock,
}

impl Compactor {
    pub fn new(lake: &Lake, cfg: &CompactionConfig) -> Result<Compactor> {
        Ok(Compactor {
            lake: lake.clone(),
            target: cfg.target_file_bytes,
            compactor: lake.lock("compactor")?,
            writers: lake.lock("writers")?,
        })
    }

    /// One pass over `tables` within `horizon`; `None` if another compactor holds the lake.
    /// With a `pace`, it sleeps between folders to stay within its share of a core; `stop`
    /// is asked between folders.
    pub async fn pass(
        &self,
        tables: &[&str],
        horizon: Horizon,
        pace: Option<Pace>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Report>> {
        let compactor = self.compactor.clone();
        let Some(_held) = tokio::task::spawn_blocking(move || compactor.try_exclusive())
            .await
            .map_err(|e| Error::Internal(format!("lock task: {e}")))??
        else {
            return Ok(None);
        };
        let mut r = Report {
            recovered: switch::recover(&self.lake).await?,
            ..Report::default()
        };
        for table in tables {
            let listing = self.lake.list(table).await?;
            let pending = self.pending().await?;
            for f in plan::folders(&listing) {
                if stop() {
                    return Ok(Some(r));
                }
                let Some(m) = plan::plan(&f, &pending, self.target, horizon) else {
                    continue;
                };
                let started = Instant::now();
                match self.compact(&m).await {
                    Ok(Some((files_out, bytes_out, rows))) => {
                        r.folders += 1;
                        r.files_in += m.inputs.len();
                        r.bytes_in += m.bytes;
                        r.files_out += files_out;
                        r.bytes_out += bytes_out;
                        r.rows += rows;
                        tracing::debug!(message = "Compacted a folder.", folder = %m.dir, files_in = m.inputs.len(), files_out, rows);
                    }
                    Ok(None) => r.skipped += 1,
                    Err(e @ Error::Parquet(_)) => {
                        tracing::warn!(message = "Left a folder as it is.", folder = %m.dir, error = %e);
                        r.skipped += 1;
                    }
                    Err(e) => return Err(e),
                }
                if let Some(p) = pace {
                    let busy = started.elapsed().as_secs_f64();
                    let rest = busy * (1.0 - p.cpu_share) / p.cpu_share;
                    tokio::time::sleep(Duration::from_secs_f64(rest.min(600.0))).await;
                }
            }
        }
        Ok(Some(r))
    }

    /// The files the unfinished flushes name (their intents under `_state/`).
    async fn pending(&self) -> Result<std::collections::HashSet<String>> {
        let mut intents = Vec::new();
        for (path, _) in self.lake.list("_state/stream").await? {
            if path.ends_with(".intent.json")
                && let Some(b) = self.lake.get(&path).await?
            {
                intents.push((path, b.to_vec()));
            }
        }
        plan::pending(&intents).map_err(Error::Internal)
    }

    /// Merges and switches one folder: `(files, bytes, rows)` written, `None` if it changed
    /// meanwhile and was left as it is.
    async fn compact(&self, m: &plan::Merge) -> Result<Option<(usize, u64, u64)>> {
        let mut inputs: Vec<(String, Bytes)> = Vec::with_capacity(m.inputs.len());
        for path in &m.inputs {
            match self.lake.get(path).await? {
                Some(b) => inputs.push((path.clone(), b)),
                None => return Ok(None),
            }
        }
        let target = self.target;
        let merged = tokio::task::spawn_blocking(move || merge::merge(&inputs, target))
            .await
            .map_err(|e| Error::Internal(format!("merge task: {e}")))??;
        let (n, bytes, rows) = (
            merged.files.len(),
            merged.files.iter().map(|f| f.len() as u64).sum(),
            merged.rows,
        );
        let id = format!(
            "{}-{:08x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"),
            rand::random::<u32>()
        );
        match switch::switch(&self.lake, &self.writers, m, merged.files, &id).await? {
            true => Ok(Some((n, bytes, rows))),
            false => Ok(None),
        }
    }
}
