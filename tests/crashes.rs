//! Dependencies crashed for real: the server process killed with SIGKILL and started again
//! on the same data, where tests/outages.rs cuts connections with a relay. The source
//! database (a MariaDB of the test's own) under `jobs ingest --follow` and under the stream's
//! reference refresh; the result equals a fault-free run of the same input.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::outage::{free_port, sample, scrape, term};
use common::scratch::ScratchServer;
use common::{Backend, Env};

/// Waits until `f` holds, failing the test after `limit` with `what` and `logs`.
fn wait_for(what: &str, limit: Duration, logs: &[&std::path::Path], mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        if t.elapsed() >= limit {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect();
            panic!("timed out waiting for {what}:\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The source database `kill -9`ed right after a day of orders was committed, while
/// `jobs ingest --follow` reads it and `jobs stream` refreshes its reference tables from it
/// every second; started again 10 s later on the same data. Ingest waits (one line down, one
/// back), resumes at its cursor, and the topic ends with every sale once: the stream's lake
/// holds exactly the 9,000 sales and equals a fault-free run's.
#[test]
fn ingest_and_stream_survive_a_crash_and_restart_of_the_source_database() {
    let env = Env::new(Backend::Sqlite);
    let mut db = ScratchServer::start(env.dir.join("source-mariadb"));
    let metrics = format!("127.0.0.1:{}", free_port());
    let base = std::fs::read_to_string(&env.config).unwrap();
    let text = base
        .replace(
            &format!("database_url = \"{}\"", env.db_url),
            &format!("database_url = \"{}\"", db.url("shop")),
        )
        .replace(
            "redis_url = \"redis://127.0.0.1:6379\"",
            &format!(
                "redis_url = \"redis://127.0.0.1:6379\"\nmetrics_addr = \"{metrics}\"\nreference_refresh = \"1s\"\nsql_url = \"{}\"",
                env.db_url
            ),
        )
        .replace("metrics_addr = \"\"\n", "");
    let cfg = env.dir.join("crash.toml");
    std::fs::write(&cfg, &text).unwrap();
    let clean = env.dir.join("crash-clean.toml");
    std::fs::write(
        &clean,
        text.replace(
            &format!("group_id = \"{}-stream\"", env.id),
            &format!("group_id = \"{}-clean\"", env.id),
        )
        .replace(
            &format!("lake = \"{}\"", env.lake()),
            &format!("lake = \"{}-clean\"", env.lake()),
        )
        .replace(&format!("metrics_addr = \"{metrics}\"\n"), ""),
    )
    .unwrap();
    env.jobs_with(&cfg, &["init"]);
    let day = |until: &str| common::day_of_orders(&env, &cfg, until);
    let (ingest_log, stream_log) = (env.dir.join("ingest.log"), env.dir.join("stream.log"));
    let logs = [ingest_log.as_path(), stream_log.as_path()];
    let spawn = |args: &[&str], log: &std::path::Path| {
        env.cmd_with(&cfg, args)
            .env("JOBS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };
    day("2026-11-17T00:00:00Z");
    let mut ingest = spawn(&["ingest"], &ingest_log);
    let mut stream = spawn(&["stream"], &stream_log);
    let consumed = |n: f64| {
        let metrics = metrics.clone();
        move || sample(&scrape(&metrics), "jobs_stream_events_in_total").unwrap_or(-1.0) >= n
    };
    wait_for(
        "the first day",
        Duration::from_secs(90),
        &logs,
        consumed(3000.0),
    );

    // A day committed, and the server killed at once: ingest is reading it or about to.
    day("2026-11-18T00:00:00Z");
    let t = Instant::now();
    db.crash();
    std::thread::sleep(Duration::from_secs(10));
    db.start_again();
    let down = t.elapsed();
    day("2026-11-19T00:00:00Z");
    wait_for(
        "all three days",
        Duration::from_secs(120),
        &logs,
        consumed(9000.0),
    );
    assert!(term(&mut ingest).success(), "ingest ended badly");
    assert!(term(&mut stream).success(), "stream ended badly");
    env.jobs_with(&cfg, &["stream", "--until-idle"]);
    env.jobs_with(&clean, &["stream", "--until-idle"]);

    common::assert_lakes_equal(&env.lake(), &format!("{}-clean", env.lake()), 9000);

    let ingest_text = std::fs::read_to_string(&ingest_log).unwrap();
    let count = |text: &str, needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    let (failed, back) = (
        count(&ingest_text, "Source database failed"),
        count(&ingest_text, "Source database is back"),
    );
    assert!(failed >= 1 && back >= 1, "{ingest_text}");
    let stream_text = std::fs::read_to_string(&stream_log).unwrap();
    // One line when the reference tables could not be read, one when they could again.
    let refresh = (
        count(&stream_text, "Cannot read the reference tables"),
        count(&stream_text, "Reference tables readable again"),
    );
    assert_eq!(refresh, (1, 1), "{stream_text}");
    println!(
        "source database kill -9, down {:.1} s, restarted: ingest {failed} line(s) down, {back} back; the stream's reference refresh one line down, one back; 9000 sales, lake equal to a fault-free run",
        down.as_secs_f64()
    );
}
