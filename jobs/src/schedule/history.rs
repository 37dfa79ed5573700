//! The run history of `jobs schedule`: one JSON line per run in `runs.jsonl`, readable by
//! `jobs schedule --history` and by DuckDB (`read_json('<history_dir>/runs.jsonl')`).
//!
//! A line is appended (and synced) when a run ends; a run in progress is a marker file in
//! `running/`, so a scheduler killed mid-run leaves a trace that the next start records as
//! `interrupted`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use tracing::warn;

use crate::{Error, Result};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit code 0.
    Succeeded,
    /// A non-zero exit code or a signal.
    Failed,
    /// Stopped by the scheduler after the entry's `timeout`.
    Timeout,
    /// Stopped by the scheduler's own shutdown after the grace period.
    Terminated,
    /// Not started: the previous run of the entry was still going.
    Skipped,
    /// The scheduler died while it ran; the outcome is unknown.
    Interrupted,
    /// The command could not be started at all.
    Error,
}

impl Status {
    /// The name written to the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Terminated => "terminated",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
            Status::Error => "error",
        }
    }

    /// Whether another attempt may help.
    pub fn retryable(self) -> bool {
        matches!(self, Status::Failed | Status::Timeout | Status::Error)
    }
}

/// What fired a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The cron expression.
    Cron,
    /// A fire missed while the scheduler was down, run once at start.
    CatchUp,
}

/// One line of `runs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Entry name.
    pub entry: String,
    /// Schedule file of the entry.
    pub file: String,
    /// What fired it.
    pub trigger: Trigger,
    /// The cron fire time this run belongs to (UTC).
    #[serde(with = "rfc3339_micros")]
    pub scheduled_for: DateTime<Utc>,
    /// 1 for the first attempt, 2 for the first retry...; 0 for a skipped fire.
    pub attempt: u32,
    /// Start (UTC).
    #[serde(with = "rfc3339_micros")]
    pub started: DateTime<Utc>,
    /// End (UTC).
    #[serde(with = "rfc3339_micros")]
    pub ended: DateTime<Utc>,
    /// `ended - started`, seconds ([`Run::end_at`] sets both).
    pub duration_s: f64,
    /// How it ended.
    pub status: Status,
    /// Exit code of the process, when it exited by itself.
    pub exit_code: Option<i32>,
    /// Process id.
    pub pid: Option<u32>,
    /// The command line.
    pub command: String,
    /// The full log of the attempt (stdout and stderr).
    pub log: Option<String>,
    /// The last lines of the log.
    pub log_tail: String,
}

impl Run {
    /// Sets the end and the duration.
    pub fn end_at(&mut self, ended: DateTime<Utc>) {
        self.ended = ended;
        self.duration_s = (ended - self.started)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6;
    }
}

/// The history folder: `runs.jsonl`, `logs/<entry>/`, `running/`, `scheduler.lock`.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

impl History {
    /// The history in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<History> {
        for sub in ["logs", "running"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| Error::file(&p, e))?;
        }
        Ok(History {
            dir: dir.to_path_buf(),
        })
    }

    /// The history in `dir`, for reading only (nothing is created).
    pub fn at(dir: &Path) -> History {
        History {
            dir: dir.to_path_buf(),
        }
    }

    /// Path of `runs.jsonl`.
    pub fn runs_path(&self) -> PathBuf {
        self.dir.join("runs.jsonl")
    }

    /// Path of the scheduler's lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("scheduler.lock")
    }

    /// A new log file for an attempt: `logs/<entry>/<start>-a<attempt>.log`.
    pub fn log_path(&self, entry: &str, started: DateTime<Utc>, attempt: u32) -> PathBuf {
        self.dir.join("logs").join(entry).join(format!(
            "{}-a{attempt}.log",
            started.format("%Y%m%dT%H%M%S%.3fZ")
        ))
    }

    /// Appends one run and syncs the file, so that a recorded run survives a crash.
    pub fn append(&self, run: &Run) -> Result<()> {
        let path = self.runs_path();
        let mut line =
            serde_json::to_string(run).map_err(|e| Error::Internal(format!("run record: {e}")))?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::file(&path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::file(&path, e))
    }

    /// Every recorded run, oldest first. Lines that do not parse (a torn last line after a
    /// power cut) are skipped and counted in the second value.
    pub fn read(&self) -> Result<(Vec<Run>, usize)> {
        let path = self.runs_path();
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(Error::file(&path, e)),
        };
        let mut runs = Vec::new();
        let mut bad = 0;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::file(&path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Run>(&line) {
                Ok(r) => runs.push(r),
                Err(_) => bad += 1,
            }
        }
        Ok((runs, bad))
    }

    /// Writes the marker of a run in progress (a whole file or none: written aside, then
    /// renamed).
    pub fn mark_running(&self, marker: &Marker) -> Result<()> {
        let path = self.marker_path(&marker.run.entry);
        let text =
            serde_json::to_vec(marker).map_err(|e| Error::Internal(format!("run marker: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::file(&path, e))
    }

    /// Removes the marker of `entry`.
    pub fn clear_running(&self, entry: &str) {
        let _ = std::fs::remove_file(self.marker_path(entry));
    }

    /// Markers left by a scheduler that did not finish its runs. One that cannot be read
    /// (not ours, or damaged by hand) is reported and removed.
    pub fn stale_markers(&self) -> Vec<Marker> {
        let Ok(read) = std::fs::read_dir(self.dir.join("running")) else {
            return Vec::new();
        };
        let mut markers = Vec::new();
        for path in read.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|x| x != "json") {
                // A marker.json.tmp of a write cut short: its run had not started.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Marker>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(m) => markers.push(m),
                Err(error) => {
                    warn!(message = "Removing an unreadable run marker.", path = %path.display(), %error);
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        markers
    }

    fn marker_path(&self, entry: &str) -> PathBuf {
        self.dir.join("running").join(format!("{entry}.json"))
    }

    /// Keeps the newest `keep` log files of `entry`: at least one, the log of the run just recorded.
    pub fn prune_logs(&self, entry: &str, keep: usize) {
        let keep = keep.max(1);
        let dir = self.dir.join("logs").join(entry);
        let Ok(read) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut logs: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
        // Names start with the start time, so name order is time order.
        logs.sort();
        let excess = logs.len().saturating_sub(keep);
        for old in &logs[..excess] {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// A run in progress, as the marker file `running/<entry>.json` records it: the run's record
/// so far (its `ended`, `duration_s`, `status` and `log_tail` are filled in when it ends) and
/// what identifies its process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    /// The record so far.
    #[serde(flatten)]
    pub run: Run,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat`), so that a
    /// later process with the same pid is not taken for the job.
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

/// The latest fire time recorded for `entry` (any status, any trigger).
pub fn last_scheduled(runs: &[Run], entry: &str) -> Option<DateTime<Utc>> {
    runs.iter()
        .filter(|r| r.entry == entry)
        .map(|r| r.scheduled_for)
        .max()
}

/// Timestamps as RFC 3339 UTC with exactly six decimals, which DuckDB reads as timestamps.
mod rfc3339_micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The last `n` lines of a log file (at most 64 KiB are read from its end).
pub fn tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 << 10);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `jobs schedule --history`: the newest `limit` runs (of `entry`, if given) as a table.
pub fn render(runs: &[Run], entry: Option<&str>, limit: usize) -> String {
    // The file is in order of completion; the table is in order of start.
    let mut chosen: Vec<&Run> = runs
        .iter()
        .filter(|r| entry.is_none_or(|e| r.entry == e))
        .collect();
    chosen.sort_by_key(|r| r.started);
    let chosen = &chosen[chosen.len().saturating_sub(limit)..];
    let mut out = format!(
        "{:<20} {:<16} {:<8} {:>3} {:<11} {:>4} {:>9}  {}\n",
        "STARTED (UTC)", "ENTRY", "TRIGGER", "TRY", "STATUS", "EXIT", "SECONDS", "LAST LOG LINE"
    );
    for r in chosen {
        let trigger = match r.trigger {
            Trigger::Cron => "cron",
            Trigger::CatchUp => "catch_up",
        };
        let last = r.log_tail.lines().last().unwrap_or("");
        let last: String = last.chars().take(100).collect();
        out.push_str(&format!(
            "{:<20} {:<16} {:<8} {:>3} {:<11} {:>4} {:>9.1}  {}\n",
            r.started.format("%Y-%m-%d %H:%M:%S"),
            r.entry,
            trigger,
            r.attempt,
            r.status.as_str(),
            r.exit_code.map(|c| c.to_string()).unwrap_or("-".into()),
            r.duration_s,
            last
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(entry: &str, minute: u32, status: Status) -> Run {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 2, minute, 0).unwrap();
        Run {
            entry: entry.into(),
            file: "schedules/nightly.toml".into(),
            trigger: Trigger::Cron,
            scheduled_for: t,
            attempt: 1,
            started: t,
            ended: t + chrono::Duration::milliseconds(1500),
            duration_s: 1.5,
            status,
            exit_code: Some(0),
            pid: Some(42),
            command: "jobs forecast".into(),
            log: None,
            log_tail: "line 1\nforecast 36 products".into(),
        }
    }

    #[test]
    fn runs_round_trip_and_a_torn_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("jobs-history-{}", std::process::id()));
        let h = History::open(&dir).unwrap();
        let a = run("forecast", 0, Status::Succeeded);
        let b = run("recommend", 30, Status::Failed);
        h.append(&a).unwrap();
        h.append(&b).unwrap();
        // A power cut in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(h.runs_path()).unwrap();
        f.write_all(b"{\"entry\":\"forec").unwrap();
        let (runs, bad) = h.read().unwrap();
        assert_eq!(runs, vec![a.clone(), b]);
        assert_eq!(bad, 1);
        assert_eq!(last_scheduled(&runs, "forecast"), Some(a.scheduled_for));
        assert_eq!(last_scheduled(&runs, "ingest"), None);
        let table = render(&runs, Some("forecast"), 10);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains("succeeded") && table.contains("forecast 36 products"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("jobs-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log");
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        assert_eq!(tail(&p, 2), "line 99\nline 100");
        assert_eq!(tail(&dir.join("missing"), 2), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
