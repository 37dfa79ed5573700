//! `jobs ingest` end to end, for each of MariaDB, PostgreSQL and SQLite: real database,
//! real broker, and an outside reader (Python confluent-kafka + fastavro) as the judge.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::{Backend, Env, kill_after, python};
use serde_json::{Value, json};

const UNTIL: &str = "2026-11-20T00:00:00Z";

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Every valid row is in the topic exactly once, equal field by field, and nothing else is.
fn assert_exact(check: &Value, valid: u64) {
    assert_eq!(check["db_valid"], json!(valid), "{check}");
    assert_eq!(check["topic_messages"], json!(valid), "{check}");
    assert_eq!(check["duplicates"], json!(0), "{check}");
    assert_eq!(check["missing_count"], json!(0), "{check}");
    assert_eq!(check["unexpected"], json!([]), "{check}");
    assert_eq!(check["mismatched_count"], json!(0), "{check}");
    assert_eq!(check["bad_header_or_key"], json!(0), "{check}");
}

fn ingest_matches_the_database(backend: Backend) {
    let env = Env::new(backend);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "3",
        "--orders",
        "10000",
        "--seed",
        "7",
        "--until",
        UNTIL,
        "--customers",
        "300",
    ]);
    let out = env.jobs(&["ingest", "--once"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ingested 10036 rows (0 dead-lettered)"));
    assert_exact(&env.check("product_sales"), 10_000);
    let products = env.check("products");
    assert_eq!(products["db_valid"], json!(36), "{products}");
    assert_eq!(products["missing_count"], json!(0), "{products}");
    assert_eq!(products["mismatched_count"], json!(0), "{products}");
    assert_eq!(products["bad_header_or_key"], json!(0), "{products}");

    // A rerun with nothing new sends nothing; a price change is published once.
    let out = env.jobs(&["ingest", "--once"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ingested 0 rows"),
        "{out:?}"
    );
    env.sql("UPDATE products SET price = 12345.67 WHERE id = 3");
    let out = env.jobs(&["ingest", "--once"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ingested 1 rows"),
        "{out:?}"
    );
    let products = env.check("products");
    assert_eq!(products["topic_messages"], json!(37), "{products}");
    assert_eq!(
        products["mismatched_count"],
        json!(0),
        "the latest message carries the new price: {products}"
    );
}

/// Inserts `n` good sales with ids from `first_id`, dated and created at `ts`.
fn insert_sales(env: &Env, first_id: i64, n: i64, ts: &str) {
    let rows: Vec<(i64, String)> = (first_id..first_id + n)
        .map(|i| (i, ts.to_string()))
        .collect();
    insert_sales_at(env, &rows);
}

/// Inserts good sales with the given ids, each dated and created at its timestamp.
fn insert_sales_at(env: &Env, rows: &[(i64, String)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(i, ts)| format!("({i}, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, 65000.00, '{ts}', NULL, 'India', 'Visa', '{ts}')"))
        .collect();
    env.sql(&format!(
        "INSERT INTO product_sales (transaction_id, product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date, customer_id, country, card_type, created_at) VALUES {}",
        values.join(", ")
    ));
}

fn rows_at_the_watermark_timestamp_arrive_once(backend: Backend) {
    let env = Env::new(backend);
    env.jobs(&["init"]);
    let ts = "2026-11-20 10:00:00.000000";
    insert_sales(&env, 1, 3, ts);
    env.jobs(&["ingest", "--once"]);
    // Same cursor timestamp (created_at), higher ids: must not be skipped, and 1..3 not resent.
    insert_sales(&env, 4, 3, ts);
    env.jobs(&["ingest", "--once"]);
    insert_sales(&env, 7, 1, "2026-11-20 10:00:00.000001");
    env.jobs(&["ingest", "--once"]);
    assert_exact(&env.check("product_sales"), 7);
}

/// Cursor order that is not id order: MySQL reads a batch's ids from the cursor index and the
/// rows by a primary-key range (sorted client-side), or row by row when the ids are scattered.
/// Every row arrives once, whatever the layout.
fn rows_out_of_id_order_arrive_once(backend: Backend) {
    let env = Env::with_batch(backend, 4);
    env.jobs(&["init"]);
    let at = |s: i64| format!("2026-11-20 10:00:{:02}.{:06}", s / 10, (s % 10) * 100_000);
    let mut rows = Vec::new();
    // Dense ids, created in reverse id order.
    rows.extend((1..=12).map(|id| (id, at(130 - id * 10))));
    // Scattered ids in cursor order (a range read would not pay off).
    rows.extend((1..=5).map(|k| (k * 1000, at(200 + k))));
    // Dense ids, shuffled timestamps, some shared.
    rows.extend((13..=24).map(|id| (id, at(300 + (id * 7) % 5))));
    insert_sales_at(&env, &rows);
    env.jobs(&["ingest", "--once"]);
    assert_exact(&env.check("product_sales"), 29);
    // New rows behind scattered ones, and one that fills a gap of the id range.
    insert_sales_at(&env, &[(25, at(400)), (999, at(401)), (26, at(401))]);
    env.jobs(&["ingest", "--once"]);
    assert_exact(&env.check("product_sales"), 32);
}

fn kill_9_then_rerun_loses_and_duplicates_nothing(backend: Backend) {
    let env = Env::with_batch(backend, 700);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "2",
        "--orders",
        "20000",
        "--seed",
        "3",
        "--until",
        UNTIL,
        "--customers",
        "100",
    ]);
    // Kill ingest at different points of its run, adding rows in between. Each round's log
    // (debug level: checkpoints, scan ranges, what recovery found) is shown if the count is off.
    let mut logs = String::new();
    for (round, batches) in [2usize, 5, 3].into_iter().enumerate() {
        let child = env.spawn(&["ingest"]);
        let (seen, log) = kill_after(
            child,
            "Batch acknowledged",
            batches,
            Duration::from_secs(60),
        );
        assert!(
            seen >= 1,
            "round {round}: ingest made no progress before the kill"
        );
        let _ = writeln!(
            logs,
            "--- round {round}, killed after {seen} batches:\n{log}"
        );
        env.jobs(&[
            "generate",
            "--days",
            "1",
            "--orders",
            "1000",
            "--seed",
            &(10 + round).to_string(),
            "--until",
            UNTIL,
            "--customers",
            "100",
        ]);
    }
    let (_, log) = ingest_once_with_debug_log(&env);
    let _ = writeln!(logs, "--- final run:\n{log}");
    let check = env.check("product_sales");
    assert_eq!(check["duplicates"], json!(0), "{check}\n{logs}");
    assert_exact(&check, 23_000);

    // The worst moment: every row of a batch acknowledged, its checkpoint not yet written.
    env.jobs(&[
        "generate",
        "--days",
        "1",
        "--orders",
        "3000",
        "--seed",
        "99",
        "--until",
        UNTIL,
        "--customers",
        "100",
    ]);
    // Batch 2 was delivered in full; batch 3, sent while batch 2 was being acknowledged, may
    // have been delivered too (wholly or in part), and batch 1's checkpoint may still have been
    // lingering in the producer when the process died (then batch 1 is recovered as well).
    // Either way none of it is sent again.
    let (recovered, log) = crash_before_checkpoint_then_rerun(&env, 2);
    // The exact comparison first: if the count is off, it shows whether rows were resent.
    let check = env.check("product_sales");
    assert_eq!(check["duplicates"], json!(0), "{check}\nrerun: {log}");
    assert_exact(&check, 26_000);
    assert!(
        (700..=2100).contains(&recovered),
        "the batches past the checkpoint are recovered, not resent: {log}"
    );
}

/// Runs `ingest --once` aborted after the `n`-th acknowledged batch, before its checkpoint,
/// then reruns it (debug log on) and returns how many rows the rerun found already
/// delivered, with the rerun's output for failure messages.
fn crash_before_checkpoint_then_rerun(env: &Env, n: usize) -> (u64, String) {
    let crashed = env
        .cmd(&["ingest", "--once"])
        .env("JOBS_FAILPOINT", format!("ingest-before-checkpoint:{n}"))
        .output()
        .unwrap();
    assert!(
        !crashed.status.success(),
        "the failpoint should abort ingest"
    );
    let (stdout, log) = ingest_once_with_debug_log(env);
    let recovered = stdout
        .split("; ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no recovered count in {stdout:?}"));
    (recovered, log)
}

/// Runs `ingest --once` with the debug log on and fails the test, showing that log, unless it
/// succeeds. Returns its stdout and everything it printed, for failure messages.
fn ingest_once_with_debug_log(env: &Env) -> (String, String) {
    let out = env
        .cmd(&["ingest", "--once"])
        .env("JOBS_LOG", "jobs=debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ingest --once failed: {log}");
    (stdout, log)
}

/// A table's first run crashes before its first batch is checkpointed, in topics that already
/// hold byte-identical messages from another source: the rerun recovers its own batches and
/// still sends every other row. Recovery starts at the end offsets checkpointed before the first
/// message; reading from the beginning, it would take the other source's messages for ours.
#[test]
fn first_run_crash_recovers_from_its_own_start() {
    let env = Env::with_batch(Backend::Sqlite, 700);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate", "--days", "2", "--orders", "3000", "--seed", "5", "--until", UNTIL,
    ]);
    // The same rows under another source name: the same messages, byte for byte.
    let first = env.config_with(
        "first.toml",
        &[("[ingest]\n", "[ingest]\nsource_name = \"first\"\n")],
    );
    env.jobs_with(&first, &["ingest", "--once"]);
    assert_exact(&env.check("product_sales"), 3000);

    // Batch 1 was delivered in full and batch 2 perhaps in part; neither is sent again.
    let (recovered, log) = crash_before_checkpoint_then_rerun(&env, 1);
    assert!(
        (700..=1400).contains(&recovered),
        "the first batch is recovered, not resent: {log}"
    );
    let check = env.check("product_sales");
    assert_eq!(check["topic_messages"], json!(6000), "{check}");
    assert_eq!(check["duplicates"], json!(3000), "{check}");
    assert_eq!(check["missing_count"], json!(0), "{check}");
    assert_eq!(check["mismatched_count"], json!(0), "{check}");
}

fn bad_rows_are_dead_lettered_and_ingest_goes_on(backend: Backend) {
    let env = Env::new(backend);
    env.jobs(&["init"]);
    insert_sales(&env, 1, 5, "2026-11-20 09:00:00");
    let cols = "transaction_id, product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date";
    env.sql(&format!("INSERT INTO product_sales ({cols}) VALUES (6, 5, NULL, 'Laptop', 'Lenovo', 1, 10.00, '2026-11-20 09:00:01')"));
    env.sql(&format!("INSERT INTO product_sales ({cols}) VALUES (7, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', -2, 10.00, '2026-11-20 09:00:02')"));
    env.sql(&format!("INSERT INTO product_sales ({cols}) VALUES (8, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, 10.00, NULL)"));
    // A row the cursor itself cannot place: dead-lettered through the id cursor.
    env.sql(&format!("INSERT INTO product_sales ({cols}, created_at) VALUES (12, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, 10.00, '2026-11-20 09:00:05', NULL)"));
    env.sql(&format!("INSERT INTO product_sales ({cols}) VALUES (9, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 3000000000, 10.00, '2026-11-20 09:00:03')"));
    let mut expected_dlq = vec![6, 7, 8, 9, 12];
    if backend == Backend::Sqlite {
        // SQLite keeps what it is given: too many decimals, and a date that is not a date.
        env.sql(&format!("INSERT INTO product_sales ({cols}) VALUES (10, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, '19.999', '2026-11-20 09:00:04')"));
        env.sql(&format!("INSERT INTO product_sales ({cols}) VALUES (11, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, 10.00, 'yesterday')"));
        expected_dlq.extend([10, 11]);
        expected_dlq.sort();
    }
    insert_sales(&env, 100, 5, "2026-11-20 09:30:00");
    let out = env.jobs(&["ingest", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("({} dead-lettered)", expected_dlq.len())),
        "{stdout}"
    );
    let check = env.check("product_sales");
    assert_exact(&check, 10);
    assert_eq!(ids(&check["db_invalid_ids"]), expected_dlq, "{check}");
    assert_eq!(ids(&check["dlq_ids"]), expected_dlq, "{check}");
    let reasons = &check["dlq_reasons"];
    assert_eq!(reasons["6"], json!("product_name is NULL"));
    assert_eq!(reasons["7"], json!("quantity_sold is negative: -2"));
    assert_eq!(reasons["8"], json!("transaction_date is NULL"));
    assert_eq!(
        reasons["12"],
        json!("created_at is NULL or not a timestamp")
    );
    assert!(
        reasons["9"].as_str().unwrap().contains("cannot be encoded"),
        "{reasons}"
    );
    if backend == Backend::Sqlite {
        assert!(
            reasons["10"]
                .as_str()
                .unwrap()
                .contains("more than 2 decimal places"),
            "{reasons}"
        );
        assert_eq!(
            reasons["11"],
            json!("transaction_date is not a timestamp: \"yesterday\"")
        );
    }
    // Dead letters are not sent twice either.
    env.jobs(&["ingest", "--once"]);
    assert_eq!(ids(&env.check("product_sales")["dlq_ids"]), expected_dlq);
}

fn export_json_equals_the_topic(backend: Backend) {
    let env = Env::new(backend);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate", "--days", "1", "--orders", "200", "--until", UNTIL,
    ]);
    env.jobs(&["ingest", "--once"]);
    env.sql("UPDATE products SET price = 999.99 WHERE id IN (1, 2, 11)");
    env.jobs(&["ingest", "--once"]);
    let out_dir = env.dir.join("export");
    let group = format!("{}-export", env.id);
    let topic = env.topic("product_updates");
    let run = || {
        env.jobs(&[
            "export-json",
            "--topic",
            &topic,
            "--out",
            out_dir.to_str().unwrap(),
            "--group",
            &group,
            "--until-idle",
        ])
    };
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exported 39 lines"),
        "{out:?}"
    );
    // A second run of the same group has nothing new: offsets were committed.
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exported 0 lines"),
        "{out:?}"
    );
    let check = python(&[
        "tests/py/check_export.py",
        "--brokers",
        common::BROKERS,
        "--topic",
        &topic,
        "--dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(check["topic"], json!(39), "{check}");
    assert_eq!(check["files"], json!(39), "{check}");
    assert_eq!(check["differing_partitions"], json!([]), "{check}");
}

/// A producer queue far smaller than a batch: ingest hands messages over in runs
/// (`io::produce::Batcher`), and a run the queue cannot take is handed over again from the
/// first message it refused, once the broker drained some. Nothing lost, nothing twice.
#[test]
fn a_full_producer_queue_loses_and_duplicates_nothing() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate", "--days", "2", "--orders", "6000", "--seed", "5", "--until", UNTIL,
    ]);
    let small = env.config_with(
        "small-queue.toml",
        &[(
            r#""log_level" = "3""#,
            r#""log_level" = "3"
"queue.buffering.max.messages" = "300""#,
        )],
    );
    let out = env.jobs_with(&small, &["ingest", "--once"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ingested 6036 rows (0 dead-lettered)"),
        "{out:?}"
    );
    assert_exact(&env.check("product_sales"), 6_000);
}

macro_rules! for_each_backend {
    ($($name:ident),*) => {
        mod mariadb { use super::*; $(#[test] fn $name() { super::$name(Backend::MariaDb) })* }
        mod postgres { use super::*; $(#[test] fn $name() { super::$name(Backend::Postgres) })* }
        mod sqlite { use super::*; $(#[test] fn $name() { super::$name(Backend::Sqlite) })* }
    };
}

for_each_backend!(
    ingest_matches_the_database,
    rows_at_the_watermark_timestamp_arrive_once,
    rows_out_of_id_order_arrive_once,
    kill_9_then_rerun_loses_and_duplicates_nothing,
    bad_rows_are_dead_lettered_and_ingest_goes_on,
    export_json_equals_the_topic
);

/// Recovery scans (`kafka::read_to_end`, used by ingest and the stream) read every message
/// from their start offset to the end, wherever the start falls in the broker's record
/// batches. Tansu 0.6.0 reports a partition's end offset as its newest record batch's base
/// offset + 1 and answers a fetch that starts inside a batch from the next batch on: a scan
/// that trusted the reported end skipped a checkpoint's partition whose offset fell inside the
/// newest batch, and recovery resent that batch's rows.
#[test]
fn scans_read_from_inside_the_newest_record_batch() {
    use rdkafka::Offset;
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    let topic = env.topic("product_sales");
    let cfg = jobs::config::KafkaConfig {
        brokers: common::BROKERS.to_string(),
        ..Default::default()
    };
    // Two record batches in partition 0: offsets 0-9, then 10-12 (a long linger and a flush
    // after each group make one batch of each).
    let producer: ThreadedProducer<_> = jobs::io::kafka::client_config(&cfg)
        .set("linger.ms", "200")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (from, to) in [(0, 10), (10, 13)] {
        for i in from..to {
            let v = format!("m{i}");
            producer
                .send(BaseRecord::<str, str>::to(&topic).partition(0).payload(&v))
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    let read = |start: i64| -> Vec<(i64, String)> {
        jobs::io::kafka::read_to_end(
            &cfg,
            &format!("{}-scan", env.id),
            &[(topic.clone(), 0, Offset::Offset(start))],
            "test scan",
            |m| {
                let v = String::from_utf8_lossy(m.payload()?).into_owned();
                Some((m.offset(), v))
            },
        )
        .unwrap()
    };
    let expect =
        |start: i64| -> Vec<(i64, String)> { (start..13).map(|i| (i, format!("m{i}"))).collect() };
    // Inside the first batch, at the newest batch's base, inside it, at and past the end.
    for start in [0, 5, 10, 11, 12, 13, 20] {
        assert_eq!(read(start), expect(start), "scan from offset {start}");
    }
    let ends = jobs::io::kafka::end_offsets(&cfg, &[(topic.as_str(), 3)]).unwrap();
    assert_eq!(
        ends,
        vec![
            (topic.clone(), 0, 13),
            (topic.clone(), 1, 0),
            (topic.clone(), 2, 0)
        ]
    );
}
