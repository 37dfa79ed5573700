//! Faults an operator meets, each with a figure: here, `jobs stream` restarted again and again
//! after `kill -9` owns its partitions again within seconds (static group membership), and
//! still ends with every event counted once.

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
