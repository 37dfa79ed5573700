//! `jobs stream` end to end on the real broker and lake: exact aggregates read back by
//! DuckDB, DuckDB's own GROUP BY as the judge, crash loops, late data and dead letters.

mod common;

use std::time::Duration;

use common::{Backend, Env, python};
use serde_json::{Value, json};

const UNTIL: &str = "2026-11-20T00:00:00Z";

fn stream_once(env: &Env) -> String {
    let out = env.jobs(&["stream", "--until-idle"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn insert_seed_example(env: &Env) {
    env.sql(
        "INSERT INTO product_sales (transaction_id, product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date) VALUES
         (3001, 1, 'Dell Inspiron', 'Laptop', 'Dell', 2, 50000, '2026-11-20 13:05:00'),
         (3002, 11, 'Apple iPhone 12', 'Smartphone', 'Apple', 3, 80000, '2026-11-20 13:20:00'),
         (3003, 5, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, 65000, '2026-11-20 13:40:00')",
    );
}

/// Seed 001's "aggregated results": Dell Inspiron 2 / 100000, Apple iPhone 12 3 / 240000,
/// Lenovo ThinkPad 1 / 65000, as [name, units, revenue, orders] sorted by name.
fn seed_expected() -> Value {
    json!([
        ["Apple iPhone 12", 3, "240000.00", 1],
        ["Dell Inspiron", 2, "100000.00", 1],
        ["Lenovo ThinkPad", 1, "65000.00", 1]
    ])
}

#[test]
fn the_seed_example_is_exact_in_duckdb_and_kafka() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    insert_seed_example(&env);
    env.jobs(&["ingest", "--once"]);
    let out = stream_once(&env);
    assert!(
        out.contains("consumed 3 events: 3 aggregated, 0 late, 0 dead-lettered"),
        "{out}"
    );
    let rows = python(&["tests/py/stream_check.py", "seed-windows", &env.lake()]);
    assert_eq!(rows, seed_expected());
    let msgs = python(&[
        "tests/py/stream_check.py",
        "topic",
        common::BROKERS,
        &env.topic("windows"),
        &format!("{}-stream", env.id),
    ]);
    let hourly: Vec<&Value> = msgs
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m[1] == "1h")
        .collect();
    assert_eq!(hourly.len(), 3, "{msgs}");
    assert!(
        hourly
            .iter()
            .any(|m| m[4] == "Dell Inspiron" && m[5] == 2 && m[6] == "100000.00" && m[8] == "1"),
        "{msgs}"
    );
    // 1 hour x 3 + 1 day x 3 + (1h every 5m: 12 windows each) x 3
    assert_eq!(msgs.as_array().unwrap().len(), 3 + 3 + 36, "{msgs}");
}

#[test]
fn the_lake_on_s3_holds_the_same_exact_windows() {
    let env = Env::new(Backend::Sqlite);
    let s3 = env.config_with("s3.toml", &[(
        &format!("lake = \"{}\"", env.lake()),
        &format!(
            "lake = \"s3://lake/{}\"\n[s3]\nendpoint = \"http://127.0.0.1:8333\"\nregion = \"us-east-1\"\naccess_key_id = \"jobs\"\nsecret_access_key = \"jobs-secret\"",
            env.id
        ),
    )]);
    env.jobs(&["init"]);
    insert_seed_example(&env);
    env.jobs(&["ingest", "--once"]);
    let out = env
        .cmd_with(&s3, &["stream", "--until-idle"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows = python(&["tests/py/stream_check.py", "s3-seed-windows", &env.id]);
    assert_eq!(rows, seed_expected());
}

#[test]
fn windows_equal_duckdbs_own_group_by() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "2",
        "--orders",
        "20000",
        "--seed",
        "5",
        "--until",
        UNTIL,
        "--customers",
        "300",
    ]);
    env.jobs(&["ingest", "--once"]);
    let out = stream_once(&env);
    assert!(
        out.contains("consumed 20000 events: 20000 aggregated, 0 late, 0 dead-lettered"),
        "{out}"
    );
    let c = python(&["tests/py/stream_check.py", "compare-groupby", &env.lake()]);
    for w in ["1h", "1d", "1h_every_5m"] {
        assert_eq!(c[w]["missing"], json!(0), "{w}: {c}");
        assert_eq!(c[w]["extra"], json!(0), "{w}: {c}");
        assert!(c[w]["rows"].as_u64().unwrap() > 0, "{c}");
    }
    assert_eq!(c["raw"], json!(20000), "{c}");
    assert_eq!(c["raw_duplicates"], json!(0), "{c}");
}

#[test]
fn late_events_and_bad_messages_keep_the_invariant() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    let sale = |id: i64, ts: &str, qty: i64| {
        json!({"kind": "sale", "transaction_id": id, "product_id": 1, "product_name": "Dell Inspiron",
               "product_category": "Laptop", "brand": "Dell", "quantity_sold": qty,
               "price_per_unit": "50000.00", "transaction_date": ts})
    };
    let spec = json!([
        sale(1, "2026-11-20T10:00:00", 1),
        sale(2, "2026-11-20T12:00:00", 2),
        // 11:30 is 30 min behind 12:00: past the default 10 min lateness.
        sale(3, "2026-11-20T11:30:00", 5),
        // 11:55 is within it.
        sale(4, "2026-11-20T11:55:00", 1),
        {"kind": "bytes", "hex": "7b226e6f74223a226176726f227d"},
        {"kind": "bytes", "hex": "0000000063020406"},
        {"kind": "truncated", "transaction_id": 5, "product_id": 1, "product_name": "Dell Inspiron", "product_category": "Laptop", "brand": "Dell", "quantity_sold": 1, "price_per_unit": "1.00", "transaction_date": "2026-11-20T12:01:00"},
        sale(6, "2026-11-20T12:02:00", -3),
        // Wider than the SQL dashboard tables: dead-lettered, not a flush that fails forever.
        {"kind": "sale", "transaction_id": 7, "product_id": 1, "product_name": "Dell Inspiron",
         "product_category": "Laptop", "brand": "Dell", "quantity_sold": 1, "price_per_unit": "1.00",
         "transaction_date": "2026-11-20T12:03:00", "country": "X".repeat(65)},
    ]);
    let spec_file = env.dir.join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    python(&[
        "tests/py/stream_check.py",
        "produce",
        common::BROKERS,
        &env.topic("product_sales"),
        spec_file.to_str().unwrap(),
    ]);
    let out = stream_once(&env);
    assert!(
        out.contains("consumed 9 events: 3 aggregated, 1 late, 5 dead-lettered"),
        "{out}"
    );
    let dlq = python(&[
        "tests/py/stream_check.py",
        "headers",
        common::BROKERS,
        &env.topic("dlq"),
    ]);
    let reasons: Vec<String> = dlq
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["jobs.reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 5, "{dlq}");
    assert!(
        reasons
            .iter()
            .any(|r| r == "country is longer than 64 characters"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("magic byte")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unknown schema id 99")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("truncated")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("quantity_sold is negative: -3")),
        "{reasons:?}"
    );
    assert!(
        dlq.as_array()
            .unwrap()
            .iter()
            .all(|h| h["jobs.stage"] == "stream" && h["jobs.offset"].is_string())
    );
    let late = python(&[
        "tests/py/stream_check.py",
        "headers",
        common::BROKERS,
        &env.topic("late"),
    ]);
    assert_eq!(late.as_array().unwrap().len(), 1, "{late}");
    let rows = python(&["tests/py/stream_check.py", "lake-rows", &env.lake()]);
    assert_eq!(rows["late_sales"].as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows["late_sales"][0][2], "3", "{rows}");
    assert_eq!(
        rows["sales_raw"].as_array().unwrap().len(),
        4,
        "late events are history too: {rows}"
    );
    // Hours 10, 11 (the 11:55 sale, within the lateness) and 12; the late 11:30 sale is in none.
    let seed = python(&["tests/py/stream_check.py", "seed-windows", &env.lake()]);
    assert_eq!(
        seed,
        json!([
            ["Dell Inspiron", 1, "50000.00", 1],
            ["Dell Inspiron", 1, "50000.00", 1],
            ["Dell Inspiron", 2, "100000.00", 1]
        ]),
        "{seed}"
    );
}

/// A fresh env with ORDERS generated sales ingested, and a crash-free reference run of the
/// stream in its own group (`<id>-clean`) and lake (`<lake>-clean`).
/// Generates and ingests a shop, then streams it once without crashing (group `<id>-clean`,
/// lake `<lake>-clean`, SQL outputs into `clean_sql`, or a SQLite file).
fn clean_reference_run(orders: &str, seed: &str, clean_sql: Option<&str>) -> Env {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "2",
        "--orders",
        orders,
        "--seed",
        seed,
        "--until",
        UNTIL,
        "--customers",
        "300",
    ]);
    env.jobs(&["ingest", "--once"]);
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
            (
                "roll_interval = \"1s\"",
                &format!(
                    "roll_interval = \"1s\"\nsql_url = \"{}\"",
                    clean_sql.map_or_else(|| sqlite_outputs(&env), str::to_string)
                ),
            ),
        ],
    );
    let out = env
        .cmd_with(&clean, &["stream", "--until-idle"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    env
}

/// A SQLite database for a run's dashboard and top-N tables.
fn sqlite_outputs(env: &Env) -> String {
    format!("sqlite://{}", env.dir.join("clean-outputs.db").display())
}

/// Where two lists first differ, as text for an assertion message.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
        return format!("{a} against {b}");
    };
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("item {i}: crash-free {} against {}", a[i], b[i]),
        None => format!("{} items crash-free against {}", a.len(), b.len()),
    }
}

/// The `<id>-stream` group's lake tables, window messages and business outputs (topics,
/// lake, SQL in `run_sql`, Redis) equal the clean run's (SQL in `clean_sql`): no loss, no
/// duplicate.
fn assert_equal_to_clean_run(env: &Env, raw_rows: usize, clean_sql: &str, run_sql: &str) {
    let business = |lake: &str, group: &str, sql: &str| {
        python(&[
            "tests/py/outputs_check.py",
            "all",
            lake,
            common::BROKERS,
            &env.id,
            &format!("{}-{group}", env.id),
            sql,
            "redis://127.0.0.1:6379",
        ])
    };
    let a = business(&format!("{}-clean", env.lake()), "clean", clean_sql);
    let b = business(&env.lake(), "stream", run_sql);
    assert!(
        !a["topics"]["top"].as_array().unwrap().is_empty()
            && !a["sql"]["sales_by_country"].as_array().unwrap().is_empty()
            && !a["redis"].as_object().unwrap().is_empty(),
        "the clean run wrote business outputs: {a}"
    );
    for t in ["sales_by_country", "sales_by_card_type", "top_products"] {
        assert_ne!(a["sql"][t][0][0], "error", "{t}: {}", a["sql"][t]);
    }
    for part in ["lake", "sql", "redis"] {
        for (k, v) in a[part].as_object().unwrap() {
            assert!(
                *v == b[part][k],
                "{part} {k} differs from the crash-free run"
            );
        }
    }
    for k in ["totals", "top", "segments", "alerts"] {
        assert!(
            a["topics"][k] == b["topics"][k],
            "topic {k} differs from the crash-free run: {} (each run's log in {})",
            first_difference(&a["topics"][k], &b["topics"][k]),
            env.dir.display()
        );
        assert_eq!(b["topics"][format!("{k}_duplicates")], 0, "{k} duplicates");
    }
    assert_eq!(b["topics"]["totals_regressions"], 0, "totals never go back");

    let a = python(&[
        "tests/py/stream_check.py",
        "lake-rows",
        &format!("{}-clean", env.lake()),
    ]);
    let b = python(&["tests/py/stream_check.py", "lake-rows", &env.lake()]);
    for t in ["sales_windows", "sales_raw", "late_sales"] {
        assert_eq!(
            a[t].as_array().unwrap().len(),
            b[t].as_array().unwrap().len(),
            "{t} row counts"
        );
        assert!(a[t] == b[t], "{t} differs from the crash-free run");
    }
    assert_eq!(a["sales_raw"].as_array().unwrap().len(), raw_rows);
    let group = |g: &str| {
        python(&[
            "tests/py/stream_check.py",
            "topic",
            common::BROKERS,
            &env.topic("windows"),
            &format!("{}-{g}", env.id),
        ])
    };
    let (ta, tb) = (group("clean"), group("stream"));
    assert!(!ta.as_array().unwrap().is_empty());
    assert_eq!(
        ta.as_array().unwrap().len(),
        tb.as_array().unwrap().len(),
        "window messages: no loss, no duplicate"
    );
    assert!(ta == tb, "window messages differ from the crash-free run");
}

#[test]
fn kill_9_loop_ends_equal_to_a_crash_free_run() {
    // SQL outputs on both server dialects: the crash-free run's in PostgreSQL, the crashed
    // runs' in MariaDB; they must hold the same rows.
    let pg = Env::new(Backend::Postgres);
    let maria = Env::new(Backend::MariaDb);
    let env = clean_reference_run("60000", "11", Some(&pg.db_url));
    // The same input, killed with SIGKILL at 10+ random moments; small files so kills land
    // in every phase of a flush.
    // A killed member holds its group for the session timeout: keep it short here.
    let crashy = env.config_with(
        "crashy.toml",
        &[
            (
                "roll_interval = \"1s\"",
                "roll_interval = \"300ms\"\nroll_bytes = 150000",
            ),
            (
                "\"session.timeout.ms\" = \"6000\"",
                "\"session.timeout.ms\" = \"1500\"\n\"heartbeat.interval.ms\" = \"300\"",
            ),
            (
                "redis_url = ",
                &format!("sql_url = \"{}\"\nredis_url = ", maria.db_url),
            ),
        ],
    );
    // Kill each run at a random moment after it has checkpointed at least once more.
    let state = env.dir.join(format!(
        "lake/_state/stream/{}-stream/{}",
        env.id,
        env.topic("product_sales")
    ));
    let newest = || -> std::time::SystemTime {
        std::fs::read_dir(&state)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
                    .max()
            })
            .ok()
            .flatten()
            .unwrap_or(std::time::UNIX_EPOCH)
    };
    let mut rng_state = 12345u64;
    let mut kills = 0;
    let mut finished = false;
    while kills < 12 && !finished {
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let extra = Duration::from_millis((rng_state >> 33) % 600);
        let before = newest();
        // Each run's log is kept (debug for the recovery scan) to explain a failure.
        let log = std::fs::File::create(env.dir.join(format!("crashy-{kills}.log"))).unwrap();
        let mut child = env
            .cmd_with(&crashy, &["stream", "--until-idle"])
            .env(
                "JOBS_LOG",
                "info,jobs::io::kafka=debug,jobs::stream::recover=debug",
            )
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while newest() <= before && std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(extra);
        if child.try_wait().unwrap().is_some() {
            finished = true;
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
        }
    }
    assert!(
        kills >= 10,
        "only {kills} kills happened before the run finished"
    );
    // The killed runs made progress and checkpointed it...
    let checkpoints = std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
    assert!(
        checkpoints > 0,
        "no checkpoint survived the kills in {}",
        state.display()
    );
    let out = env
        .cmd_with(&crashy, &["stream", "--until-idle"])
        .env(
            "JOBS_LOG",
            "info,jobs::io::kafka=debug,jobs::stream::recover=debug",
        )
        .output()
        .unwrap();
    std::fs::write(env.dir.join("crashy-final.log"), &out.stderr).unwrap();
    assert!(out.status.success(), "{out:?}");
    // ...so the last run resumed rather than started over.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let consumed: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        consumed < 60_000,
        "the final run consumed everything again: {stdout}"
    );

    assert_equal_to_clean_run(&env, 60_000, &pg.db_url, &maria.db_url);
}

#[test]
fn two_processes_one_killed_halfway_union_is_exact() {
    let env = clean_reference_run("40000", "21", None);
    let pair = env.config_with(
        "pair.toml",
        &[
            (
                "roll_interval = \"1s\"",
                "roll_interval = \"300ms\"\nroll_bytes = 150000",
            ),
            (
                "\"session.timeout.ms\" = \"6000\"",
                "\"session.timeout.ms\" = \"1500\"\n\"heartbeat.interval.ms\" = \"300\"",
            ),
        ],
    );
    let spawn = || {
        env.cmd_with(&pair, &["stream", "--until-idle"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    // Kill A once the pair has checkpointed a few times (both are working by then).
    let state = env.dir.join(format!(
        "lake/_state/stream/{}-stream/{}",
        env.id,
        env.topic("product_sales")
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0) < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(400));
    let a_was_running = a.try_wait().unwrap().is_none();
    a.kill().unwrap();
    a.wait().unwrap();
    assert!(b.wait().unwrap().success(), "the survivor fails");
    assert!(a_was_running, "A finished before it could be killed");
    // Whatever the survivor did not own when it finished, a restart completes.
    let out = env
        .cmd_with(&pair, &["stream", "--until-idle"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    assert_equal_to_clean_run(&env, 40_000, &sqlite_outputs(&env), &env.db_url);
}

/// Two product ids whose keys land in different partitions of a 3-partition topic.
fn products_in_two_partitions() -> (i64, i64) {
    let p = |id: i64| jobs::io::kafka::partition_for(id.to_string().as_bytes(), 3);
    let a = 1;
    let b = (2..100).find(|b| p(*b) != p(a)).unwrap();
    (a, b)
}

#[test]
fn an_idle_partition_does_not_stall_emission_and_sigterm_is_graceful() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    let cfg = env.config_with(
        "idle.toml",
        &[(
            "roll_interval = \"1s\"",
            "roll_interval = \"300ms\"\nidle_timeout = \"2s\"\nwindows = [\"1h\"]",
        )],
    );
    let (active, quiet) = products_in_two_partitions();
    // The quiet partition: one sale at 10:30, then nothing. Its own watermark (10:20) would
    // hold its 10:00 window open forever.
    let sale = |id: i64, product: i64, ts: &str| {
        json!({"kind": "sale", "transaction_id": id, "product_id": product, "product_name": format!("Product {product}"),
               "product_category": "Laptop", "brand": "Dell", "quantity_sold": 1, "price_per_unit": "1.00", "transaction_date": ts})
    };
    let spec_file = env.dir.join("spec.json");
    std::fs::write(
        &spec_file,
        json!([
            sale(1, active, "2026-11-20T10:10:00"),
            sale(2, quiet, "2026-11-20T10:30:00")
        ])
        .to_string(),
    )
    .unwrap();
    python(&[
        "tests/py/stream_check.py",
        "produce",
        common::BROKERS,
        &env.topic("product_sales"),
        spec_file.to_str().unwrap(),
    ]);
    let mut job = env
        .cmd_with(&cfg, &["stream"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The active partition keeps moving: a sale per 300 ms, event time a minute apart from 11:00.
    let trickle = std::process::Command::new(common::root().join(".venv/bin/python"))
        .args([
            "tests/py/stream_check.py",
            "trickle",
            common::BROKERS,
            &env.topic("product_sales"),
            &active.to_string(),
            "2026-11-20T11:00:00",
            "60",
            "300",
        ])
        .current_dir(common::root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut got = json!([]);
    while std::time::Instant::now() < deadline {
        got = python(&[
            "tests/py/stream_check.py",
            "windows-at",
            &env.lake(),
            "2026-11-20 10:00:00",
        ]);
        if got.as_array().unwrap().len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut trickle = trickle;
    let _ = trickle.kill();
    let _ = trickle.wait();
    assert_eq!(
        got,
        json!([active.min(quiet), active.max(quiet)]),
        "both 10:00 windows closed, the quiet partition's too"
    );
    // SIGTERM: a final flush and checkpoint, exit 0.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &job.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = job.wait().unwrap();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(job.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("0 dead-lettered"), "{stdout}");
}
