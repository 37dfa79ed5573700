//! `jobs forecast` and `jobs recommend` end to end on the real stack: a generated shop goes
//! through ingest and stream into the lake; the batch jobs read it with polars and publish;
//! outside clients (confluent-kafka + fastavro, DuckDB) read every output back.

mod common;

use common::{Backend, Env, python};
use serde_json::Value;

const RUN_DATE: &str = "2026-11-20";
const SINCE: &str = "2026-08-01";

/// 100 days of a shop ending at the run date, through ingest and stream into the lake.
fn shop() -> Env {
    Env::with_shop(Backend::Sqlite, 100, 30000, 2000, 5)
}

/// What `tests/py/ml_check.py` reads back of a job's outputs (topic and lake).
fn check(env: &Env, job: &str, topic: &str) -> Value {
    python(&[
        "tests/py/ml_check.py",
        job,
        &env.lake(),
        common::BROKERS,
        &env.topic(topic),
        RUN_DATE,
        SINCE,
    ])
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn forecast_publishes_to_kafka_and_the_lake_and_recommend_too() {
    let env = shop();
    let forecast = ["forecast", "--run-date", RUN_DATE, "--since", SINCE];
    let out = env.jobs(&forecast);
    assert!(stdout(&out).contains("forecast "), "{}", stdout(&out));
    let f = check(&env, "forecast", "predictions");
    let kafka = f["kafka"].as_array().unwrap();
    let last_week = f["last_week"].as_object().unwrap();
    // One message per product that sold in range and day of the horizon.
    let products = f["manifest"]["metrics"]["products"].as_u64().unwrap() as usize;
    assert!(products >= 20, "{products} products");
    assert_eq!(kafka.len(), products * 7);
    // The lake holds exactly what Kafka got.
    assert_eq!(f["lake"], f["kafka"]);
    let dates: std::collections::BTreeSet<&str> =
        kafka.iter().map(|r| r[1].as_str().unwrap()).collect();
    assert_eq!(dates.len(), 7);
    assert_eq!(dates.first(), Some(&"2026-11-20"));
    assert_eq!(dates.last(), Some(&"2026-11-26"));
    let version = kafka[0][4].as_str().unwrap().to_string();
    assert!(version.starts_with("auto-20261120-"), "{version}");
    assert!(
        kafka
            .iter()
            .all(|r| r[4] == version.as_str() && r[5] == RUN_DATE)
    );
    assert!(kafka.iter().all(|r| r[2].as_f64().unwrap() >= 0.0));
    // 100 days of history: every product is backtested and gets the average of the two
    // models that did best on its own history; the manifest counts the choices.
    let models = ["ols", "ridge", "poisson", "seasonal_naive"];
    for r in kafka {
        let parts: Vec<&str> = r[3].as_str().unwrap().split('+').collect();
        assert!(
            parts.len() == 2 && parts[0] != parts[1] && parts.iter().all(|p| models.contains(p)),
            "{r:?}"
        );
        // The interval holds the point and never goes below zero.
        let (q, lo, hi) = (
            r[2].as_f64().unwrap(),
            r[6].as_f64().unwrap(),
            r[7].as_f64().unwrap(),
        );
        assert!(0.0 <= lo && lo <= q && q <= hi, "{r:?}");
    }
    assert!(
        kafka.iter().any(|r| r[6].as_f64() < r[7].as_f64()),
        "every interval is empty"
    );
    let by_method = f["manifest"]["metrics"]["products_by_method"]
        .as_object()
        .unwrap();
    assert_eq!(
        by_method.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        products as u64
    );
    assert_eq!(
        f["manifest"]["metrics"]["products_backtested"],
        products as u64
    );
    for (choice, n) in by_method {
        let rows = kafka.iter().filter(|r| r[3] == choice.as_str()).count();
        assert_eq!(rows as u64, n.as_u64().unwrap() * 7, "{choice}");
    }
    // Forecasts are on the scale of recent sales: the next 7 days of all products together
    // within 40% of the last 7 days.
    let next: f64 = kafka.iter().map(|r| r[2].as_f64().unwrap()).sum();
    let last: f64 = last_week.values().map(|v| v.as_f64().unwrap()).sum();
    assert!(
        (next / last - 1.0).abs() < 0.4,
        "next week {next:.0} vs last week {last:.0}"
    );
    // The manifest traces the inputs: every row read, by file.
    let m = &f["manifest"];
    let rows: u64 = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, f["history_rows"].as_u64().unwrap());
    assert_eq!(m["model_version"], version.as_str());
    assert_eq!(m["dates"]["since"], SINCE);
    assert_eq!(m["features"].as_array().unwrap().len(), 16);
    assert_eq!(m["hyperparameters"]["model"], "auto");
    assert_eq!(m["hyperparameters"]["interval"], 0.8);
    assert!(m["rerun"].as_str().unwrap().contains("--since 2026-08-01"));

    // The same inputs give the same version and the same numbers, and the run folder is
    // replaced, not doubled.
    env.jobs(&forecast);
    let again = check(&env, "forecast", "predictions");
    assert_eq!(again["lake"], f["lake"]);

    // Weekly, a week earlier: 7-day periods counted back from the run date, a 10-day horizon
    // rounded up to 2 weeks; 15 weeks of history is too short for a model (a year-ago lag
    // and 28 rows to train on), so each product repeats its mean week.
    let weekly = [
        "forecast",
        "--run-date",
        "2026-11-13",
        "--since",
        SINCE,
        "--granularity",
        "week",
        "--horizon",
        "10",
    ];
    let out = env.jobs(&weekly);
    assert!(
        stdout(&out).contains("for 2 weeks from 2026-11-13"),
        "{}",
        stdout(&out)
    );
    let w = check(&env, "forecast", "predictions");
    let of_run = |rows: &Value| -> Vec<Value> {
        let rows = rows.as_array().unwrap().iter();
        rows.filter(|r| r[5] == "2026-11-13").cloned().collect()
    };
    let (wk, wl) = (of_run(&w["kafka"]), of_run(&w["lake"]));
    assert_eq!(wk, wl);
    assert_eq!(wk.len() % 2, 0);
    assert!(wk.len() >= 40, "{} weekly rows", wk.len());
    for pair in wk.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(
            (a[0].clone(), a[1].as_str(), b[1].as_str()),
            (b[0].clone(), Some("2026-11-13"), Some("2026-11-20"))
        );
        assert_eq!(
            (a[3].as_str(), a[8].as_u64(), b[8].as_u64()),
            (Some("seasonal_naive"), Some(7), Some(7))
        );
        assert_eq!(a[2], b[2], "the mean week, repeated: {pair:?}");
        assert!(a[4].as_str().unwrap().starts_with("auto-20261113-"));
    }
    // Daily rows say they cover one day.
    assert!(f["lake"].as_array().unwrap().iter().all(|r| r[8] == 1));

    // Backtest: every model against seasonal naive, per product and overall.
    let out = env.jobs(&[
        "forecast",
        "--run-date",
        RUN_DATE,
        "--since",
        SINCE,
        "--evaluate",
        "--holdout-days",
        "14",
    ]);
    let text = stdout(&out);
    for line in [
        "overall over",
        "auto ",
        "ols ",
        "ridge ",
        "poisson ",
        "seasonal_naive ",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    // The report beside the runs holds the same numbers as the printed table.
    let report = read_report(&env, "forecast");
    let ev = &report["evaluation"];
    assert_eq!(ev["methods"][0], "auto");
    assert_eq!(ev["holdout"], 14);
    let printed = table_value(&text, "auto ", 1);
    let mase = ev["overall"][0][0].as_f64().unwrap();
    assert_eq!(format!("{mase:.3}"), printed, "{text}");
    assert!(
        text.contains("report: ")
            && text.contains("evaluations/forecast/run_date=2026-11-20/report.json")
    );

    // Recommendations.
    let out = env.jobs(&["recommend", "--run-date", RUN_DATE, "--since", SINCE]);
    assert!(stdout(&out).contains("recommended for"), "{}", stdout(&out));
    let r = check(&env, "recommend", "recommendations");
    assert_eq!(r["lake"], r["kafka"]);
    let lists = r["kafka"].as_object().unwrap();
    let bought = r["bought"].as_object().unwrap();
    // One list per customer who bought something, plus the cold-start list.
    assert_eq!(lists.len(), bought.len() + 1);
    let catalogue = r["popular"].as_array().unwrap().len();
    for (customer, list) in lists {
        let list = list.as_array().unwrap();
        let mine: Vec<&Value> = match bought.get(customer) {
            Some(b) => b.as_array().unwrap().iter().collect(),
            None => vec![],
        };
        // Five, unless the customer bought nearly everything.
        let want = 5.min(catalogue - mine.len());
        let ranks: Vec<u64> = list.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(
            ranks,
            (1..=want as u64).collect::<Vec<_>>(),
            "customer {customer}"
        );
        if customer == "cold_start" {
            continue;
        }
        for p in list {
            assert!(
                !mine.contains(&&p[1]),
                "customer {customer} already bought {}",
                p[1]
            );
        }
        let scores: Vec<f64> = list.iter().map(|p| p[2].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
    // The cold-start list is the popularity order DuckDB computes on its own.
    let cold: Vec<&Value> = lists["cold_start"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p[1])
        .collect();
    let popular: Vec<&Value> = r["popular"].as_array().unwrap().iter().take(5).collect();
    assert_eq!(cold, popular);
    assert!(
        lists["cold_start"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p[3] == "popular")
    );
    assert_eq!(r["manifest"]["hyperparameters"]["seed"], 42);
    // Tuned on a validation split: 9 settings tried, the best nDCG kept and used.
    let hp = &r["manifest"]["hyperparameters"];
    let trials = hp["tuning"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 9);
    let best = trials
        .iter()
        .max_by(|a, b| {
            a["ndcg"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["ndcg"].as_f64().unwrap())
        })
        .unwrap();
    let used = (hp["regularization"].as_f64(), hp["alpha"].as_f64());
    assert!(
        trials.iter().any(
            |t| (t["regularization"].as_f64(), t["alpha"].as_f64()) == used
                && t["ndcg"] == best["ndcg"]
        ),
        "{hp}"
    );
    assert!(hp["tuning"]["customers"].as_u64().unwrap() > 100, "{hp}");

    // --include-bought lets a customer's own purchases back in.
    env.jobs(&[
        "recommend",
        "--run-date",
        RUN_DATE,
        "--since",
        SINCE,
        "--include-bought",
    ]);
    let r2 = check(&env, "recommend", "recommendations");
    let repeats = r2["lake"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(c, _)| c.as_str() != "cold_start")
        .flat_map(|(c, l)| {
            let mine = bought[c.as_str()].as_array().unwrap().clone();
            l.as_array()
                .unwrap()
                .iter()
                .filter(move |p| mine.contains(&p[1]))
                .cloned()
                .collect::<Vec<_>>()
        })
        .count();
    assert!(
        repeats > 0,
        "with --include-bought some recommendations were bought before"
    );

    // Evaluation: ALS against popularity on a seeded split.
    let out = env.jobs(&[
        "recommend",
        "--run-date",
        RUN_DATE,
        "--since",
        SINCE,
        "--evaluate",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("als ") && text.contains("popularity "),
        "{text}"
    );
    let report = read_report(&env, "recommend");
    assert_eq!(report["settings"]["tuned"], true);
    for (name, key) in [("als ", "als"), ("popularity ", "popularity")] {
        let p = report[key]["precision"].as_f64().unwrap();
        assert_eq!(format!("{p:.4}"), table_value(&text, name, 1), "{text}");
    }
}

/// The `--evaluate` report of `job` for the run date, as JSON.
fn read_report(env: &Env, job: &str) -> Value {
    let path = format!(
        "{}/evaluations/{job}/run_date={RUN_DATE}/report.json",
        env.lake()
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Column `col` (0 = the row's name) of the printed table's row that starts with `row`.
fn table_value(text: &str, row: &str, col: usize) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no row {row:?} in:\n{text}"));
    line.split_whitespace().nth(col).unwrap().to_string()
}

#[test]
fn missing_history_is_one_clear_line_and_publishes_nothing() {
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    for job in ["forecast", "recommend"] {
        let out = env.cmd(&[job, "--run-date", RUN_DATE]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no sales history under") && err.contains("run `jobs stream` first"),
            "{job}: {err}"
        );
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{err}"
        );
    }
    for topic in ["predictions", "recommendations"] {
        let n = python(&[
            "tests/py/ml_check.py",
            "count",
            common::BROKERS,
            &env.topic(topic),
        ]);
        assert_eq!(n["messages"], 0, "{topic}");
    }
    assert!(!std::path::Path::new(&env.lake()).join("forecasts").exists());
}
