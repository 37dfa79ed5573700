//! The process side of a scheduled run: one attempt spawned in its own process group with
//! its log, stopped with SIGTERM then SIGKILL, and the runs a previous scheduler left behind
//! (alive: adopted; dead: recorded as interrupted).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::Ctx;
use super::history::{self, Run, Status, Trigger};
use super::spec::Entry;

/// Runs one attempt: spawns `jobs <command> <args>` in its own process group with its output
/// in a log file, and waits for it, its timeout, or the end of the grace period.
pub(super) async fn attempt_once(
    ctx: &Ctx,
    e: &Entry,
    trigger: Trigger,
    scheduled_for: DateTime<Utc>,
    attempt: u32,
) -> Run {
    let started = Utc::now();
    let log = ctx.history.log_path(&e.name, started, attempt);
    let mut run = Run {
        entry: e.name.clone(),
        file: e.file.display().to_string(),
        trigger,
        scheduled_for,
        attempt,
        started,
        ended: started,
        duration_s: 0.0,
        status: Status::Error,
        exit_code: None,
        pid: None,
        command: e.command_line(),
        log: Some(log.display().to_string()),
        log_tail: String::new(),
    };
    let finish = |mut run: Run| {
        run.end_at(Utc::now());
        if let Some(path) = &run.log {
            // The log's last lines, then what the scheduler saw ("killed by signal 9").
            let tail = history::tail(Path::new(path), ctx.cfg.log_tail_lines);
            run.log_tail = match (tail.is_empty(), run.log_tail.is_empty()) {
                (true, _) => std::mem::take(&mut run.log_tail),
                (false, true) => tail,
                (false, false) => format!("{tail}\n{}", run.log_tail),
            };
        }
        ctx.history.clear_running(&e.name);
        ctx.history.prune_logs(&e.name, ctx.cfg.keep_logs);
        run
    };
    let file = match log
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|_| std::fs::File::create(&log))
    {
        Ok(f) => f,
        Err(err) => {
            run.log_tail = format!("cannot create the log {}: {err}", log.display());
            run.log = None;
            return finish(run);
        }
    };
    let (out, err) = match (file.try_clone(), file.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            run.log_tail = format!("cannot share the log {}", log.display());
            return finish(run);
        }
    };
    let mut cmd = tokio::process::Command::new(&ctx.launcher.exe);
    cmd.args(&ctx.launcher.global_args)
        .arg(&e.command)
        .args(&e.args)
        .env("JOBS_SCHEDULE_ENTRY", &e.name)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: Ctrl-C in the scheduler's terminal does not reach the job;
        // the scheduler decides when it stops.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            run.log_tail = format!("cannot start {}: {err}", ctx.launcher.exe.display());
            return finish(run);
        }
    };
    let pid = child.id();
    run.pid = pid;
    if let Ok(mut r) = ctx.running.lock() {
        r.insert(e.name.clone(), pid);
    }
    if let Some(pid) = pid {
        let marker = history::Marker {
            run: run.clone(),
            start_ticks: start_ticks(pid),
        };
        if let Err(error) = ctx.history.mark_running(&marker) {
            warn!(message = "Could not write the run marker.", entry = %e.name, %error);
        }
    }
    info!(
        message = "Run started.",
        entry = %e.name,
        attempt,
        pid,
        command = %run.command,
        log = %log.display()
    );

    let mut kill = ctx.kill.subscribe();
    let timeout = async {
        match e.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stopped_as = tokio::select! {
        status = child.wait() => {
            match status {
                Ok(s) => {
                    run.exit_code = s.code();
                    run.status = if s.success() { Status::Succeeded } else { Status::Failed };
                    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&s) {
                        run.log_tail = format!("killed by signal {sig}");
                    }
                }
                Err(err) => run.log_tail = format!("cannot wait for the job: {err}"),
            }
            None
        }
        _ = timeout => Some(Status::Timeout),
        _ = kill.wait_for(|k| *k) => Some(Status::Terminated),
    };
    if let Some(status) = stopped_as {
        run.status = status;
        stop(&mut child, pid, ctx.cfg.stop_timeout, &e.name).await;
    }
    finish(run)
}

/// SIGTERM to the job's process group, then SIGKILL after `patience`.
pub(super) async fn stop(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    patience: Duration,
    entry: &str,
) {
    if let Some(pid) = pid {
        signal_group(pid, libc::SIGTERM);
    }
    if tokio::time::timeout(patience, child.wait()).await.is_err() {
        warn!(message = "The job ignored SIGTERM; killing it.", entry, pid);
        if let Some(pid) = pid {
            signal_group(pid, libc::SIGKILL);
        }
        let _ = child.wait().await;
    } else if let Some(pid) = pid {
        // The job ended; anything it started in its group goes with it (the group id is not
        // reused while a member lives).
        signal_group(pid, libc::SIGKILL);
    }
}

pub(super) fn signal_group(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative pid signals the process group the job leads (it was
    // spawned with process_group(0)); it touches no memory of ours.
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// Whether the job of `m` is still running: its pid is alive, started when the marker says
/// (not a recycled pid), and runs a program named like ours.
pub(super) fn alive(pid: u32, m: &history::Marker, exe: &Path) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(p, 0) } != 0 {
        return false;
    }
    if let (Some(then), Some(now)) = (m.start_ticks, start_ticks(pid))
        && then != now
    {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            use std::os::unix::ffi::OsStrExt;
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            Path::new(std::ffi::OsStr::from_bytes(argv0)).file_name() == exe.file_name()
        }
        // No /proc: trust kill(2).
        Err(_) => true,
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub(super) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Runs left in progress by a scheduler that died: recorded as `interrupted`, at once if
/// the process is gone, or when it ends (until then the entry counts as running, so the
/// new scheduler does not start it twice).
pub(super) fn adopt_stale_runs(ctx: &Arc<Ctx>) {
    let tail_lines = ctx.cfg.log_tail_lines;
    for m in ctx.history.stale_markers() {
        let entry = m.run.entry.clone();
        let live_pid = m
            .run
            .pid
            .filter(|pid| alive(*pid, &m, &ctx.launcher.exe) && ctx.claim(&entry, Some(*pid)));
        if let Some(pid) = live_pid {
            warn!(
                message = "A run of the previous scheduler is still going; waiting for it.",
                entry = %entry,
                pid
            );
            let ctx = ctx.clone();
            tokio::spawn(async move {
                // At the end of a shutdown's grace period it is stopped like our own runs.
                let mut term_sent: Option<tokio::time::Instant> = None;
                while alive(pid, &m, &ctx.launcher.exe) {
                    if *ctx.kill.borrow() {
                        match term_sent {
                            None => {
                                signal_group(pid, libc::SIGTERM);
                                term_sent = Some(tokio::time::Instant::now());
                            }
                            Some(t) if t.elapsed() > ctx.cfg.stop_timeout => {
                                signal_group(pid, libc::SIGKILL);
                            }
                            Some(_) => {}
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                ctx.record(&interrupted(&m, Utc::now(), tail_lines));
                ctx.history.clear_running(&entry);
                ctx.release(&entry);
            });
        } else {
            // The log's last write is the best estimate of when it ended.
            let ended = m
                .run
                .log
                .as_ref()
                .and_then(|log| std::fs::metadata(log).and_then(|md| md.modified()).ok())
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(Utc::now);
            warn!(
                message = "Recording a run the previous scheduler left unfinished.",
                entry = %entry,
                pid = m.run.pid
            );
            ctx.record(&interrupted(&m, ended.max(m.run.started), tail_lines));
            ctx.history.clear_running(&entry);
        }
    }
}

/// The record of a run a dead scheduler left unfinished.
pub(super) fn interrupted(m: &history::Marker, ended: DateTime<Utc>, tail_lines: usize) -> Run {
    let mut run = m.run.clone();
    run.end_at(ended);
    run.status = Status::Interrupted;
    run.exit_code = None;
    run.log_tail = run
        .log
        .as_deref()
        .map(|log| history::tail(Path::new(log), tail_lines))
        .unwrap_or_default();
    run
}
