//! `jobs schedule` on the real stack: entries fire real `jobs` subcommands, every run is
//! recorded in `runs.jsonl` (read back here by DuckDB), runs never overlap, failures retry
//! with backoff, timeouts and SIGTERM stop jobs, missed fires are caught up as configured,
//! and `--check` names the file, entry and field of a broken schedule.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env, python};
use serde_json::Value;

const RUN_DATE: &str = "2026-11-20";
const SINCE: &str = "2026-09-21";

/// A folder of schedule files and a config whose history lives in the test's folder.
struct Sched {
    dir: PathBuf,
    history: PathBuf,
    config: PathBuf,
}

fn sched(env: &Env, name: &str, files: &[(&str, &str)], extra: &str) -> Sched {
    let dir = env.dir.join(format!("{name}-schedules"));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let history = env.dir.join(format!("{name}-history"));
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&format!(
        "[schedule]\nhistory_dir = \"{}\"\n{extra}",
        history.display()
    ));
    let config = env.dir.join(format!("{name}.toml"));
    std::fs::write(&config, text).unwrap();
    Sched {
        dir,
        history,
        config,
    }
}

impl Sched {
    fn cmd(&self, env: &Env, args: &[&str]) -> Command {
        let mut c = env.cmd_with(&self.config, &["schedule", "--dir"]);
        c.arg(&self.dir).args(args);
        c
    }

    fn start(&self, env: &Env) -> Child {
        self.cmd(env, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The runs as `jobs` wrote them (read with serde, cheap enough to poll).
    fn runs(&self) -> Vec<Value> {
        let Ok(text) = std::fs::read_to_string(self.history.join("runs.jsonl")) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Polls the history until `done` holds, or fails after `limit`.
    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
        let start = Instant::now();
        loop {
            let runs = self.runs();
            if done(&runs) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "no {what} after {limit:?}: {runs:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// DuckDB's reading of the history.
    fn duck(&self) -> Value {
        python(&[
            "tests/py/schedule_check.py",
            "runs",
            &self.history.display().to_string(),
        ])
    }
}

/// SIGTERM, then the scheduler's output once it exits; a scheduler that does not exit within
/// a minute fails the test (and is killed) instead of hanging it.
fn terminate(mut child: Child) -> (Output, Duration) {
    let t0 = Instant::now();
    // SAFETY: kill(2) on the pid of a child we spawned and have not waited for.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the scheduler ignored SIGTERM for 60 s: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    (child.wait_with_output().unwrap(), took)
}

/// Kills a process that outlives its scheduler when the test ends, passed or not.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this test started (through its scheduler).
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn of<'a>(runs: &'a [Value], entry: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["entry"] == entry).collect()
}

fn entry(name: &str, cron: &str, command: &str, args: &[&str], more: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[job]]\nname = \"{name}\"\ncron = \"{cron}\"\ncommand = \"{command}\"\nargs = [{}]\n{more}\n",
        args.join(", ")
    )
}

#[test]
fn check_and_list_validate_before_anything_runs() {
    let env = Env::new(Backend::Sqlite);
    // The shipped schedules are valid and list their next fires.
    let shipped = common::root().join("schedules");
    let out = env.jobs(&["schedule", "--check", "--dir", shipped.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("3 entries in 2 files"),
        "{}",
        text(&out.stdout)
    );
    let out = env.jobs(&["schedule", "--list", "--dir", shipped.to_str().unwrap()]);
    let list = text(&out.stdout);
    for name in ["forecast", "recommend", "ingest"] {
        assert!(list.contains(&format!("{name}  (")), "{list}");
    }
    assert!(list.contains("runs     jobs ingest --once"), "{list}");
    assert!(
        list.contains("02:00:00 UTC") && list.contains("02:30:00 UTC"),
        "{list}"
    );
    assert!(list.contains("never run"), "{list}");

    // Each broken file fails --check with its file, entry and field, and exit code 1.
    let good = entry("ok", "0 0 2 * * *", "forecast", &[], "");
    let cases: &[(&str, String, &str)] = &[
        (
            "cron",
            entry("nightly", "0 2 * * *", "forecast", &[], ""),
            "field `cron`",
        ),
        (
            "key",
            entry("nightly", "0 0 2 * * *", "forecast", &[], "retires = 2"),
            "field `retires`",
        ),
        (
            "command",
            entry("nightly", "0 0 2 * * *", "forcast", &[], ""),
            "field `command`: unknown subcommand \"forcast\"",
        ),
        (
            "args",
            entry("nightly", "0 0 2 * * *", "forecast", &["--horizn", "3"], ""),
            "field `args`: unexpected argument '--horizn'",
        ),
        (
            "timezone",
            entry(
                "nightly",
                "0 0 2 * * *",
                "forecast",
                &[],
                "timezone = \"Mars/Olympus\"",
            ),
            "field `timezone`",
        ),
    ];
    for (case, broken, field) in cases {
        let dir = env.dir.join(format!("broken-{case}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a-good.toml"), &good).unwrap();
        let file = dir.join("b-broken.toml");
        std::fs::write(&file, broken).unwrap();
        let out = env
            .cmd(&["schedule", "--check", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {err}");
        let want = format!("{}: entry \"nightly\": {field}", file.display());
        assert!(err.contains(&want), "{case}: want {want:?} in {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        // And the scheduler refuses to start on it.
        let out = env
            .cmd(&["schedule", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{case}");
    }
}

/// 60 days of a small shop, through ingest and stream into the lake.
fn shop() -> Env {
    Env::with_shop(Backend::Sqlite, 60, 6000, 500, 9)
}

#[test]
fn an_entry_runs_a_real_forecast_and_the_run_is_recorded() {
    let env = shop();
    let s = sched(
        &env,
        "forecast",
        &[(
            "nightly.toml",
            &entry(
                "forecast",
                "*/3 * * * * *",
                "forecast",
                &["--run-date", RUN_DATE, "--since", SINCE],
                "timeout = \"5m\"",
            ),
        )],
        "",
    );
    let child = s.start(&env);
    s.wait_for(Duration::from_secs(120), "succeeded forecast run", |runs| {
        runs.iter().any(|r| r["status"] == "succeeded")
    });
    let (out, _) = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("scheduler stopped"),
        "{}",
        text(&out.stdout)
    );

    // DuckDB reads the history with real timestamps.
    let d = s.duck();
    assert!(
        d["types"]["started"]
            .as_str()
            .unwrap()
            .starts_with("TIMESTAMP"),
        "{d}"
    );
    assert!(
        d["types"]["scheduled_for"]
            .as_str()
            .unwrap()
            .starts_with("TIMESTAMP"),
        "{d}"
    );
    let runs = d["runs"].as_array().unwrap();
    let ok = runs.iter().find(|r| r["status"] == "succeeded").unwrap();
    assert_eq!(ok["entry"], "forecast");
    assert_eq!(ok["trigger"], "cron");
    assert_eq!(ok["attempt"], 1);
    assert_eq!(ok["exit_code"], 0);
    // The run belongs to a fire on a multiple of 3 seconds, and started right after it.
    let at = ok["scheduled_for"].as_f64().unwrap();
    assert_eq!(at % 3.0, 0.0, "{ok}");
    let lag = ok["started"].as_f64().unwrap() - at;
    assert!((0.0..3.0).contains(&lag), "started {lag} s after its fire");
    let took = ok["ended"].as_f64().unwrap() - ok["started"].as_f64().unwrap();
    assert!((took - ok["duration_s"].as_f64().unwrap()).abs() < 0.01);
    assert!(
        ok["log_tail"].as_str().unwrap().contains("forecast "),
        "{ok}"
    );
    // What it did is in the lake.
    let f = python(&[
        "tests/py/schedule_check.py",
        "forecasts",
        &env.lake(),
        RUN_DATE,
    ]);
    assert!(f["rows"].as_u64().unwrap() >= 7, "{f}");
    // And --history shows it.
    let out = env.jobs_with(&s.config, &["schedule", "--history"]);
    let h = text(&out.stdout);
    assert!(
        h.lines()
            .any(|l| l.contains("forecast") && l.contains("succeeded")),
        "{h}"
    );
}

#[test]
fn runs_never_overlap_timeouts_stop_jobs_and_failures_retry_with_backoff() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    let files = [
        (
            "a.toml",
            // Fires every second; each run is a live generator stopped by its 3 s timeout.
            entry(
                "busy",
                "* * * * * *",
                "generate",
                &["--follow", "--no-backfill", "--rate", "2"],
                "timeout = \"3s\"",
            ),
        ),
        (
            "b.toml",
            // An empty lake: forecast fails; two retries, 1 s then 2 s later.
            entry(
                "failing",
                "*/10 * * * * *",
                "forecast",
                &["--run-date", RUN_DATE],
                "retries = 2\nretry_backoff = \"1s\"",
            ),
        ),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let s = sched(&env, "overlap", &files, "stop_timeout = \"5s\"\n");
    let child = s.start(&env);
    s.wait_for(
        Duration::from_secs(40),
        "3 failed attempts and 2 busy runs",
        |runs| {
            of(runs, "failing").len() >= 3
                && of(runs, "busy")
                    .iter()
                    .filter(|r| r["status"] == "timeout")
                    .count()
                    >= 2
        },
    );
    let (out, _) = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = s.runs();

    // busy: runs end by timeout after 3 s; fires in between are skipped; never two at once.
    let busy = of(&runs, "busy");
    let ran: Vec<&&Value> = busy.iter().filter(|r| r["status"] != "skipped").collect();
    let skipped = busy.iter().filter(|r| r["status"] == "skipped").count();
    assert!(skipped >= 2, "fires while running are skipped: {busy:#?}");
    for r in &ran {
        if r["status"] == "timeout" {
            let d = r["duration_s"].as_f64().unwrap();
            assert!((3.0..8.0).contains(&d), "stopped at its timeout: {r}");
        }
    }
    let d = s.duck();
    let intervals: Vec<(f64, f64)> = d["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["entry"] == "busy" && r["status"] != "skipped")
        .map(|r| (r["started"].as_f64().unwrap(), r["ended"].as_f64().unwrap()))
        .collect();
    assert!(intervals.len() >= 2);
    for w in intervals.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlapping runs: {intervals:?}");
    }
    // The stopped generator had inserted live orders before it was stopped.
    assert!(
        ran.iter()
            .any(|r| r["log_tail"].as_str().unwrap().contains("generated")),
        "{ran:#?}"
    );

    // failing: attempts 1, 2, 3 of one fire, 1 s then 2 s apart, each with the error.
    let failing = of(&runs, "failing");
    let first: Vec<&&Value> = failing
        .iter()
        .filter(|r| r["scheduled_for"] == failing[0]["scheduled_for"])
        .collect();
    assert_eq!(first.len(), 3, "{failing:#?}");
    let t =
        |r: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap();
    for (i, r) in first.iter().enumerate() {
        assert_eq!(r["attempt"], i as u64 + 1);
        assert_eq!(r["status"], "failed");
        assert_eq!(r["exit_code"], 1);
        assert!(r["log_tail"].as_str().unwrap().contains("error:"), "{r}");
    }
    let gap1 = (t(first[1], "started") - t(first[0], "ended")).num_milliseconds();
    let gap2 = (t(first[2], "started") - t(first[1], "ended")).num_milliseconds();
    // Doubling: 1 s, then 2 s (plus the time to start a process on a busy machine).
    assert!((1000..2500).contains(&gap1), "first backoff {gap1} ms");
    assert!((2000..3500).contains(&gap2), "second backoff {gap2} ms");
    // Every attempt's full output is kept.
    for r in &first {
        assert!(Path::new(r["log"].as_str().unwrap()).exists(), "{r}");
    }
}

#[test]
fn sigterm_gives_running_jobs_the_grace_period_then_stops_them() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    let files = [(
        "live.toml",
        entry(
            "live",
            "* * * * * *",
            "generate",
            &["--follow", "--no-backfill", "--rate", "2"],
            "",
        ),
    )];
    let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let s = sched(
        &env,
        "grace",
        &files,
        "grace_period = \"2s\"\nstop_timeout = \"5s\"\n",
    );
    let child = s.start(&env);
    let marker = s.history.join("running/live.json");
    let start = Instant::now();
    while !marker.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (out, took) = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // It waited the grace period, and the job stopped on SIGTERM (not the SIGKILL 5 s later,
    // which would make it 7 s or more).
    assert!(
        (2.0..6.5).contains(&took.as_secs_f64()),
        "stopped after {took:?}"
    );
    let runs = s.runs();
    let ran: Vec<&Value> = runs.iter().filter(|r| r["status"] != "skipped").collect();
    assert_eq!(ran.len(), 1, "{runs:#?}");
    assert_eq!(ran[0]["status"], "terminated");
    assert!(!marker.exists(), "the marker goes with the run");
    assert!(
        text(&out.stdout).contains("1 terminated"),
        "{}",
        text(&out.stdout)
    );

    // A scheduler killed with SIGKILL mid-run: the next start records the run as
    // interrupted, and does not start a second copy while the orphan still runs.
    let mut child = s.start(&env);
    let start = Instant::now();
    while !marker.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let orphan: Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    let orphan_pid = orphan["pid"].as_u64().unwrap() as i32;
    let _orphan = KillOnDrop(orphan_pid);
    child.kill().unwrap();
    child.wait().unwrap();
    let restarted = chrono::Utc::now();
    let child = s.start(&env);
    // The new scheduler takes the orphan's run as its own: two fires of it are skipped, and
    // no second copy has started.
    s.wait_for(
        Duration::from_secs(20),
        "fires skipped for the orphan",
        |runs| {
            runs.iter()
                .filter(|r| r["status"] == "skipped")
                .filter(|r| {
                    chrono::DateTime::parse_from_rfc3339(r["started"].as_str().unwrap()).unwrap()
                        > restarted
                })
                .count()
                >= 2
        },
    );
    let now: Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!(now["pid"], orphan["pid"]);
    // SAFETY: the orphan is our test's grandchild; SIGTERM stops it.
    unsafe {
        libc::kill(orphan_pid, libc::SIGTERM);
    }
    s.wait_for(Duration::from_secs(20), "interrupted run", |runs| {
        runs.iter().any(|r| r["status"] == "interrupted")
    });
    let (out, _) = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = s.runs();
    let interrupted: Vec<&Value> = runs
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["pid"], orphan["pid"]);
}

#[test]
fn a_missed_fire_is_caught_up_once_where_configured() {
    let env = Env::new(Backend::Sqlite);
    let files = [
        (
            "yes.toml",
            entry("yes", "*/4 * * * * *", "config", &[], "catch_up = true"),
        ),
        (
            "no.toml",
            entry("no", "*/4 * * * * *", "config", &[], "catch_up = false"),
        ),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let s = sched(&env, "catchup", &files, "");
    let child = s.start(&env);
    s.wait_for(Duration::from_secs(15), "a run of both", |runs| {
        !of(runs, "yes").is_empty() && !of(runs, "no").is_empty()
    });
    // One scheduler per history.
    let out = s.cmd(&env, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("another `jobs schedule` is running"),
        "{}",
        text(&out.stderr)
    );
    let (out, _) = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = s.runs().len();
    let down_since = chrono::Utc::now();
    // Down for longer than one period: at least one fire is missed.
    std::thread::sleep(Duration::from_secs(5));
    let child = s.start(&env);
    s.wait_for(Duration::from_secs(10), "a catch-up run", |runs| {
        runs.iter().any(|r| r["trigger"] == "catch_up")
    });
    std::thread::sleep(Duration::from_secs(1));
    let (out, _) = terminate(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = s.runs();
    let caught: Vec<&Value> = runs[before..]
        .iter()
        .filter(|r| r["trigger"] == "catch_up")
        .collect();
    assert_eq!(caught.len(), 1, "{runs:#?}");
    assert_eq!(caught[0]["entry"], "yes");
    assert_eq!(caught[0]["status"], "succeeded");
    // It stands for a fire inside the downtime.
    let missed =
        chrono::DateTime::parse_from_rfc3339(caught[0]["scheduled_for"].as_str().unwrap()).unwrap();
    assert!(missed > down_since, "{missed} vs {down_since}");
}
