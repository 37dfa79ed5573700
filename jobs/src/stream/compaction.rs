//! The stream's background compaction: every `compaction.interval`, in the process that holds
//! source partition 0 (one compactor per group), the date folders that every partition's
//! checkpoint has closed are compacted at a bounded share of one core; a drained
//! `--until-idle` run compacts every date before it exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use crate::compact::{Compactor, Horizon, Pace, Report, TABLES};
use crate::config::Config;
use crate::io::lake::Lake;
use crate::{Error, Result};

/// The dates the group's checkpoints have closed; `partitions`: how many source partitions
/// must have one (`None`: those found).
pub async fn closed_horizon(cfg: &Config, lake: &Lake, partitions: Option<i32>) -> Result<Horizon> {
    #[derive(Deserialize)]
    struct Ck {
        windows: Wm,
    }
    #[derive(Deserialize)]
    struct Wm {
        max_ts: Option<i64>,
        emitted_to: i64,
    }
    let dir = super::state_dir(cfg);
    let lateness = cfg.stream.allowed_lateness.as_micros() as i64;
    let mut watermarks = Vec::new();
    for (path, _) in lake.list(&dir).await? {
        let name = path.rsplit('/').next().unwrap_or_default();
        if !(name.starts_with('p') && name.ends_with(".json")) || name.ends_with(".intent.json") {
            continue;
        }
        let Some(b) = lake.get(&path).await? else {
            continue;
        };
        let ck: Ck = serde_json::from_slice(&b)
            .map_err(|e| Error::Internal(format!("checkpoint {path} unreadable: {e}")))?;
        let w = &ck.windows;
        watermarks.push(super::window::watermark(w.max_ts, w.emitted_to, lateness));
    }
    if partitions.is_some_and(|n| (watermarks.len() as i32) < n) {
        return Ok(Horizon::Before(i64::MIN));
    }
    let longest = super::specs(cfg)
        .iter()
        .map(|s| s.size_micros)
        .max()
        .unwrap_or(0);
    Ok(Horizon::closed(&watermarks, longest))
}

/// The background compactor of a running stream.
pub(super) struct Background {
    stop: Arc<AtomicBool>,
    /// Set while a pass runs.
    busy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Starts it (if `compaction.enabled`); it works only while `owner` says this process holds
    /// source partition 0.
    pub(super) fn start(
        cfg: &Config,
        lake: &Lake,
        partitions: i32,
        owner: Arc<AtomicBool>,
    ) -> Result<Option<Background>> {
        if !cfg.compaction.enabled {
            return Ok(None);
        }
        let compactor = Compactor::new(lake, &cfg.compaction)?;
        let (cfg, lake) = (cfg.clone(), lake.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let busy = Arc::new(AtomicBool::new(false));
        let working = busy.clone();
        let task = tokio::spawn(async move {
            let pace = Pace {
                cpu_share: cfg.compaction.cpu_share,
            };
            let mut tick = tokio::time::interval(cfg.compaction.interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                if !owner.load(Ordering::Relaxed) {
                    continue;
                }
                working.store(true, Ordering::Relaxed);
                let pass = async {
                    let h = closed_horizon(&cfg, &lake, Some(partitions)).await?;
                    compactor
                        .pass(&TABLES, h, Some(pace), &|| stopping.load(Ordering::Relaxed))
                        .await
                };
                let done = pass.await;
                working.store(false, Ordering::Relaxed);
                match done {
                    Ok(Some(r)) if r.folders > 0 || r.recovered > 0 => {
                        log(&r);
                    }
                    Ok(_) => {}
                    // The stream goes on: its own files are complete; the next pass retries.
                    Err(e) => {
                        tracing::warn!(message = "Compaction failed; the stream goes on.", error = %e)
                    }
                }
            }
        });
        Ok(Some(Background { stop, busy, task }))
    }

    /// Stops it: waiting between ticks, at once; in a pass, after the folder at hand (or a
    /// minute: a pass stopped anywhere is finished or undone by the next one).
    pub(super) async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed)
            && tokio::time::timeout(std::time::Duration::from_secs(60), &mut self.task)
                .await
                .is_ok()
        {
            return;
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The pass at the end of a drained `--until-idle` run: every date, at full speed.
pub(super) async fn final_pass(cfg: &Config, lake: &Lake) -> Result<()> {
    if !cfg.compaction.enabled {
        return Ok(());
    }
    let c = Compactor::new(lake, &cfg.compaction)?;
    if let Some(r) = c.pass(&TABLES, Horizon::All, None, &|| false).await? {
        log(&r);
    }
    Ok(())
}

fn log(r: &Report) {
    tracing::info!(
        message = "Compacted the lake.",
        folders = r.folders,
        files_in = r.files_in,
        files_out = r.files_out,
        bytes_out = r.bytes_out,
        skipped = r.skipped,
        recovered = r.recovered
    );
}
