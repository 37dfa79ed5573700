//! `jobs dashboard` against a lake the real pipeline wrote: every panel's numbers equal the
//! outside answer (DuckDB over the lake, confluent-kafka over the alerts topic) over the same
//! range and filter, in the JSON API and in the page's DOM in Chromium; a live insert is shown
//! within seconds; the token rules hold.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod browser;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env, block_on, python};
use serde_json::Value;

pub use common::outage::free_port;

pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn serve(env: &Env, section: &str) -> Server {
    serve_with(env, &env.config, "dashboard.toml", section)
}

/// `jobs dashboard` on `base` (a config file) with `section` added, written as `name`.
pub fn serve_with(env: &Env, base: &std::path::Path, name: &str, section: &str) -> Server {
    let mut text = std::fs::read_to_string(base).unwrap();
    text.push_str(section);
    let cfg = env.dir.join(name);
    std::fs::write(&cfg, text).unwrap();
    Server(
        env.cmd_with(&cfg, &["dashboard"])
            .env("JOBS_STREAM__FEATURES", FEATURES)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

pub fn get(url: &str, token: Option<&str>) -> (u16, String) {
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

/// Polls `url` until what it answers is loaded: the lake read once (`refreshed`), the batch
/// run there (`forecast`, `recommendations`).
pub fn ready(url: &str, token: Option<&str>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(url, token);
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            let loaded = ["forecast", "recommendations"]
                .iter()
                .all(|k| v.get(k).is_none_or(|x| !x.is_null()));
            if v.get("refreshed").is_none_or(|r| r.as_u64() >= Some(1)) && loaded {
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

pub fn duck(env: &Env, h: &Value, filter: &[&str]) -> Value {
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
pub const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// The stream's business outputs in the dashboard's shop.
const FEATURES: &str = "[\"dashboard\", \"alerts\"]";
/// The forecast's run date: three days of it fall inside the shop's history.
pub const FORECAST_RUN: &str = "2026-11-17";
/// The product whose forecast the tests compare, and the customer whose recommendations.
pub const PRODUCT: i64 = 2;
pub const CUSTOMER: i64 = 7;

/// A 20-day shop streamed with the country and card tables and low-stock alerts; product 1,
/// named [`HOSTILE`], is among the ten that sell the most units; products 2 to 4 were stocked
/// low on 2026-11-05 and alert, and product 3 is restocked after the first run (a recovery);
/// then a forecast and a recommendation run are published.
pub fn shop() -> Env {
    let env = Env::with_shop_then(
        Backend::Sqlite,
        (20, 4000, 300, 3),
        FEATURES,
        Some(&format!(
            "UPDATE product_sales SET product_name = '{HOSTILE}', quantity_sold = quantity_sold + 5 WHERE product_id = 1; \
             UPDATE products SET name = '{HOSTILE}' WHERE id = 1; \
             UPDATE inventory SET stock_level = 13, updated_at = '2026-11-05 00:00:00' WHERE product_id IN (2, 3, 4)"
        )),
    );
    env.sql(
        "UPDATE inventory SET stock_level = 900, updated_at = '2026-11-19 12:00:00' WHERE product_id = 3",
    );
    let out = env
        .cmd(&["stream", "--until-idle"])
        .env("JOBS_STREAM__FEATURES", FEATURES)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    env.jobs(&["forecast", "--run-date", FORECAST_RUN]);
    env.jobs(&["recommend", "--run-date", "2026-11-20"]);
    env
}

/// The outside answers for the alerts, forecast and recommendation panels.
pub fn batch_check(env: &Env) -> Value {
    python(&[
        "tests/py/dashboard_batch_check.py",
        &env.lake(),
        common::BROKERS,
        &env.topic("alerts"),
        &PRODUCT.to_string(),
        &CUSTOMER.to_string(),
    ])
}

/// `2026-11-05T01:02:03.000000Z` -> `2026-11-05 01:02`, as the page and the check show times.
pub fn minute(t: &Value) -> String {
    t.as_str().unwrap()[..16].replace('T', " ")
}

/// The low-stock rows of the outside answer: `[product, stock, threshold, minute]`.
pub fn alert_rows(v: &Value) -> Vec<(i64, i64, i64, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap(),
                r[1].as_i64().unwrap(),
                r[2].as_i64().unwrap(),
                r[3].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The outside answer's forecast days: date -> (actual units, predicted units).
pub fn forecast_days(
    want: &Value,
) -> std::collections::BTreeMap<String, (Option<i64>, Option<f64>)> {
    want["forecast"]["days"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, v)| (d.clone(), (v[0].as_i64(), v[1].as_f64())))
        .collect()
}

/// The outside answer's recommendation list (`customer` or `cold_start`): (id, name) by rank.
pub fn rec_list(want: &Value, which: &str) -> Vec<(i64, String)> {
    want["recommendations"][which]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_str().unwrap().to_string()))
        .collect()
}

/// Compares one `/api/panels` answer with DuckDB's over the same range and filter.
pub fn same_as_duckdb(env: &Env, v: &Value, filter: &[&str]) -> Value {
    let h = &v["hourly"];
    let want = duck(env, h, filter);
    let what = format!("{} {filter:?}", h["from"]);
    for k in ["units", "revenue_cents", "orders"] {
        assert_eq!(h[k], want[k], "{what}, {k}: {h} vs DuckDB {want}");
    }
    for (ours, theirs) in [("by_units", "top_units"), ("by_revenue", "top_revenue")] {
        let ours = ranked(&v["top"][ours]);
        let theirs = ranked(&want[theirs]);
        assert_eq!(ours, theirs, "{what}: top {ours:?}");
    }
    for k in ["countries", "cards"] {
        let ours = bars(&v[k]["bars"]);
        let theirs = bars(&want[k]);
        assert_eq!(ours, theirs, "{what}: {k}");
        assert_eq!(v[k]["all_products"], !filter.is_empty());
    }
    want
}

/// A top list as JSON (`product_id`, `units`, `revenue_cents`), as tuples in their order.
pub fn ranked(v: &Value) -> Vec<(i64, i64, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["product_id"].as_i64().unwrap(),
                r["units"].as_i64().unwrap(),
                r["revenue_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Bars as JSON (`label`, `revenue_cents`, `units`, `orders`), as tuples in their order.
pub fn bars(v: &Value) -> Vec<(String, i64, i64, i64)> {
    v.as_array()
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
        .collect()
}

/// `$1,234.56` -> 123456; `1,234` -> 1234.
pub fn number(text: &str) -> i64 {
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not a number on the page: {text:?}"))
}

/// `2026-11-19 23:00 – 2026-11-20 00:00 UTC` -> the RFC 3339 ends DuckDB is given.
pub fn span(text: &str) -> Value {
    let t: Vec<&str> = text.split(' ').collect();
    serde_json::json!({"from": format!("{}T{}:00Z", t[0], t[1]), "to": format!("{}T{}:00Z", t[3], t[4])})
}

/// Kills a child on drop.
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Decodes `application/x-www-form-urlencoded` (`+` and `%XX`).
pub fn urlencoding(s: &str) -> String {
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
