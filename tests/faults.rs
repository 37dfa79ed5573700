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
    let clean = env.clean_config();
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
    common::assert_lakes_equal(&env.lake(), &format!("{}-clean", env.lake()), 40000);
}

/// `jobs stream` killed with its checkpoint inside the broker's last record batch (all sales
/// in one batch of a one-partition topic), then `--until-idle`: Tansu 0.6.0 reports the end
/// of the partition at once and answers a fetch from inside that batch with nothing, so the
/// restarted stream must step back until the batch comes, skip what its checkpoint covers,
/// and count the rest. The lake equals a crash-free run's, row for row.
#[test]
fn a_stream_restarted_inside_the_last_record_batch_steps_back_and_counts_the_tail() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "2",
        "--orders",
        "6000",
        "--customers",
        "300",
        "--until",
        "2026-11-20T00:00:00Z",
        "--seed",
        "23",
    ]);
    env.jobs(&["ingest", "--once"]);
    let one = env.topic("one_batch");
    let copy = common::python(&[
        "tests/py/cdc_check.py",
        "batch",
        "--topic",
        &env.topic("product_sales"),
        "--to",
        &one,
        "--group",
        &format!("{}-copy", env.id),
        "--tail",
        "0",
    ]);
    assert_eq!(copy["copied"], 6000, "{copy}");
    let sales = (
        format!("product_sales = \"{}\"", env.topic("product_sales")),
        format!("product_sales = \"{one}\""),
    );
    let cfg = env.config_with(
        "one.toml",
        &[
            (&sales.0, &sales.1),
            (
                "roll_interval = \"1s\"",
                "roll_interval = \"1s\"\nroll_bytes = 20000",
            ),
        ],
    );
    let clean = env.config_with(
        "one-clean.toml",
        &[
            (&sales.0, &sales.1),
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
    let out = env.jobs_with(&clean, &["stream", "--until-idle"]);
    let clean_out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(clean_out.contains("consumed 6000 events"), "{clean_out}");

    // Killed after its fifth checkpoint: the checkpoint is well inside the one batch.
    let child = env
        .cmd_with(&cfg, &["stream"])
        .env("JOBS_LOG", "jobs=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (seen, log) = common::kill_after(
        child,
        "Flushed and checkpointed.",
        5,
        Duration::from_secs(120),
    );
    assert_eq!(seen, 5, "{log}");
    let out = env
        .cmd_with(&cfg, &["stream", "--until-idle"])
        .env("JOBS_LOG", "info")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Tansu answers a fetch inside its last record batch with nothing, and no end of
    // partition either: the stall probe steps back (an early end of partition would too).
    let steps = stderr
        .matches("Nothing came from the checkpoint's offset; stepping back.")
        .count()
        + stderr
            .matches("End of partition reported before the checkpoint's offset was reached")
            .count();
    println!("restarted inside the last record batch: {steps} steps back; {stdout}");
    assert!(steps >= 1, "no step back: {stderr}");
    assert!(!stdout.contains("consumed 0 events"), "{stdout}");
    common::assert_lakes_equal(&env.lake(), &format!("{}-clean", env.lake()), 6000);
}

/// `jobs forecast` and `jobs recommend` with the broker unreachable: exit code 1, one line that
/// names the cause; the run date's earlier outputs and manifest are left byte for byte; once
/// the broker is back, a rerun publishes the date again.
#[test]
fn batch_jobs_with_the_broker_or_registry_down_publish_nothing_and_rerun_cleanly() {
    let env = Env::with_shop_then(Backend::Sqlite, (20, 3000, 120, 4), "[]", None);
    let down = env.config_with(
        "down.toml",
        &[(
            &format!("brokers = \"{}\"", common::BROKERS),
            "brokers = \"127.0.0.1:9\"",
        )],
    );
    let no_registry = env.dir.join("no-registry.toml");
    std::fs::write(
        &no_registry,
        std::fs::read_to_string(&env.config).unwrap()
            + "\n[schema_registry]\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
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
        // The schema registry unreachable: the same, naming it.
        let out = env.cmd_with(&no_registry, &args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{job}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{job}: {err}");
        assert!(
            lines[0].contains("schema registry unreachable: POST http://127.0.0.1:9/"),
            "{job}: {err}"
        );
        assert!(
            snapshot(&dir) == before,
            "{job}: touched without a registry"
        );
        let out = env.jobs(&args);
        assert!(out.status.success(), "{job} rerun: {out:?}");
        assert!(
            snapshot(&dir)
                .iter()
                .any(|(p, _)| p.ends_with("manifest.json"))
        );
    }
    // The long-running jobs wait for the registry: one line when it fails (not one per retry),
    // and SIGTERM while it is down stops them with exit 1 and the cause.
    for job in ["stream", "ingest"] {
        let child = env
            .cmd_with(&no_registry, &[job])
            .env("JOBS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(6));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{job}: {err}");
        let waits = err
            .lines()
            .filter(|l| l.contains("Dependency failed") && l.contains("schema registry"))
            .count();
        assert_eq!(waits, 1, "{job}: {err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("error:") && l.contains("schema registry unreachable")),
            "{job}: {err}"
        );
        println!(
            "{job} with the schema registry unreachable: waited 6 s with one line, SIGTERM: exit 1"
        );
    }
}

/// 10,000 hostile messages (random bytes, truncated Avro, unknown schema ids, 1 MB values,
/// valid Avro with absurd dates, quantities and prices, empty names) mixed into two days of
/// real sales on `product_sales`: every one is dead-lettered once with a reason of its kind,
/// the job stays up, `consumed = aggregated + late + dead-lettered` holds exactly, and the
/// lake equals a run over the real sales alone.
#[test]
fn hostile_messages_are_each_dead_lettered_once_and_the_lake_is_as_without_them() {
    let shop = |env: &Env, until: &str| {
        env.jobs(&[
            "generate",
            "--days",
            "1",
            "--orders",
            "5000",
            "--customers",
            "300",
            "--until",
            until,
            "--seed",
            "9",
        ]);
        env.jobs(&["ingest", "--once"]);
    };
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    shop(&env, "2026-11-19T00:00:00Z");
    let sent = env.dir.join("hostile.json");
    let sent = sent.to_str().unwrap();
    let produced = common::python(&[
        "tests/py/hostile.py",
        "produce",
        common::BROKERS,
        &env.topic("product_sales"),
        "10000",
        "1",
        sent,
    ]);
    assert_eq!(produced["produced"], 10000, "{produced}");
    shop(&env, "2026-11-20T00:00:00Z");
    let out = env.jobs(&["stream", "--until-idle"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("consumed 20000 events"), "{stdout}");
    assert!(stdout.contains("10000 dead-lettered"), "{stdout}");
    let checked = common::python(&[
        "tests/py/hostile.py",
        "check",
        common::BROKERS,
        &env.topic("dlq"),
        sent,
    ]);
    assert_eq!(checked["dead_lettered"], 10000, "{checked}");
    assert_eq!(checked["n_missing"], 0, "{checked}");
    assert_eq!(checked["n_wrong"], 0, "{checked}");
    assert_eq!(checked["twice"], serde_json::json!([]), "{checked}");

    // The same real sales without the hostile ones, in an env of their own.
    let plain = Env::new(Backend::Sqlite);
    plain.jobs(&["init"]);
    shop(&plain, "2026-11-19T00:00:00Z");
    shop(&plain, "2026-11-20T00:00:00Z");
    plain.jobs(&["stream", "--until-idle"]);
    let digest = |lake: &str| common::python(&["tests/py/compact_check.py", "digest", lake]);
    let (ours, theirs) = (digest(&env.lake()), digest(&plain.lake()));
    for k in ["rows", "digest"] {
        assert_eq!(
            ours["sales_windows"][k], theirs["sales_windows"][k],
            "sales_windows {k}"
        );
    }
    // Raw and late rows carry their source offsets, which the hostile messages moved.
    for t in ["sales_raw", "late_sales"] {
        assert_eq!(ours[t]["rows"], theirs[t]["rows"], "{t} rows");
    }
    assert_eq!(ours["sales_raw"]["rows"], 10000);
    println!(
        "10000 hostile messages {}: all dead-lettered once, reasons e.g. {}",
        produced["kinds"], checked["example_reasons"]
    );
}

/// Secrets given in the configuration (a database password, a SASL password, the S3 secret
/// key, the dashboard token) appear nowhere a user or a log collector reads: `jobs config`,
/// the logs of ingest, stream and forecast at debug level, the metrics, every file of the
/// lake (manifests and checkpoints included) and the one error line of a failed connection.
#[test]
fn secrets_never_appear_in_logs_metrics_config_manifests_or_error_lines() {
    const SECRETS: [&str; 4] = [
        "Db-Pw-7f3a",
        "Sasl-Pw-91c2",
        "S3-Secret-4e8d",
        "Dash-Token-c0de",
    ];
    let env = Env::new(Backend::Postgres);
    let metrics = format!("127.0.0.1:{}", common::outage::free_port());
    let with_pw = env
        .db_url
        .replace("postgres@", &format!("postgres:{}@", SECRETS[0]));
    let cfg = env.config_with(
        "secrets.toml",
        &[
            (
                &format!("database_url = \"{}\"", env.db_url),
                &format!("database_url = \"{with_pw}\""),
            ),
            (
                "\"log_level\" = \"3\"",
                &format!(
                    "\"log_level\" = \"3\"\n\"sasl.password\" = \"{}\"",
                    SECRETS[1]
                ),
            ),
            (
                "metrics_addr = \"\"",
                &format!("metrics_addr = \"{metrics}\""),
            ),
        ],
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[s3]\nsecret_access_key = \"{}\"\n[dashboard]\ntoken = \"{}\"\n",
        SECRETS[2], SECRETS[3]
    ));
    std::fs::write(&cfg, text).unwrap();

    let seen = std::cell::RefCell::new(String::new());
    let run = |args: &[&str]| {
        let out = env
            .cmd_with(&cfg, args)
            .env("JOBS_LOG", "debug")
            .output()
            .unwrap();
        let mut seen = seen.borrow_mut();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
        out.status.success()
    };
    assert!(run(&["config"]));
    assert!(run(&["init"]));
    assert!(run(&[
        "generate",
        "--days",
        "14",
        "--orders",
        "4000",
        "--customers",
        "200",
        "--until",
        "2026-11-20T00:00:00Z",
    ]));
    assert!(run(&["ingest", "--once"]));
    // The stream, scraped while it runs.
    let mut stream = env
        .cmd_with(&cfg, &["stream"])
        .env("JOBS_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.join("stream.log")).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut scraped = String::new();
    while t.elapsed() < Duration::from_secs(60)
        && !scraped.contains("jobs_stream_events_in_total 4000")
    {
        std::thread::sleep(Duration::from_millis(300));
        scraped = common::outage::scrape(&metrics);
    }
    assert!(
        scraped.contains("jobs_stream_events_in_total 4000"),
        "{scraped}"
    );
    seen.borrow_mut().push_str(&scraped);
    std::process::Command::new("kill")
        .args(["-TERM", &stream.id().to_string()])
        .status()
        .unwrap();
    assert!(stream.wait().unwrap().success());
    let log = std::fs::read_to_string(env.dir.join("stream.log")).unwrap();
    seen.borrow_mut().push_str(&log);
    assert!(run(&["stream", "--until-idle"]));
    assert!(run(&[
        "--database-url",
        &with_pw,
        "forecast",
        "--run-date",
        "2026-11-20"
    ]));
    // A failed connection: one error line, which names the server, not the password.
    let refused = format!("postgres://postgres:{}@127.0.0.1:1/x", SECRETS[0]);
    assert!(!run(&["--database-url", &refused, "ingest", "--once"]));
    let mut seen = seen.into_inner();
    assert!(
        seen.contains("error: database postgres://postgres:***@127.0.0.1:1/x"),
        "{seen}"
    );

    for entry in walk(std::path::Path::new(&env.lake())) {
        seen.push_str(&String::from_utf8_lossy(&std::fs::read(&entry).unwrap()));
    }
    assert!(
        seen.contains("manifest") || seen.contains("\"rerun\""),
        "the manifest was read"
    );
    for s in SECRETS {
        assert!(
            !seen.contains(s),
            "{s} leaked:\n{}",
            seen.lines()
                .filter(|l| l.contains(s))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!(
        "secrets checked in {} bytes of output, metrics and lake files",
        seen.len()
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
