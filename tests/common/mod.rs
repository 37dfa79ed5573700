//! Shared harness for integration tests: a fresh database and fresh topics per test, the
//! real `jobs` binary, and the outside Python clients of the project venv.

#![allow(dead_code)]

pub mod outage;
pub mod scratch;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BROKERS: &str = "127.0.0.1:9092";

/// The source databases under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MariaDb,
    Postgres,
    Sqlite,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// One test's world: its own database, topics, folder and config file.
pub struct Env {
    pub backend: Backend,
    pub id: String,
    pub dir: PathBuf,
    pub db_url: String,
    pub config: PathBuf,
    admin_url: Option<(String, String)>,
}

impl Env {
    pub fn new(backend: Backend) -> Env {
        Env::with_batch(backend, 2000)
    }

    pub fn with_batch(backend: Backend, batch_size: usize) -> Env {
        let id = format!("t{}", unique());
        let dir = std::env::temp_dir().join(format!("jobs-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (db_url, admin_url) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.join("shop.db").display()), None),
            Backend::MariaDb => {
                let admin = "mysql://root@127.0.0.1:3306/mysql".to_string();
                (
                    format!("mysql://root@127.0.0.1:3306/{id}"),
                    Some((admin, id.clone())),
                )
            }
            Backend::Postgres => {
                let admin = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
                (
                    format!("postgres://postgres@127.0.0.1:5432/{id}"),
                    Some((admin, id.clone())),
                )
            }
        };
        if let Some((admin, name)) = &admin_url {
            block_on(async {
                let db = jobs::io::db::Db::connect(admin)
                    .await
                    .expect("database server up (scripts/stack up)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&db.pool)
                    .await
                    .unwrap();
            });
        }
        let config = dir.join("jobs.toml");
        std::fs::write(
            &config,
            format!(
                r#"database_url = "{db_url}"
lake = "{lake}"
[kafka]
brokers = "{BROKERS}"
partitions = 3
[kafka.properties]
"session.timeout.ms" = "6000"
"log_level" = "3"
[topics]
product_sales = "{id}_product_sales"
product_updates = "{id}_product_updates"
dlq = "{id}_dlq"
ingest_state = "{id}_ingest_state"
windowed_product_sales = "{id}_windows"
late_sales = "{id}_late"
aggregated_product_sales = "{id}_totals"
top_products = "{id}_top"
low_stock_alerts = "{id}_alerts"
customer_segment_sales = "{id}_segments"
sales_predictions = "{id}_predictions"
product_recommendations = "{id}_recommendations"
[ingest]
batch_size = {batch_size}
poll_interval = "100ms"
[stream]
group_id = "{id}-stream"
metrics_addr = ""
roll_interval = "1s"
redis_url = "redis://127.0.0.1:6379"
"#,
                lake = dir.join("lake").display(),
            ),
        )
        .unwrap();
        Env {
            backend,
            id,
            dir,
            db_url,
            config,
            admin_url,
        }
    }

    /// The lake folder.
    pub fn lake(&self) -> String {
        self.dir.join("lake").display().to_string()
    }

    /// A copy of this env's config with other lines appended (later keys win by section).
    pub fn config_with(&self, name: &str, replace: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        for (from, to) in replace {
            assert!(text.contains(from), "{from} not in config");
            text = text.replace(from, to);
        }
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// This env's config for a fault-free run beside the one under test: its own stream
    /// group and its own lake (`<lake>-clean`), the same topics.
    pub fn clean_config(&self) -> PathBuf {
        self.config_with(
            "clean.toml",
            &[
                (
                    &format!("group_id = \"{}-stream\"", self.id),
                    &format!("group_id = \"{}-clean\"", self.id),
                ),
                (
                    &format!("lake = \"{}\"", self.lake()),
                    &format!("lake = \"{}-clean\"", self.lake()),
                ),
            ],
        )
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}_{name}", self.id)
    }

    /// A `jobs` command with this env's config.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(&self.config, args)
    }

    /// A `jobs` command with another config file.
    pub fn cmd_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jobs"));
        c.arg("--config")
            .arg(config)
            .args(args)
            .current_dir(&self.dir);
        c.env_remove("JOBS_DATABASE_URL");
        c
    }

    /// Runs `jobs ARGS` and fails the test unless it succeeds.
    pub fn jobs(&self, args: &[&str]) -> Output {
        succeeded(self.cmd(args), args)
    }

    /// Runs `jobs ARGS` with another config file and fails the test unless it succeeds.
    pub fn jobs_with(&self, config: &Path, args: &[&str]) -> Output {
        succeeded(self.cmd_with(config, args), args)
    }

    /// A shop of `days` days ending 2026-11-20 (`orders`, `customers`, `seed`), generated,
    /// ingested and streamed into this env's lake: the history the batch jobs read.
    pub fn with_shop(backend: Backend, days: u32, orders: u32, customers: u32, seed: u32) -> Env {
        Env::with_shop_then(backend, (days, orders, customers, seed), "[]", None)
    }

    /// As [`Env::with_shop`], with the stream's `features` (a TOML list) and SQL run on the
    /// generated tables before the ingest (to plant a row the test needs).
    pub fn with_shop_then(
        backend: Backend,
        (days, orders, customers, seed): (u32, u32, u32, u32),
        features: &str,
        before_ingest: Option<&str>,
    ) -> Env {
        let env = Env::new(backend);
        env.jobs(&["init"]);
        let (days, orders, customers, seed) = (
            days.to_string(),
            orders.to_string(),
            customers.to_string(),
            seed.to_string(),
        );
        env.jobs(&[
            "generate",
            "--days",
            &days,
            "--orders",
            &orders,
            "--customers",
            &customers,
            "--until",
            "2026-11-20T00:00:00Z",
            "--seed",
            &seed,
        ]);
        if let Some(sql) = before_ingest {
            env.sql(sql);
        }
        env.jobs(&["ingest", "--once"]);
        let out = env
            .cmd(&["stream", "--until-idle"])
            .env("JOBS_STREAM__FEATURES", features)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        env
    }

    /// Executes SQL on this env's database.
    pub fn sql(&self, sql: &str) {
        block_on(async {
            let db = jobs::io::db::Db::connect(&self.db_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&db.pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    /// The outside check of a table against its topic and the dead-letter topic.
    pub fn check(&self, table: &str) -> serde_json::Value {
        let topic = match table {
            "product_sales" => self.topic("product_sales"),
            _ => self.topic("product_updates"),
        };
        let schema_id = if table == "product_sales" { "1" } else { "2" };
        python(&[
            "tests/py/check_topic.py",
            "--brokers",
            BROKERS,
            "--db-url",
            &self.db_url,
            "--table",
            table,
            "--topic",
            &topic,
            "--dlq",
            &self.topic("dlq"),
            "--schema-id",
            schema_id,
            "--group",
            &format!("{}-check", self.id),
        ])
    }

    /// Starts `jobs ARGS` with debug logs piped, for tests that kill it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .env("JOBS_LOG", "jobs=debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.admin_url {
            let (admin, name) = (admin.clone(), name.clone());
            let _ = std::thread::spawn(move || {
                block_on(async {
                    if let Ok(db) = jobs::io::db::Db::connect(&admin).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name}"
                        )))
                        .execute(&db.pool)
                        .await;
                    }
                })
            })
            .join();
        }
        if std::env::var_os("JOBS_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `cmd` (a `jobs ARGS`) and fails the test unless it succeeds.
fn succeeded(mut cmd: Command, args: &[&str]) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "jobs {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a script with the project venv's Python and parses its JSON output.
pub fn python(args: &[&str]) -> serde_json::Value {
    python_in(&root(), args)
}

/// As [`python`], from `dir`.
pub fn python_in(dir: &Path, args: &[&str]) -> serde_json::Value {
    let py = root().join(".venv/bin/python");
    assert!(py.exists(), "no project venv: run scripts/stack up");
    let out = Command::new(py)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Reads `child`'s stderr until `n` lines contain `needle` (or `deadline` passes), then
/// kills it with SIGKILL. Returns how many matching lines were seen, and the lines read.
pub fn kill_after(mut child: Child, needle: &str, n: usize, deadline: Duration) -> (usize, String) {
    let stderr = child.stderr.take().unwrap();
    let start = Instant::now();
    let (mut seen, mut log) = (0, String::new());
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains(needle) {
            seen += 1;
        }
        log.push_str(&line);
        log.push('\n');
        if seen >= n || start.elapsed() > deadline {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (seen, log)
}

/// Asserts that two lakes hold the same windows and raw rows (count and DuckDB's multiset
/// digest, `tests/py/compact_check.py digest`) and that the first holds `raw_rows` raw rows.
pub fn assert_lakes_equal(ours: &str, theirs: &str, raw_rows: u64) {
    let digest = |lake: &str| python(&["tests/py/compact_check.py", "digest", lake]);
    let (ours, theirs) = (digest(ours), digest(theirs));
    for t in ["sales_windows", "sales_raw"] {
        for k in ["rows", "digest"] {
            assert_eq!(ours[t][k], theirs[t][k], "{t} {k}");
        }
    }
    assert_eq!(ours["sales_raw"]["rows"], raw_rows, "raw rows");
}

/// A day of 3,000 orders by 300 customers ending `until` (seed 5), inserted into the source
/// database of `config`.
pub fn day_of_orders(env: &Env, config: &Path, until: &str) {
    env.jobs_with(
        config,
        &[
            "generate",
            "--days",
            "1",
            "--orders",
            "3000",
            "--customers",
            "300",
            "--until",
            until,
            "--seed",
            "5",
        ],
    );
}
