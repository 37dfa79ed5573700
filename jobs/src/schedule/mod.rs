//! `jobs schedule`: runs the cron entries of `schedules/*.toml`, each a `jobs` subcommand in
//! its own process, and records every run.
//!
//! tokio-cron-scheduler fires the entries; this module decides what a fire does. An entry
//! runs at most once at a time (a fire while it runs is recorded as `skipped`); a failed or
//! timed-out attempt is retried with a doubling backoff; every attempt is one line of the
//! run history ([`history`]); on SIGTERM no new run starts, running ones get the grace
//! period, then SIGTERM, then SIGKILL.

pub mod history;
mod process;
// The schedule files are parsed in `formats`.
pub use formats::schedule as spec;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Offset, TimeZone, Utc};
use tokio::sync::{Notify, watch};
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::ScheduleConfig;
use crate::shutdown::Shutdown;
use crate::{Error, Result};
pub use history::{History, Run, Status, Trigger};
pub use spec::{ArgCheck, Entry};

/// How `jobs schedule` starts the jobs it runs.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `jobs` binary (normally the running one).
    pub exe: PathBuf,
    /// Flags put before the subcommand of every run (`--config`, `--lake`, ...), so that runs
    /// see the scheduler's own configuration.
    pub global_args: Vec<String>,
}

/// What a scheduler did until it stopped.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Attempts and skipped fires, by status.
    pub by_status: BTreeMap<&'static str, u64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.by_status.values().sum();
        let parts: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        write!(f, "{total} recorded")?;
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// `jobs schedule --list`: every entry, its settings, its next `count` fire times and its
/// last recorded run.
pub fn list(entries: &[Entry], runs: &[Run], now: DateTime<Utc>, count: usize) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("{}  ({})\n", e.name, e.file.display()));
        out.push_str(&format!("  runs     {}\n", e.command_line()));
        let mut how = format!("  cron     {}  [{}]", e.cron, e.timezone);
        if e.catch_up {
            how.push_str("  catch_up");
        }
        if e.retries > 0 {
            how.push_str(&format!(
                "  retries {} (backoff {} doubling)",
                e.retries,
                humantime::format_duration(e.retry_backoff)
            ));
        }
        if let Some(t) = e.timeout {
            how.push_str(&format!("  timeout {}", humantime::format_duration(t)));
        }
        out.push_str(&how);
        out.push('\n');
        if e.enabled {
            for (i, t) in e.next_fires(now, count).iter().enumerate() {
                let label = if i == 0 { "next" } else { "" };
                out.push_str(&format!("  {label:<8} {}\n", spec::show_time(t)));
            }
        } else {
            out.push_str("  next     (disabled: enabled = false)\n");
        }
        match runs.iter().rev().find(|r| r.entry == e.name) {
            Some(r) => out.push_str(&format!(
                "  last     {} at {} ({:.1} s)\n",
                r.status.as_str(),
                r.started.format("%Y-%m-%d %H:%M:%S UTC"),
                r.duration_s
            )),
            None => out.push_str("  last     never run\n"),
        }
    }
    out
}

/// State shared by the fires of every entry.
struct Ctx {
    cfg: ScheduleConfig,
    launcher: Launcher,
    history: History,
    /// Entries with a run in progress (attempts and backoff waits included).
    running: Mutex<HashMap<String, Option<u32>>>,
    /// The newest fire time each entry was fired for (run or skipped): a fire time is
    /// handled once, whoever fires it (the cron, catch-up, a daylight-saving re-add).
    last_fired: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Signalled whenever a run chain ends.
    ended: Notify,
    /// Raised on shutdown: no new run or retry starts.
    stopping: Shutdown,
    /// Set when the grace period is over: running attempts are stopped.
    kill: watch::Sender<bool>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Ctx {
    fn count(&self, status: Status) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(status.as_str()).or_default() += 1;
        }
    }

    fn record(&self, run: &Run) {
        self.count(run.status);
        if let Err(error) = self.history.append(run) {
            warn!(message = "Could not record a run.", entry = %run.entry, %error);
        }
    }

    /// Decides what a fire of `entry` for `at` does, atomically with shutdown.
    fn claim_fire(&self, entry: &str, at: DateTime<Utc>) -> Claim {
        let Ok(mut running) = self.running.lock() else {
            return Claim::Stopping;
        };
        if self.stopping.is_raised() {
            return Claim::Stopping;
        }
        let Ok(mut last) = self.last_fired.lock() else {
            return Claim::Stopping;
        };
        if last.get(entry).is_some_and(|l| at <= *l) {
            return Claim::AlreadyFired;
        }
        last.insert(entry.to_string(), at);
        if running.contains_key(entry) {
            return Claim::Busy;
        }
        running.insert(entry.to_string(), None);
        Claim::Run
    }

    /// No run or retry starts after this.
    fn stop_starting(&self) {
        let _running = self.running.lock();
        self.stopping.raise();
    }

    fn busy(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Marks `entry` as running; false if it already was.
    fn claim(&self, entry: &str, pid: Option<u32>) -> bool {
        let Ok(mut r) = self.running.lock() else {
            return false;
        };
        if r.contains_key(entry) {
            return false;
        }
        r.insert(entry.to_string(), pid);
        true
    }

    fn release(&self, entry: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(entry);
        }
        self.ended.notify_waiters();
    }
}

/// What a fire does.
enum Claim {
    Run,
    /// The entry's previous run is still going: recorded as skipped.
    Busy,
    /// This fire time was already handled.
    AlreadyFired,
    /// The scheduler is stopping.
    Stopping,
}

/// Runs the schedule until `shutdown` is raised. Takes the history folder's lock, so one
/// scheduler at a time uses a history.
pub async fn run(
    cfg: &ScheduleConfig,
    launcher: Launcher,
    entries: Vec<Entry>,
    shutdown: Shutdown,
) -> Result<Summary> {
    let history = History::open(&cfg.history_dir)?;
    let lock_path = history.lock_path();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::file(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Schedule(format!(
                "another `jobs schedule` is running with the history {} (its lock {} is held)",
                cfg.history_dir.display(),
                lock_path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::file(&lock_path, e)),
    }
    let (kill, _) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        launcher,
        history,
        running: Mutex::new(HashMap::new()),
        last_fired: Mutex::new(HashMap::new()),
        ended: Notify::new(),
        stopping: Shutdown::default(),
        kill,
        counts: Mutex::new(BTreeMap::new()),
    });

    let (runs, torn) = ctx.history.read()?;
    if torn > 0 {
        warn!(
            message = "Skipped unreadable lines of the run history.",
            lines = torn,
            path = %ctx.history.runs_path().display()
        );
    }
    process::adopt_stale_runs(&ctx);

    let entries: Vec<Arc<Entry>> = entries
        .into_iter()
        .filter(|e| e.enabled)
        .map(Arc::new)
        .collect();
    let sched = JobScheduler::new()
        .await
        .map_err(|e| Error::Internal(format!("cannot create the scheduler: {e}")))?;
    let mut registered: HashMap<String, (Uuid, i32)> = HashMap::new();
    for e in &entries {
        registered.insert(e.name.clone(), register(&sched, &ctx, e).await?);
    }
    let started = Utc::now();
    sched
        .start()
        .await
        .map_err(|e| Error::Internal(format!("cannot start the scheduler: {e}")))?;
    info!(
        message = "Scheduler started.",
        entries = entries.len(),
        history = %ctx.history.runs_path().display()
    );

    // Catch-up: one run per entry whose last fire before the start is newer than its last
    // record. A run the killed predecessor left unfinished (recorded `interrupted` above, after
    // `runs` was read) counts as missed. A fire the cron also makes is run once (`claim_fire`).
    for e in entries.iter().filter(|e| e.catch_up) {
        let last = history::last_scheduled(&runs, &e.name);
        match (last, e.previous_fire(started)) {
            (Some(last), Some(missed)) if missed > last => {
                info!(
                    message = "Catching up a missed run.",
                    entry = %e.name,
                    missed = %missed,
                    last_recorded = %last
                );
                let (ctx, e) = (ctx.clone(), e.clone());
                tokio::spawn(async move { fire(&ctx, &e, Trigger::CatchUp, missed).await });
            }
            (None, _) => info!(
                message = "No earlier run recorded; nothing to catch up.",
                entry = %e.name
            ),
            _ => {}
        }
    }

    // Wait for the signal; meanwhile keep non-UTC entries on their zone's current offset
    // (tokio-cron-scheduler fixes the offset when a job is added, so a daylight-saving change
    // re-adds the job).
    // A fire due between the change and the re-add is fired then (at most one check late).
    let mut last_check = Utc::now();
    loop {
        shutdown.sleep(Duration::from_secs(10)).await;
        if shutdown.is_raised() {
            break;
        }
        let now = Utc::now();
        for e in &entries {
            let Some((id, offset)) = registered.get(&e.name).copied() else {
                continue;
            };
            let new_offset = offset_now(e);
            if new_offset == offset {
                continue;
            }
            info!(
                message = "Time zone offset changed; re-adding the entry.",
                entry = %e.name,
                timezone = %e.timezone,
                old_offset_s = offset,
                new_offset_s = new_offset
            );
            if let Err(error) = sched.remove(&id).await {
                warn!(message = "Could not remove the entry.", entry = %e.name, %error);
            }
            match register(&sched, &ctx, e).await {
                Ok(r) => {
                    registered.insert(e.name.clone(), r);
                }
                Err(error) => {
                    warn!(message = "Could not re-add the entry; it is not scheduled.", entry = %e.name, %error);
                    registered.remove(&e.name);
                }
            }
            if let Some(due) = e.previous_fire(now).filter(|t| *t > last_check) {
                let (ctx, e) = (ctx.clone(), e.clone());
                tokio::spawn(async move { fire(&ctx, &e, Trigger::Cron, due).await });
            }
        }
        last_check = now;
    }

    // Shutdown: no new runs; running ones get the grace period, then are stopped.
    ctx.stop_starting();
    let mut sched = sched;
    let _ = sched.shutdown().await;
    let busy = ctx.busy();
    if busy > 0 {
        info!(
            message = "Stopping: waiting for running jobs.",
            running = busy,
            grace = %humantime::format_duration(cfg.grace_period)
        );
    }
    let deadline = tokio::time::Instant::now() + cfg.grace_period;
    wait_idle(&ctx, Some(deadline)).await;
    if ctx.busy() > 0 {
        warn!(
            message = "Grace period over; stopping the running jobs.",
            running = ctx.busy()
        );
        // send_replace: stored even while no attempt is subscribed yet.
        ctx.kill.send_replace(true);
        wait_idle(&ctx, None).await;
    }
    drop(lock);
    let by_status = ctx.counts.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(Summary { by_status })
}

/// Waits until no entry runs, or until `deadline`.
async fn wait_idle(ctx: &Ctx, deadline: Option<tokio::time::Instant>) {
    loop {
        let ended = ctx.ended.notified();
        if ctx.busy() == 0 {
            return;
        }
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = ended => {}
                    _ = tokio::time::sleep_until(d) => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = ended => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

fn offset_now(e: &Entry) -> i32 {
    e.timezone
        .offset_from_utc_datetime(&Utc::now().naive_utc())
        .fix()
        .local_minus_utc()
}

/// Adds `e` to the scheduler; returns its job id and the zone offset it was added with.
async fn register(sched: &JobScheduler, ctx: &Arc<Ctx>, e: &Arc<Entry>) -> Result<(Uuid, i32)> {
    let (c, entry) = (ctx.clone(), e.clone());
    let job = Job::new_async_tz(e.cron.as_str(), e.timezone, move |_id, _sched| {
        let (ctx, e) = (c.clone(), entry.clone());
        Box::pin(async move {
            // tokio-cron-scheduler ticks every 500 ms: the fire this call belongs to is the
            // last one at or before now.
            let now = Utc::now();
            let at = e.previous_fire(now).unwrap_or(now);
            fire(&ctx, &e, Trigger::Cron, at).await;
        })
    })
    .map_err(|err| {
        Error::Schedule(format!(
            "{}: entry {:?}: field `cron`: {err}",
            e.file.display(),
            e.name
        ))
    })?;
    let offset = offset_now(e);
    let id = sched
        .add(job)
        .await
        .map_err(|err| Error::Schedule(format!("cannot add entry {:?}: {err}", e.name)))?;
    Ok((id, offset))
}

/// One fire of an entry: skipped if it is running, else attempts until success, the retries
/// run out, or shutdown.
async fn fire(ctx: &Arc<Ctx>, e: &Entry, trigger: Trigger, scheduled_for: DateTime<Utc>) {
    match ctx.claim_fire(&e.name, scheduled_for) {
        Claim::Run => {}
        Claim::Stopping | Claim::AlreadyFired => return,
        Claim::Busy => {
            warn!(
                message = "Skipped: the previous run is still going.",
                entry = %e.name,
                scheduled_for = %scheduled_for
            );
            let now = Utc::now();
            ctx.record(&Run {
                entry: e.name.clone(),
                file: e.file.display().to_string(),
                trigger,
                scheduled_for,
                attempt: 0,
                started: now,
                ended: now,
                duration_s: 0.0,
                status: Status::Skipped,
                exit_code: None,
                pid: None,
                command: e.command_line(),
                log: None,
                log_tail: "skipped: the previous run was still going".into(),
            });
            return;
        }
    }
    let mut attempt = 1;
    loop {
        let run = process::attempt_once(ctx, e, trigger, scheduled_for, attempt).await;
        ctx.record(&run);
        let retry = run.status.retryable() && attempt <= e.retries && !ctx.stopping.is_raised();
        if run.status == Status::Succeeded {
            info!(
                message = "Run succeeded.",
                entry = %e.name,
                attempt,
                duration_s = run.duration_s
            );
        } else {
            warn!(
                message = "Run did not succeed.",
                entry = %e.name,
                attempt,
                status = run.status.as_str(),
                exit_code = ?run.exit_code,
                log = run.log.as_deref().unwrap_or(""),
                last_line = run.log_tail.lines().last().unwrap_or("")
            );
        }
        if !retry {
            break;
        }
        let wait = e.backoff(attempt);
        info!(
            message = "Retrying.",
            entry = %e.name,
            next_attempt = attempt + 1,
            wait = %humantime::format_duration(wait)
        );
        ctx.stopping.sleep(wait).await;
        if ctx.stopping.is_raised() {
            break;
        }
        attempt += 1;
    }
    ctx.release(&e.name);
}
