//! `jobs dashboard` against a lake the real pipeline wrote: the hourly panel's numbers equal
//! DuckDB's over the same range and filter, the event stream announces the view, and the
//! token rules hold (refused without it off loopback; every request checked when set).

mod common;

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env, block_on, python, root};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(env: &Env, section: &str) -> Server {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(section);
    let cfg = env.dir.join("dashboard.toml");
    std::fs::write(&cfg, text).unwrap();
    Server(
        env.cmd_with(&cfg, &["dashboard"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

/// Polls `url` until the view has been built once (generation >= 1).
fn ready(url: &str, token: Option<&str>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(url, token);
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            if v["generation"].as_u64().unwrap_or(0) >= 1 {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "dashboard not ready: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn duck(env: &Env, h: &Value, filter: &[&str]) -> Value {
    let (lake, from, to) = (
        env.lake(),
        h["from"].as_str().unwrap().to_string(),
        h["to"].as_str().unwrap().to_string(),
    );
    let mut args = vec!["tests/py/dashboard_check.py", &lake, &from, &to];
    args.extend_from_slice(filter);
    python(&args)
}

/// The product name planted in the shop: data, never markup.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A 20-day shop streamed with the country and card tables; product 1, named [`HOSTILE`],
/// is among the ten that sell the most units.
fn shop() -> Env {
    Env::with_shop_then(
        Backend::Sqlite,
        (20, 4000, 300, 3),
        "[\"dashboard\"]",
        Some(&format!(
            "UPDATE product_sales SET product_name = '{HOSTILE}', quantity_sold = quantity_sold + 5 WHERE product_id = 1; \
             UPDATE products SET name = '{HOSTILE}' WHERE id = 1"
        )),
    )
}

/// Compares one `/api/panels` answer with DuckDB's over the same range and filter.
fn same_as_duckdb(env: &Env, v: &Value, filter: &[&str]) -> Value {
    let h = &v["hourly"];
    let want = duck(env, h, filter);
    let what = format!("{} {filter:?}", h["from"]);
    for k in ["units", "revenue_cents", "orders"] {
        assert_eq!(h[k], want[k], "{what}, {k}: {h} vs DuckDB {want}");
    }
    for (ours, theirs) in [("by_units", "top_units"), ("by_revenue", "top_revenue")] {
        let ours: Vec<(i64, i64, i64)> = v["top"][ours]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["product_id"].as_i64().unwrap(),
                    r["units"].as_i64().unwrap(),
                    r["revenue_cents"].as_i64().unwrap(),
                )
            })
            .collect();
        let theirs: Vec<(i64, i64, i64)> = want[theirs]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["product_id"].as_i64().unwrap(),
                    r["units"].as_i64().unwrap(),
                    r["revenue_cents"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{what}: top {ours:?}");
    }
    for k in ["countries", "cards"] {
        let ours: Vec<(String, i64, i64, i64)> = v[k]["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["label"].as_str().unwrap().to_string(),
                    b["revenue_cents"].as_i64().unwrap(),
                    b["units"].as_i64().unwrap(),
                    b["orders"].as_i64().unwrap(),
                )
            })
            .collect();
        let theirs: Vec<(String, i64, i64, i64)> = want[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["label"].as_str().unwrap().to_string(),
                    b["revenue_cents"].as_i64().unwrap(),
                    b["units"].as_i64().unwrap(),
                    b["orders"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{what}: {k}");
        assert_eq!(v[k]["all_products"], !filter.is_empty());
    }
    want
}

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
}

/// `$1,234.56` -> 123456; `1,234` -> 1234.
fn number(text: &str) -> i64 {
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not a number on the page: {text:?}"))
}

/// `2026-11-19 23:00 – 2026-11-20 00:00 UTC` -> the RFC 3339 ends DuckDB is given.
fn span(text: &str) -> Value {
    let t: Vec<&str> = text.split(' ').collect();
    serde_json::json!({"from": format!("{}T{}:00Z", t[0], t[1]), "to": format!("{}T{}:00Z", t[3], t[4])})
}

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
                    let duck: Vec<(String, i64, i64, i64)> = want[k]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|b| {
                            (
                                b["label"].as_str().unwrap().to_string(),
                                b["revenue_cents"].as_i64().unwrap(),
                                b["units"].as_i64().unwrap(),
                                b["orders"].as_i64().unwrap(),
                            )
                        })
                        .collect();
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

/// Kills a child on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let _server = serve(&env, &format!("[dashboard]\naddr = \"127.0.0.1:{port}\"\n"));
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
    let _ = node.wait();
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

/// Decodes `application/x-www-form-urlencoded` (`+` and `%XX`).
fn urlencoding(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
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
