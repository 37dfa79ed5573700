//! The JSON API against the outside answers, and the token rules.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{Backend, Env, block_on};
use super::*;

#[test]
fn every_panel_equals_duckdb_for_every_range_and_filter() {
    let env = shop();
    let port = free_port();
    let _server = serve(&env, &format!("[dashboard]\naddr = \"127.0.0.1:{port}\"\n"));
    let base = format!("http://127.0.0.1:{port}");
    let first = ready(&format!("{base}/api/panels?range=7d"), None);
    let categories: Vec<String> = serde_json::from_value(first["categories"].clone()).unwrap();
    let brands: Vec<String> = serde_json::from_value(first["brands"].clone()).unwrap();
    assert!(categories.len() >= 3 && brands.len() >= 5, "{first}");

    let mut nonzero = 0;
    for range in ["1h", "6h", "24h", "7d", "30d"] {
        let v = ready(&format!("{base}/api/panels?range={range}"), None);
        same_as_duckdb(&env, &v, &[]);
        // Every hour of the range is listed, and they sum to the totals.
        let h = &v["hourly"];
        let hours = h["hours"].as_array().unwrap();
        let n = match range {
            "1h" => 1,
            "6h" => 6,
            "24h" => 24,
            "7d" => 168,
            _ => 720,
        };
        assert_eq!(hours.len(), n);
        let units: i64 = hours.iter().map(|x| x["units"].as_i64().unwrap()).sum();
        assert_eq!(Some(units), h["units"].as_i64());
        nonzero += (units > 0) as usize;
    }
    assert!(nonzero >= 4, "most ranges hold sales");
    let all = ready(&format!("{base}/api/panels?range=30d"), None);
    assert!(
        all["countries"]["bars"].as_array().unwrap().len() >= 3,
        "{all}"
    );
    assert!(all["cards"]["bars"].as_array().unwrap().len() >= 2, "{all}");
    // The planted product is among the top sellers; its name comes back as the same text.
    assert!(
        all["top"]["by_units"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == HOSTILE),
        "{}",
        all["top"]
    );
    for c in &categories {
        let v = ready(&format!("{base}/api/panels?range=30d&category={c}"), None);
        same_as_duckdb(&env, &v, &["category", c]);
    }
    let b = &brands[0];
    let v = ready(&format!("{base}/api/panels?range=30d&brand={b}"), None);
    same_as_duckdb(&env, &v, &["brand", b]);

    // The health strip reads the checkpoints: every event consumed, nothing left to read.
    let health = ready(&format!("{base}/api/health"), None);
    assert_eq!(health["health"]["consumed"], 4000, "{health}");
    assert_eq!(health["health"]["dead_lettered"], 0);
    // The page and its scripts are served; a bad range is a clear 400.
    let (status, page) = get(&format!("{base}/"), None);
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js") && page.contains("/assets/uPlot.iife.min.js"));
    let (status, js) = get(&format!("{base}/assets/uPlot.iife.min.js"), None);
    assert!(status == 200 && js.starts_with("/*! https://github.com/leeoniya/uPlot"));
    let (status, body) = get(&format!("{base}/api/panels?range=2y"), None);
    assert_eq!(status, 400);
    assert!(body.contains("expected one of"), "{body}");
    // The event stream opens with the current generation.
    let events = block_on(async {
        let mut r = reqwest::get(format!("{base}/api/events")).await.unwrap();
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&chunk).to_string()
    });
    assert!(events.contains("event: update"), "{events}");

    batch_panels_equal_the_outside_answers(&env, &base);
}

/// The low-stock, forecast and recommendation panels against confluent-kafka's reading of
/// the alerts topic and DuckDB's of the newest runs.
fn batch_panels_equal_the_outside_answers(env: &Env, base: &str) {
    let want = batch_check(env);
    // Alerts: read off the topic within a few seconds of the start.
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = ready(&format!("{base}/api/panels?range=30d"), None);
        if v["alerts"]["loaded"] == true {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "alerts not read: {}",
            v["alerts"]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let a = &v["alerts"];
    assert_eq!(a["reachable"], true);
    assert_eq!(a["undecodable"], 0);
    let ours = |rows: &Value| -> Vec<(i64, i64, i64, String)> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["product_id"].as_i64().unwrap(),
                    r["updated_stock"].as_i64().unwrap(),
                    r["threshold"].as_i64().unwrap(),
                    minute(&r["at"]),
                )
            })
            .collect()
    };
    let open = ours(&a["open"]);
    assert_eq!(open, alert_rows(&want["alerts"]["open"]));
    assert_eq!(
        ours(&a["recoveries"]),
        alert_rows(&want["alerts"]["recoveries"])
    );
    let products: Vec<i64> = open.iter().map(|r| r.0).collect();
    assert!(
        products.contains(&2) && products.contains(&4) && !products.contains(&3),
        "products 2 and 4 low, 3 restocked: {open:?}"
    );
    assert!(
        ours(&a["recoveries"])
            .iter()
            .any(|r| r.0 == 3 && r.1 >= 800),
        "{a}"
    );
    // The filter applies: a brand none of them has leaves no alert.
    let none = ready(
        &format!("{base}/api/panels?range=30d&brand=NoSuchBrand"),
        None,
    );
    assert_eq!(none["alerts"]["open"], serde_json::json!([]));

    // Forecast: every predicted day equals the run's Parquet, every closed actual the 1d
    // windows', and the errors are those of the two.
    let f = ready(&format!("{base}/api/forecast?product={PRODUCT}"), None);
    let f = &f["forecast"];
    assert_eq!(f["run_date"], FORECAST_RUN);
    assert_eq!(f["product_id"], PRODUCT);
    assert_eq!(want["forecast"]["run_date"], FORECAST_RUN);
    let days = forecast_days(&want);
    let (mut abs, mut sum, mut n) = (0.0, 0, 0);
    for d in f["days"].as_array().unwrap() {
        let date = d["date"].as_str().unwrap();
        let (actual, predicted) = days.get(date).copied().unwrap_or((None, None));
        assert_eq!(d["predicted"].as_f64(), predicted, "{date}");
        if d["open"] == false && d["actual"].is_i64() {
            let a = actual.unwrap_or(0);
            assert_eq!(d["actual"].as_i64(), Some(a), "{date}");
            if let Some(p) = predicted {
                abs += (p - a as f64).abs();
                sum += a;
                n += 1;
            }
        }
    }
    assert!(n >= 2, "closed forecast days compared: {n}");
    assert_eq!(f["compared_days"], n);
    let mae = f["mae"].as_f64().unwrap();
    assert!((mae - abs / n as f64).abs() < 1e-9, "{mae}");
    assert!((f["wape"].as_f64().unwrap() - abs / sum as f64).abs() < 1e-9);
    let predicted_days = days.values().filter(|d| d.1.is_some()).count();
    assert_eq!(
        f["days"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["predicted"].is_f64())
            .count(),
        predicted_days
    );

    // Recommendations: the customer's list and the cold-start list, in rank order.
    let ids = |v: &Value| -> Vec<i64> {
        v["recommendations"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["product_id"].as_i64().unwrap())
            .collect()
    };
    let mine = ready(
        &format!("{base}/api/recommendations?customer={CUSTOMER}"),
        None,
    );
    assert_eq!(mine["recommendations"]["known"], true);
    let theirs: Vec<i64> = rec_list(&want, "customer")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(ids(&mine), theirs);
    let cold: Vec<i64> = rec_list(&want, "cold_start")
        .into_iter()
        .map(|r| r.0)
        .collect();
    let unknown = ready(&format!("{base}/api/recommendations?customer=999999"), None);
    assert_eq!(unknown["recommendations"]["known"], false);
    assert_eq!(ids(&unknown), cold);
    assert_eq!(
        ids(&ready(&format!("{base}/api/recommendations"), None)),
        cold
    );
    let (status, body) = get(
        &format!("{base}/api/recommendations?customer=1%3BDROP"),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected a whole number"), "{body}");
}

/// The same shop streamed into a local lake and into SeaweedFS S3: the dashboard on the S3 lake
/// shows exactly the panels it shows on the local one (which equal DuckDB's, above).
#[test]
fn an_s3_lake_shows_the_same_panels_as_a_local_one() {
    const S3: &str = "[s3]\nendpoint = \"http://127.0.0.1:8333\"\nregion = \"us-east-1\"\naccess_key_id = \"jobs\"\nsecret_access_key = \"jobs-secret\"";
    let env = Env::new(Backend::Sqlite);
    let s3 = env.config_with(
        "s3.toml",
        &[
            (
                &format!("lake = \"{}\"", env.lake()),
                &format!("lake = \"s3://lake/{}-dashboard\"\n{S3}", env.id),
            ),
            (
                &format!("group_id = \"{}-stream\"", env.id),
                &format!("group_id = \"{}-stream-s3\"", env.id),
            ),
        ],
    );
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "6",
        "--orders",
        "1500",
        "--customers",
        "80",
        "--until",
        "2026-11-20T00:00:00Z",
        "--seed",
        "9",
    ]);
    env.jobs(&["ingest", "--once"]);
    for cfg in [&env.config, &s3] {
        let out = env
            .cmd_with(cfg, &["stream", "--until-idle"])
            .env("JOBS_STREAM__FEATURES", "[\"dashboard\"]")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let (local_port, s3_port) = (free_port(), free_port());
    let _local = serve(
        &env,
        &format!("[dashboard]\naddr = \"127.0.0.1:{local_port}\"\n"),
    );
    let _s3 = serve_with(
        &env,
        &s3,
        "dashboard-s3.toml",
        &format!("[dashboard]\naddr = \"127.0.0.1:{s3_port}\"\n"),
    );
    for range in ["1h", "24h", "7d"] {
        let path = format!("api/panels?range={range}");
        let local = ready(&format!("http://127.0.0.1:{local_port}/{path}"), None);
        let remote = ready(&format!("http://127.0.0.1:{s3_port}/{path}"), None);
        for k in [
            "hourly",
            "top",
            "countries",
            "cards",
            "categories",
            "brands",
        ] {
            assert_eq!(local[k], remote[k], "{range}: {k}");
        }
        if range == "7d" {
            assert!(
                local["hourly"]["orders"].as_i64().unwrap() > 1000,
                "{}",
                local["hourly"]
            );
        }
    }
    let health = ready(&format!("http://127.0.0.1:{s3_port}/api/health"), None);
    assert_eq!(health["health"]["consumed"], 1500, "{health}");
}

#[test]
fn off_loopback_the_dashboard_needs_a_token_and_checks_it() {
    let env = Env::new(Backend::Sqlite);
    let port = free_port();
    // Without a token it refuses to start, in one line.
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&format!("[dashboard]\naddr = \"0.0.0.0:{port}\"\n"));
    let open = env.dir.join("open.toml");
    std::fs::write(&open, &text).unwrap();
    let out = env.cmd_with(&open, &["dashboard"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a loopback address: set dashboard.token"),
        "{err}"
    );
    // With one, every request must carry it; the token is never printed.
    let token = "s3cret-token-0123456789";
    let _server = serve(
        &env,
        &format!("[dashboard]\naddr = \"0.0.0.0:{port}\"\ntoken = \"{token}\"\n"),
    );
    let url = format!("http://127.0.0.1:{port}/api/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&url, Some(token)).0 != 200 {
        assert!(Instant::now() < deadline, "dashboard did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&url, None).0, 401);
    assert_eq!(get(&url, Some("wrong-token-0123456789")).0, 401);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/"), None).0, 401);
    let cfg = env
        .cmd_with(&env.dir.join("dashboard.toml"), &["config"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&cfg.stdout);
    assert!(
        printed.contains("<redacted>") && !printed.contains(token),
        "{printed}"
    );
}
