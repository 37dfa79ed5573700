//! Outages of the services around `jobs ingest --follow` and `jobs stream`, each 30 s while
//! data flows: the S3 lake, then the SQL sink and Redis, then the source database (which
//! the stream also reads its reference tables from), then S3 answering every request with 503.
//! Each outage is a relay in front of the real service taken down (connections reset, new ones
//! refused) or answering 503 itself. Both jobs wait them out
//! and the result equals a fault-free run of the same input: the lake's tables row for row,
//! the SQL tables, the Redis sorted sets.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::outage::{Relay, free_port, sample, scrape, term};
use common::{Backend, Env};

const OUTAGE: Duration = Duration::from_secs(30);
/// How long S3 answers 503 (object_store's own retries take up to 15 s of it).
const SLOW_DOWN: Duration = Duration::from_secs(30);
/// No partition counts as idle during these tests: an idle partition follows the others'
/// watermark, and with input arriving live (one partition's batch ahead of another's) that
/// makes sales late that a run over the whole input at once counts, a difference of timing,
/// not of the faults under test.
const NOT_IDLE: &str = "idle_timeout = \"1h\"";
const S3: &str = "[s3]\nendpoint = \"http://127.0.0.1:PORT\"\nregion = \"us-east-1\"\naccess_key_id = \"jobs\"\nsecret_access_key = \"jobs-secret\"\n";

/// The tests of this file run one at a time: each loads the broker, SeaweedFS and both
/// cores for minutes. Run beside the outage test, the broker-crash test once waited over
/// 120 s for its third day (CI, 2026-12-07; the cause was not found, and it now prints the
/// ingest, stream and broker logs when that wait times out).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `f` holds; false after `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !f() {
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// Waits until `f` holds, failing the test after `limit` with `what`.
fn wait_for(what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(wait_until(limit, f), "timed out waiting for {what}");
}

/// Every row of the stream's SQL tables, in a stable order.
fn sql_tables(db: &str) -> String {
    let mut out = String::new();
    for t in [
        "stream_sales_by_country",
        "stream_sales_by_card_type",
        "top_products",
    ] {
        let q = format!("COPY (SELECT * FROM {t} ORDER BY {t}::text) TO STDOUT");
        let o = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atc", &q])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}

/// Every top-N sorted set of one stream group in Redis, keys without the group prefix.
fn redis_sets(group: &str) -> Vec<(String, String)> {
    let prefix = format!("jobs:{group}:top:");
    let keys = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}*")])
        .output()
        .unwrap();
    let mut sets: Vec<(String, String)> = String::from_utf8_lossy(&keys.stdout)
        .lines()
        .map(|k| {
            let v = Command::new("redis-cli")
                .args(["ZRANGE", k, "0", "-1", "WITHSCORES"])
                .output()
                .unwrap();
            (
                k.trim_start_matches(&prefix).to_string(),
                String::from_utf8_lossy(&v.stdout).to_string(),
            )
        })
        .collect();
    sets.sort();
    sets
}

#[test]
fn ingest_and_stream_wait_out_outages_of_the_lake_the_sinks_and_the_source_and_lose_nothing() {
    let _serial = one_at_a_time();
    let env = Env::new(Backend::Postgres);
    env.jobs(&["init"]);
    let (source, sink, redis, s3) = (
        Relay::start("127.0.0.1:5432"),
        Relay::start("127.0.0.1:5432"),
        Relay::start("127.0.0.1:6379"),
        Relay::start("127.0.0.1:8333"),
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let db = env.id.clone();
    let base = std::fs::read_to_string(&env.config).unwrap();
    let lake_line = format!("lake = \"{}\"", env.lake());
    let write = |name: &str, text: String| {
        let p = env.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Through the relays: ingest reads the source (and the stream its reference tables) via
    // one, the stream's SQL tables, Redis and the lake go via the others.
    let faulty = write(
        "faulty.toml",
        base.replace(
            &format!("127.0.0.1:5432/{db}\""),
            &format!("127.0.0.1:{}/{db}\"", source.port),
        )
        .replace(&lake_line, &format!("lake = \"s3://lake/{db}\""))
        .replace(
            "redis_url = \"redis://127.0.0.1:6379\"",
            &format!(
                "redis_url = \"redis://{}\"\nsql_url = \"postgres://postgres@{}/{db}\"\nmetrics_addr = \"{metrics}\"\nreference_refresh = \"2s\"\n{NOT_IDLE}",
                redis.addr(),
                sink.addr()
            ),
        )
        .replace("metrics_addr = \"\"\n", "")
            + &S3.replace("PORT", &s3.port.to_string()),
    );

    common::day_of_orders(&env, &env.config, "2026-11-17T00:00:00Z");
    let mut ingest = env
        .cmd_with(&faulty, &["ingest"])
        .env("JOBS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.join("ingest.log")).unwrap())
        .spawn()
        .unwrap();
    let mut stream = env
        .cmd_with(&faulty, &["stream"])
        .env("JOBS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.join("stream.log")).unwrap())
        .spawn()
        .unwrap();
    let m = |name: &str| sample(&scrape(&metrics), name).unwrap_or(-1.0);
    let consumed = |n: f64| move || m("jobs_stream_events_in_total") >= n;
    let up = |dep: &str| format!("jobs_stream_dependency_up{{dependency=\"{dep}\"}}");
    let retries =
        |dep: &str| format!("jobs_stream_dependency_retries_total{{dependency=\"{dep}\"}}");
    wait_for("the first day", Duration::from_secs(60), consumed(3000.0));

    // The lake (S3) down while a day of sales arrives and is flushed.
    let t = Instant::now();
    s3.down();
    common::day_of_orders(&env, &env.config, "2026-11-18T00:00:00Z");
    wait_for("a flush to find the lake down", OUTAGE, || {
        m(&up("lake")) == 0.0
    });
    std::thread::sleep(OUTAGE.saturating_sub(t.elapsed()));
    s3.up();
    wait_for("the lake back", Duration::from_secs(30), || {
        m(&up("lake")) == 1.0
    });
    wait_for("the second day", Duration::from_secs(60), consumed(6000.0));
    let lake_retries = m(&retries("lake"));

    // The SQL sink and Redis down together; the SQL tables come first in a flush, so Redis
    // is found down once the SQL sink is back.
    let t = Instant::now();
    sink.down();
    redis.down();
    common::day_of_orders(&env, &env.config, "2026-11-19T00:00:00Z");
    wait_for("a flush to find the SQL sink down", OUTAGE, || {
        m(&up("sql")) == 0.0
    });
    std::thread::sleep(OUTAGE.saturating_sub(t.elapsed()));
    sink.up();
    wait_for(
        "a flush to find Redis down",
        Duration::from_secs(40),
        || m(&up("redis")) == 0.0,
    );
    std::thread::sleep(Duration::from_secs(3));
    redis.up();
    wait_for("Redis back", Duration::from_secs(30), || {
        m(&up("redis")) == 1.0
    });
    wait_for("the third day", Duration::from_secs(60), consumed(9000.0));

    // The source database down: ingest cannot read the fourth day, the stream cannot read its
    // reference tables; both carry on once it is back.
    let t = Instant::now();
    source.down();
    common::day_of_orders(&env, &env.config, "2026-11-20T00:00:00Z");
    std::thread::sleep(OUTAGE.saturating_sub(t.elapsed()));
    source.up();
    wait_for("the fourth day", Duration::from_secs(90), consumed(12000.0));

    // S3 up but overloaded: every request answered 503 while a day is flushed.
    let t = Instant::now();
    s3.answer_503();
    common::day_of_orders(&env, &env.config, "2026-11-21T00:00:00Z");
    wait_for("a flush to meet the 503s", OUTAGE, || m(&up("lake")) == 0.0);
    std::thread::sleep(SLOW_DOWN.saturating_sub(t.elapsed()));
    s3.stop_503();
    wait_for("the lake answering again", Duration::from_secs(40), || {
        m(&up("lake")) == 1.0
    });
    wait_for("the fifth day", Duration::from_secs(60), consumed(15000.0));
    let lake_retries_503 = m(&retries("lake")) - lake_retries;

    let (sql_retries, redis_retries) = (m(&retries("sql")), m(&retries("redis")));
    assert!(term(&mut ingest).success(), "ingest ended badly");
    assert!(term(&mut stream).success(), "stream ended badly");
    // Closing the last windows: the same lake, now with every dependency up.
    env.jobs_with(&faulty, &["stream", "--until-idle"]);

    // The fault-free run of the same topic, into a lake, a database and Redis keys of its own.
    let clean_db = format!("{db}_clean");
    env.sql(&format!("CREATE DATABASE {clean_db}"));
    let clean = write(
        "clean.toml",
        base.replace(
            &format!("group_id = \"{db}-stream\""),
            &format!("group_id = \"{db}-clean\""),
        )
        .replace(&lake_line, &format!("lake = \"s3://lake/{db}-clean\""))
        .replace(
            "redis_url = \"redis://127.0.0.1:6379\"",
            &format!(
                "redis_url = \"redis://127.0.0.1:6379\"\nsql_url = \"postgres://postgres@127.0.0.1:5432/{clean_db}\""
            ),
        ) + &S3.replace("PORT", "8333"),
    );
    env.jobs_with(&clean, &["stream", "--until-idle"]);

    let digest = |prefix: &str| common::python(&["tests/py/compact_check.py", "digest-s3", prefix]);
    let (ours, theirs) = (digest(&db), digest(&format!("{db}-clean")));
    for t in ["sales_windows", "sales_raw", "segment_sales"] {
        for k in ["rows", "digest"] {
            assert_eq!(ours[t][k], theirs[t][k], "lake {t} {k}");
        }
    }
    assert_eq!(ours["sales_raw"]["rows"], 15000);
    let ours_sql = sql_tables(&db);
    assert!(ours_sql.lines().count() > 100, "{ours_sql}");
    assert!(ours_sql == sql_tables(&clean_db), "the SQL tables differ");
    let ours_redis = redis_sets(&format!("{db}-stream"));
    assert!(!ours_redis.is_empty());
    assert!(
        ours_redis == redis_sets(&format!("{db}-clean")),
        "the Redis sets differ"
    );

    // One line when a dependency goes down and one when it is back, not one per retry.
    let log = std::fs::read_to_string(env.dir.join("stream.log")).unwrap();
    let count = |needle: &str, dep: &str| {
        log.lines()
            .filter(|l| l.contains(needle) && l.contains(&format!("dependency=\"{dep}\"")))
            .count()
    };
    // The lake had two outages: unreachable, then answering 503.
    for (dep, outages) in [("lake", 2), ("sql", 1), ("redis", 1)] {
        assert_eq!(count("Dependency failed", dep), outages, "{dep}:\n{log}");
        assert_eq!(count("Dependency is back", dep), outages, "{dep}:\n{log}");
    }
    let ingest_log = std::fs::read_to_string(env.dir.join("ingest.log")).unwrap();
    let waited = BufReader::new(ingest_log.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("Source database failed"))
        .count();
    assert!(
        waited >= 1,
        "ingest never saw the source down:\n{ingest_log}"
    );
    assert!(
        lake_retries >= 1.0
            && lake_retries_503 >= 1.0
            && sql_retries >= 1.0
            && redis_retries >= 1.0
    );
    println!(
        "outages of {} s each: lake {lake_retries} retries, SQL sink {sql_retries}, Redis {redis_retries}, source database (ingest) {waited} outage(s); S3 answering 503 for {} s: {lake_retries_503} retries; 15000 sales, lake, SQL and Redis equal to a fault-free run",
        OUTAGE.as_secs(),
        SLOW_DOWN.as_secs()
    );
    let _ = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-c",
            &format!("DROP DATABASE IF EXISTS {clean_db}"),
        ])
        .output();
}

/// A broker of this test's own on object storage (Tansu `--storage-engine s3://` on the local
/// SeaweedFS), so that a `kill -9` and a restart keep its topics and the groups' offsets.
struct Broker {
    port: u16,
    storage: String,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn start(env: &Env) -> Broker {
        let mut b = Broker {
            port: free_port(),
            storage: format!("s3://tansu-{}/", env.id.replace('_', "-")),
            log: env.dir.join("broker.log"),
            child: None,
        };
        b.up();
        b
    }

    fn up(&mut self) {
        let home = std::env::var("HOME").unwrap();
        let cache = std::env::var("JOBS_STACK_CACHE").unwrap_or(format!("{home}/.cache/jobs"));
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(format!("{cache}/tansu-0.6.0/bin/tansu"))
            .args([
                "broker",
                "--storage-engine",
                &self.storage,
                "--listener-url",
                &listener,
            ])
            .args(["--advertised-listener-url", &listener])
            .envs([
                ("AWS_ACCESS_KEY_ID", "jobs"),
                ("AWS_SECRET_ACCESS_KEY", "jobs-secret"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_ENDPOINT", "http://127.0.0.1:8333"),
                ("AWS_ALLOW_HTTP", "true"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Tansu (scripts/stack up installs it)");
        self.child = Some(child);
        wait_for("the broker to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The broker `kill -9`ed and restarted twice while `jobs ingest --follow` publishes and
/// `jobs stream` consumes: the topic ends with every sale once (a fresh group reads exactly
/// the source's rows), and the stream's lake equals that fresh, fault-free run's.
#[test]
fn ingest_and_stream_survive_two_broker_crashes_and_count_every_sale_once() {
    let _serial = one_at_a_time();
    let env = Env::new(Backend::Sqlite);
    let mut broker = Broker::start(&env);
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = env.config_with(
        "broker.toml",
        &[
            (
                &format!("brokers = \"{}\"", common::BROKERS),
                &format!("brokers = \"127.0.0.1:{}\"", broker.port),
            ),
            (
                "metrics_addr = \"\"",
                &format!("metrics_addr = \"{metrics}\"\n{NOT_IDLE}"),
            ),
        ],
    );
    env.jobs_with(&cfg, &["init"]);
    common::day_of_orders(&env, &env.config, "2026-11-18T00:00:00Z");
    let spawn = |args: &[&str], log: &str| {
        env.cmd_with(&cfg, args)
            .env("JOBS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.dir.join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut ingest = spawn(&["ingest"], "ingest.log");
    let mut stream = spawn(&["stream"], "stream.log");
    let metrics = metrics.as_str();
    let consumed = |n: f64| {
        move || sample(&scrape(metrics), "jobs_stream_events_in_total").unwrap_or(0.0) >= n
    };
    wait_for("the first day", Duration::from_secs(90), consumed(3000.0));

    // Down while nothing is sent, then while a day is being published.
    let t = Instant::now();
    broker.kill();
    common::day_of_orders(&env, &env.config, "2026-11-19T00:00:00Z");
    std::thread::sleep(Duration::from_secs(5));
    broker.up();
    wait_for("the second day", Duration::from_secs(120), consumed(6000.0));
    common::day_of_orders(&env, &env.config, "2026-11-20T00:00:00Z");
    std::thread::sleep(Duration::from_millis(700));
    broker.kill();
    std::thread::sleep(Duration::from_secs(5));
    broker.up();
    let logs = |f: &str| std::fs::read_to_string(env.dir.join(f)).unwrap_or_default();
    if !wait_until(Duration::from_secs(120), consumed(9000.0)) {
        panic!(
            "timed out waiting for the third day\n--- ingest.log\n{}\n--- stream.log\n{}\n--- broker log\n{}",
            logs("ingest.log"),
            logs("stream.log"),
            std::fs::read_to_string(&broker.log).unwrap_or_default()
        );
    }
    let took = t.elapsed();
    let status = (term(&mut ingest), term(&mut stream));
    assert!(status.0.success(), "ingest: {}", logs("ingest.log"));
    assert!(status.1.success(), "stream: {}", logs("stream.log"));
    env.jobs_with(&cfg, &["stream", "--until-idle"]);

    // A fresh group over the same topic: exactly the source's 9000 sales, no more.
    let clean = env.config_with(
        "clean.toml",
        &[
            (
                &format!("brokers = \"{}\"", common::BROKERS),
                &format!("brokers = \"127.0.0.1:{}\"", broker.port),
            ),
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
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("consumed 9000 events: 9000 aggregated"),
        "{out}"
    );
    common::assert_lakes_equal(&env.lake(), &format!("{}-clean", env.lake()), 9000);
    println!(
        "two broker kill -9 and restarts (5 s down each): ingest and stream carried on; 9000 sales once; {:.0} s from the first kill to the last sale consumed",
        took.as_secs_f64()
    );
}

/// A size-limited filesystem (tmpfs) for a lake, unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&path).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test mounts a tmpfs (as root, as CI runs): {o:?}"
        );
        SmallDisk { path }
    }

    /// Fills what is left with one file.
    fn fill(&self) {
        let o = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M"])
            .arg(format!("of={}", self.path.join("filler").display()))
            .output()
            .unwrap();
        assert!(!o.status.success(), "dd stops at a full disk: {o:?}");
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The lake's filesystem full while `jobs stream` flushes: the flush waits, naming the cause
/// once ("No space left on device"), no partial file is visible to a reader meanwhile (DuckDB
/// reads every Parquet file there), and once space is freed the stream carries on to a lake
/// equal to a fault-free run's.
#[test]
fn a_full_lake_disk_is_waited_out_with_no_partial_file_and_an_exact_resume() {
    let _serial = one_at_a_time();
    let env = Env::new(Backend::Sqlite);
    let disk = SmallDisk::mount(env.dir.join("small"), "64m");
    let lake = disk.path.join("lake");
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = env.config_with(
        "small.toml",
        &[
            (
                &format!("lake = \"{}\"", env.lake()),
                &format!("lake = \"{}\"", lake.display()),
            ),
            (
                "metrics_addr = \"\"",
                &format!("metrics_addr = \"{metrics}\"\n{NOT_IDLE}"),
            ),
        ],
    );
    env.jobs(&["init"]);
    common::day_of_orders(&env, &env.config, "2026-11-19T00:00:00Z");
    env.jobs(&["ingest", "--once"]);
    let log = env.dir.join("stream.log");
    let mut stream = env
        .cmd_with(&cfg, &["stream"])
        .env("JOBS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let m = |name: &str| sample(&scrape(&metrics), name).unwrap_or(-1.0);
    let up = "jobs_stream_dependency_up{dependency=\"lake\"}";
    wait_for("the first day flushed", Duration::from_secs(60), || {
        m("jobs_stream_events_in_total") >= 3000.0 && m("jobs_stream_checkpoints_total") >= 1.0
    });
    disk.fill();
    common::day_of_orders(&env, &env.config, "2026-11-20T00:00:00Z");
    env.jobs(&["ingest", "--once"]);
    wait_for(
        "a flush to find the disk full",
        Duration::from_secs(60),
        || m(up) == 0.0,
    );
    std::thread::sleep(Duration::from_secs(5));
    // Meanwhile a reader sees only whole files.
    let lake_s = lake.display().to_string();
    let during = common::python(&["tests/py/compact_check.py", "digest", &lake_s]);
    assert!(
        during["sales_raw"]["rows"].as_u64().unwrap() > 0,
        "{during}"
    );
    disk.free();
    wait_for("the lake back", Duration::from_secs(60), || m(up) == 1.0);
    wait_for("the second day", Duration::from_secs(60), || {
        m("jobs_stream_events_in_total") >= 6000.0
    });
    let retries = m("jobs_stream_dependency_retries_total{dependency=\"lake\"}");
    assert!(term(&mut stream).success());
    env.jobs_with(&cfg, &["stream", "--until-idle"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Dependency failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert!(
        failed[0].contains("No space left on device"),
        "{}",
        failed[0]
    );

    let clean = env.clean_config();
    env.jobs_with(&clean, &["stream", "--until-idle"]);
    common::assert_lakes_equal(&lake_s, &format!("{}-clean", env.lake()), 6000);
    println!(
        "a full lake disk: the flush waited ({retries} retries), no partial file read, 6000 sales once after space was freed"
    );
}
