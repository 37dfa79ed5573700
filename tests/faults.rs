//! Faults an operator meets, each with a figure: `jobs stream` restarted again and again after
//! `kill -9` owns its partitions again within seconds and still counts every event once; the
//! batch jobs with the broker down publish nothing, leave the date's earlier run as it was, and
//! rerun cleanly.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, Env};

/// 12 `kill -9` of `jobs stream` in a row, each a second and a half after its start, then
/// `jobs stream --until-idle`: the last run takes seconds, not a session timeout per dead
/// member (it took 137 s for 12 kills before static membership), and has consumed every
/// event exactly once over all the runs.
#[test]
fn a_stream_restarted_after_kill_9_owns_its_partitions_within_seconds() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "4",
        "--orders",
        "40000",
        "--customers",
        "500",
        "--until",
        "2026-11-20T00:00:00Z",
        "--seed",
        "21",
    ]);
    env.jobs(&["ingest", "--once"]);
    // A crash-free run of the same input, for the time it takes and the events it counts.
    let clean = env.config_with(
        "clean.toml",
        &[
            (
                &format!("group_id = \"{}-stream\"", env.id),
                &format!("group_id = \"{}-clean\"", env.id),
            ),
            (
                &format!("lake = \"{}\"", env.lake()),
                &format!("lake = \"{}-clean\"", env.lake()),
            ),
        ],
    );
    let t = Instant::now();
    let out = env.jobs_with(&clean, &["stream", "--until-idle"]);
    let clean_s = t.elapsed();
    let clean_out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(clean_out.contains("consumed 40000 events"), "{clean_out}");

    for _ in 0..12 {
        let mut child = env
            .cmd(&["stream"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let t = Instant::now();
    let out = env
        .cmd(&["stream", "--until-idle"])
        .env("JOBS_LOG", "info")
        .output()
        .unwrap();
    let after_kills = t.elapsed();
    assert!(out.status.success(), "{out:?}");
    println!(
        "after 12 kill -9 in a row: `jobs stream --until-idle` took {:.1} s (a crash-free run of the whole input: {:.1} s)",
        after_kills.as_secs_f64(),
        clean_s.as_secs_f64()
    );
    // The group's session timeout here is 6 s: a run that had to wait out even one dead
    // member would take that much longer than the crash-free run (14.0 s against 5.0 s when
    // the eviction was disabled); the margin below it absorbs a loaded machine.
    assert!(
        after_kills < clean_s + Duration::from_secs(4),
        "the restarted stream waited {after_kills:?} for its partitions (crash-free: {clean_s:?})"
    );
    // Every event counted once over the runs: the lake's windows equal the crash-free run's.
    let digest = |lake: &str| common::python(&["tests/py/compact_check.py", "digest", lake]);
    let ours = digest(&env.lake());
    let theirs = digest(&format!("{}-clean", env.lake()));
    for t in ["sales_windows", "sales_raw"] {
        for k in ["rows", "digest"] {
            assert_eq!(ours[t][k], theirs[t][k], "{t} {k}");
        }
    }
    assert_eq!(ours["sales_raw"]["rows"], 40000);
}

/// `jobs forecast` and `jobs recommend` with the broker unreachable: exit code 1, one line that
/// names the cause; the run date's earlier outputs and manifest are left byte for byte; once
/// the broker is back, a rerun publishes the date again.
#[test]
fn batch_jobs_with_the_broker_down_publish_nothing_and_rerun_cleanly() {
    let env = Env::with_shop_then(Backend::Sqlite, (20, 3000, 120, 4), "[]", None);
    let down = env.config_with(
        "down.toml",
        &[(
            &format!("brokers = \"{}\"", common::BROKERS),
            "brokers = \"127.0.0.1:9\"",
        )],
    );
    let lake = std::path::PathBuf::from(env.lake());
    let snapshot = |dir: &str| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(lake.join(dir))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.display().to_string(), std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    for (job, table) in [("forecast", "forecasts"), ("recommend", "recommendations")] {
        let args = [job, "--run-date", "2026-11-20"];
        let out = env.jobs(&args);
        assert!(out.status.success(), "{out:?}");
        let dir = format!("{table}/run_date=2026-11-20");
        let before = snapshot(&dir);
        assert!(before.iter().any(|(p, _)| p.ends_with("manifest.json")));
        let t = Instant::now();
        let out = env.cmd_with(&down, &args).output().unwrap();
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{job}: {err}");
        assert!(
            err.contains("is the broker running"),
            "{job}: the cause is named: {err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{job}: one line: {err}"
        );
        assert!(
            snapshot(&dir) == before,
            "{job}: the earlier run was touched"
        );
        println!(
            "{job} with the broker down: exit 1 after {:.1} s",
            took.as_secs_f64()
        );
        let out = env.jobs(&args);
        assert!(out.status.success(), "{job} rerun: {out:?}");
        assert!(
            snapshot(&dir)
                .iter()
                .any(|(p, _)| p.ends_with("manifest.json"))
        );
    }
}
