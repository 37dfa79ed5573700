//! The page in Chromium (playwright-core): the DOM against the outside answers at two widths,
//! and a live insert shown without a reload.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{Backend, Env, root};
use super::*;

/// The page as a person reads it: every number of every panel equals DuckDB's over the same
/// lake, range and filter (read from the DOM, in Chromium); the planted name is text; no
/// script error at 1280 px or 390 px; the keyboard reaches the controls; screenshots kept.
#[test]
fn the_page_shows_duckdbs_numbers_in_a_real_browser() {
    let env = shop();
    let port = free_port();
    let _server = serve(&env, &format!("[dashboard]\naddr = \"127.0.0.1:{port}\"\n"));
    let url = format!("http://127.0.0.1:{port}/");
    ready(&format!("{url}api/panels"), None);
    let artifacts = root().join("tests/browser/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/dashboard.mjs"))
        .args(["snapshot", &url, artifacts.to_str().unwrap()])
        .env("DASH_PRODUCT", PRODUCT.to_string())
        .env("DASH_CUSTOMER", CUSTOMER.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let widths: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(widths.len(), 2);
    let mut checked = 0;
    for w in &widths {
        let width = &w["width"];
        assert_eq!(
            w["errors"],
            serde_json::json!([]),
            "script errors at {width}"
        );
        assert_eq!(
            w["dialogs"],
            serde_json::json!([]),
            "a dialog opened at {width}"
        );
        assert_eq!(
            w["focus"], "range",
            "Tab reaches the range picker first at {width}"
        );
        assert!(
            w["overflow"].as_i64().unwrap() <= 0,
            "the page scrolls sideways at {width}"
        );
        assert!(
            artifacts
                .join(format!("dashboard-{width}.png"))
                .metadata()
                .unwrap()
                .len()
                > 10_000
        );
        for v in w["views"].as_array().unwrap() {
            assert_eq!(v["images"], 0, "markup from the data at {width}");
            assert!(v["chart"].as_bool().unwrap(), "the hourly chart is drawn");
            let q = v["query"].as_str().unwrap();
            let filter: Vec<String> = q
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k != "range")
                .flat_map(|(k, val)| [k.to_string(), urlencoding(val)])
                .collect();
            let filter: Vec<&str> = filter.iter().map(String::as_str).collect();
            let want = duck(&env, &span(v["span"].as_str().unwrap()), &filter);
            assert_eq!(
                number(v["revenue"].as_str().unwrap()),
                want["revenue_cents"].as_i64().unwrap(),
                "{q}: revenue"
            );
            assert_eq!(
                number(v["units"].as_str().unwrap()),
                want["units"].as_i64().unwrap(),
                "{q}: units"
            );
            assert_eq!(
                number(v["orders"].as_str().unwrap()),
                want["orders"].as_i64().unwrap(),
                "{q}: orders"
            );
            for (ours, theirs) in [("top_units", "top_units"), ("top_revenue", "top_revenue")] {
                let page: Vec<(String, i64, i64)> = v[ours]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r[1].as_str().unwrap().to_string(),
                            number(r[3].as_str().unwrap()),
                            number(r[4].as_str().unwrap()),
                        )
                    })
                    .collect();
                let duck: Vec<(String, i64, i64)> = want[theirs]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["name"].as_str().unwrap().to_string(),
                            r["units"].as_i64().unwrap(),
                            r["revenue_cents"].as_i64().unwrap(),
                        )
                    })
                    .collect();
                assert_eq!(page, duck, "{q}: {ours}");
            }
            if filter.is_empty() {
                for k in ["countries", "cards"] {
                    let page: Vec<(String, i64, i64, i64)> = v[k]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            (
                                r[0].as_str().unwrap().to_string(),
                                number(r[2].as_str().unwrap()),
                                number(r[3].as_str().unwrap()),
                                number(r[4].as_str().unwrap()),
                            )
                        })
                        .collect();
                    let duck = bars(&want[k]);
                    assert_eq!(page, duck, "{q}: {k}");
                }
            } else {
                assert!(
                    v["countries_note"].as_bool().unwrap(),
                    "{q}: the note says the bars are of all products"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "every range, category and a brand: {checked}"
    );
    batch_panels_on_the_page(&env, &widths[0]["batch"]);
    let wide = &widths[0]["views"].as_array().unwrap()[4];
    assert!(
        wide["top_units"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[1] == HOSTILE),
        "the planted name shows as text: {}",
        wide["top_units"]
    );
}

/// With ingest and the stream running, a sale inserted into the source database shows on the
/// open page (totals, hourly table, country bars) within 10 s, pushed over SSE, no reload.
#[test]
fn a_sale_inserted_while_the_page_is_open_shows_within_ten_seconds() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new(Backend::Sqlite);
    env.jobs(&["init"]);
    env.jobs(&[
        "generate",
        "--days",
        "3",
        "--orders",
        "600",
        "--customers",
        "50",
        "--until",
        "2026-11-20T00:00:00Z",
        "--seed",
        "5",
    ]);
    let quiet = |mut c: std::process::Command| {
        Running(
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _ingest = quiet(env.cmd(&["ingest"]));
    let mut stream = env.cmd(&["stream"]);
    stream.env("JOBS_STREAM__FEATURES", "[\"dashboard\"]");
    let _stream = quiet(stream);
    let port = free_port();
    let mut server = serve(&env, &format!("[dashboard]\naddr = \"127.0.0.1:{port}\"\n"));
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(90);
    while ready(&format!("{url}api/health"), None)["health"]["consumed"] != 600 {
        assert!(
            Instant::now() < deadline,
            "the stream did not consume the shop"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut node = std::process::Command::new("node")
        .arg(root().join("tests/browser/dashboard.mjs"))
        .args(["live", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let before: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let before = &before["ready"];
    // The newest event time of the shop: inside the open hour, never late.
    env.sql(
        "INSERT INTO product_sales (transaction_id, product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date, customer_id, country, card_type) \
         SELECT 900001, product_id, product_name, product_category, brand, 7, 100.00, transaction_date, NULL, 'Testland', 'Visa' \
         FROM product_sales ORDER BY transaction_date DESC, transaction_id DESC LIMIT 1",
    );
    let t0 = Instant::now();
    node.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let after: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let seen = t0.elapsed();
    // Stop the server, then start it again on the same port: the open page reconnects.
    let _ = server.0.kill();
    let _ = server.0.wait();
    node.stdin
        .as_mut()
        .unwrap()
        .write_all(b"stopped\n")
        .unwrap();
    let down: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(
        down["down"]["status"]
            .as_str()
            .unwrap()
            .starts_with("reconnecting"),
        "{}",
        down["down"]["status"]
    );
    let _again = serve(&env, &format!("[dashboard]\naddr = \"127.0.0.1:{port}\"\n"));
    node.stdin
        .as_mut()
        .unwrap()
        .write_all(b"started\n")
        .unwrap();
    let back: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = node.wait();
    assert_eq!(back["navigations"], 0, "reconnected without a reload");
    // The only console errors are the browser's own reports of the refused connections
    // during the outage: no script error, no unhandled rejection.
    for e in back["errors"].as_array().unwrap() {
        let e = e.as_str().unwrap();
        assert!(
            e.contains("ERR_CONNECTION_REFUSED") || e.starts_with("Failed to load resource"),
            "a script error during the restart: {e}"
        );
    }
    assert_eq!(
        back["back"]["units"], after["changed"]["units"],
        "the new server shows the same lake"
    );
    println!(
        "dashboard restart: the open page redrew from the new server {} ms after it started",
        back["ms"]
    );
    assert!(seen < Duration::from_secs(10), "shown after {seen:?}");
    let v = &after["changed"];
    assert_eq!(after["errors"], serde_json::json!([]));
    assert_eq!(
        number(v["units"].as_str().unwrap()),
        number(before["units"].as_str().unwrap()) + 7,
        "{v}"
    );
    assert_eq!(
        number(v["revenue"].as_str().unwrap()),
        number(before["revenue"].as_str().unwrap()) + 70_000
    );
    assert!(
        v["generation"].as_i64() > before["generation"].as_i64(),
        "redrawn by an update"
    );
    let testland: Vec<&Value> = v["countries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == "Testland")
        .collect();
    assert_eq!(testland.len(), 1, "{}", v["countries"]);
    assert_eq!(number(testland[0][3].as_str().unwrap()), 7);
    // The newest hour is still open: it shows the sale, marked as open.
    let newest = &v["hourly"][0];
    assert!(newest[0].as_str().unwrap().ends_with("(open)"), "{newest}");
    println!(
        "dashboard live update: shown {} ms after the insert",
        seen.as_millis()
    );
}

/// The DOM of the low-stock, forecast and recommendation panels against the outside answers.
fn batch_panels_on_the_page(env: &Env, b: &Value) {
    let want = batch_check(env);
    let page = &b["forecast"];
    // Low stock: (stock, threshold, since) of every open alert and recovery, in order.
    for (ours, theirs) in [("alerts_open", "open"), ("alerts_recovered", "recoveries")] {
        let dom: Vec<(i64, i64, String)> = page[ours]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    number(r[2].as_str().unwrap()),
                    number(r[3].as_str().unwrap()),
                    r[4].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let outside: Vec<(i64, i64, String)> = alert_rows(&want["alerts"][theirs])
            .into_iter()
            .map(|r| (r.1, r.2, r.3))
            .collect();
        assert!(!outside.is_empty(), "{theirs}");
        assert_eq!(dom, outside, "{ours}");
    }
    // Forecast: every day's prediction and every closed day's actual, as shown.
    assert!(page["forecast_chart"].as_bool().unwrap());
    assert!(
        page["forecast_sum"]
            .as_str()
            .unwrap()
            .contains(&format!("run of {FORECAST_RUN}")),
        "{}",
        page["forecast_sum"]
    );
    let days = forecast_days(&want);
    let mut predicted = 0;
    for r in page["forecast"].as_array().unwrap() {
        let label = r[0].as_str().unwrap();
        let (actual, p) = days.get(&label[..10]).copied().unwrap_or((None, None));
        if let Some(p) = p {
            let shown: f64 = r[2].as_str().unwrap().parse().unwrap();
            assert!((shown - p).abs() <= 0.05 + 1e-9, "{label}: {shown} vs {p}");
            predicted += 1;
        } else {
            assert_eq!(r[2], "–", "{label}");
        }
        if !label.ends_with("(open)") && r[1] != "–" {
            assert_eq!(
                number(r[1].as_str().unwrap()),
                actual.unwrap_or(0),
                "{label}"
            );
        }
    }
    assert_eq!(predicted, days.values().filter(|d| d.1.is_some()).count());
    // Recommendations typed in by keyboard: the customer's, then the cold-start list.
    for (view, which) in [("customer", "customer"), ("unknown", "cold_start")] {
        let dom: Vec<(String, String)> = b[view]["recs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let outside: Vec<(String, String)> = rec_list(&want, which)
            .into_iter()
            .enumerate()
            .map(|(i, (_, name))| ((i + 1).to_string(), name))
            .collect();
        assert!(!outside.is_empty());
        assert_eq!(dom, outside, "{view}");
    }
    assert!(
        b["unknown"]["recs_sum"]
            .as_str()
            .unwrap()
            .contains("not in this run: the cold-start list")
    );
    // A malformed id is refused by the input itself; the list shown stays as it was.
    assert_eq!(b["invalid"]["mismatch"], true);
    assert_eq!(b["invalid"]["recs"], b["unknown"]["recs"]);
}
