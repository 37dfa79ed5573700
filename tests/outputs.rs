//! The business outputs of `jobs stream` (running totals, top-N, low-stock alerts, customer
//! segments, dashboard tables) on crafted input with exact expected numbers, read back from
//! Kafka, the lake (DuckDB), the SQL database and Redis by outside clients.

mod common;

use common::{Backend, Env, python};
use serde_json::{Value, json};

const REDIS: &str = "redis://127.0.0.1:6379";

/// Everything the stream wrote for `group`, as `tests/py/outputs_check.py all` reads it.
fn outputs(env: &Env, lake: &str, group: &str, sql_url: &str) -> Value {
    python(&[
        "tests/py/outputs_check.py",
        "all",
        lake,
        common::BROKERS,
        &env.id,
        group,
        sql_url,
        REDIS,
    ])
}

/// A copy of the env's config with `settings` added to its `[stream]` section.
fn with_stream_settings(env: &Env, name: &str, settings: &str) -> std::path::PathBuf {
    env.config_with(
        name,
        &[(
            "roll_interval = \"1s\"",
            &format!("roll_interval = \"1s\"\n{settings}"),
        )],
    )
}

/// Runs `jobs stream --until-idle` with `cfg`; fails the test unless it succeeds.
fn stream_until_idle(env: &Env, cfg: &std::path::Path) -> std::process::Output {
    let out = env
        .cmd_with(cfg, &["stream", "--until-idle"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

fn crafted(env: &Env) {
    env.sql(
        "INSERT INTO customer_data (customer_id, customer_name, customer_segment) VALUES
         (1, 'Alice', 'Premium'), (2, 'Bob', 'Regular'), (4, 'Dan', NULL)",
    );
    env.sql(
        "INSERT INTO product_sales (transaction_id, product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date, customer_id, country, card_type) VALUES
         (1, 1, 'Dell Inspiron', 'Laptop', 'Dell', 2, 500.00, '2026-11-20 13:05:00', 1, 'DE', 'Visa'),
         (2, 2, 'Apple iPhone 12', 'Smartphone', 'Apple', 3, 800.00, '2026-11-20 13:10:00', 2, 'US', 'Mastercard'),
         (3, 3, 'Lenovo ThinkPad', 'Laptop', 'Lenovo', 1, 650.00, '2026-11-20 13:15:00', 3, 'DE', 'Visa'),
         (4, 4, 'Samsung Galaxy Tab', 'Tablet', 'Samsung', 3, 300.00, '2026-11-20 13:20:00', NULL, 'FR', NULL),
         (5, 5, 'Logitech Mouse', 'Accessory', 'Logitech', 4, 25.00, '2026-11-20 13:25:00', 1, 'US', 'Visa'),
         (6, 1, 'Dell Inspiron', 'Laptop', 'Dell', 1, 500.00, '2026-11-20 13:30:00', 2, 'US', 'Amex'),
         (7, 6, 'HP Pavilion', 'Laptop', 'HP', 3, 300.00, '2026-11-20 13:35:00', 9, 'FR', 'Visa')",
    );
}

fn business_outputs_are_exact(backend: Backend) {
    let env = Env::new(backend);
    let cfg = with_stream_settings(
        &env,
        "business.toml",
        "windows = [\"1h\"]\ntop_window = \"1h\"\ntop_n = 4\ntotals_interval = \"100ms\"",
    );
    env.jobs(&["init"]);
    crafted(&env);
    env.jobs(&["ingest", "--once"]);
    let out = stream_until_idle(&env, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("customer_data rows without a segment"),
        "a NULL segment is reported: {stderr}"
    );
    let o = outputs(
        &env,
        &env.lake(),
        &format!("{}-stream", env.id),
        &env.db_url,
    );
    let t = &o["topics"];

    // Running totals: the compacted view of the topic, and the lake snapshot.
    let totals = json!([
        [1, "Dell Inspiron", 3, "1500.00", 2],
        [2, "Apple iPhone 12", 3, "2400.00", 1],
        [3, "Lenovo ThinkPad", 1, "650.00", 1],
        [4, "Samsung Galaxy Tab", 3, "900.00", 1],
        [5, "Logitech Mouse", 4, "100.00", 1],
        [6, "HP Pavilion", 3, "900.00", 1]
    ]);
    assert_eq!(t["totals"], totals);
    assert_eq!(t["totals_regressions"], 0);
    let lake_totals: Vec<Value> = o["lake"]["sales_totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r[0].as_str().unwrap().parse::<i64>().unwrap(),
                r[1],
                r[2].as_str().unwrap().parse::<i64>().unwrap(),
                r[3],
                r[4].as_str().unwrap().parse::<i64>().unwrap()
            ])
        })
        .collect();
    assert_eq!(Value::from(lake_totals), totals);

    // Top 4 of 13:00-14:00. By quantity: 5 (4), then the ties at 3 by revenue: 2 (2400),
    // 1 (1500), then 4 and 6 (both 900) by product id: 4. By revenue: 2, 1, 4, 6.
    let top = t["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{top:?}");
    let ids = |l: &Value| -> Vec<i64> {
        l[3].as_array().unwrap()[..4]
            .iter()
            .map(|p| p[0].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        (top[0][0].as_str(), ids(&top[0])),
        (Some("quantity"), vec![5, 2, 1, 4])
    );
    assert_eq!(
        (top[1][0].as_str(), ids(&top[1])),
        (Some("revenue"), vec![2, 1, 4, 6])
    );
    let lake_top: Vec<(String, i64)> = o["lake"]["top_products"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[3].as_str().unwrap().parse::<i64>().unwrap() <= 4)
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[4].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut expected_top: Vec<(String, i64)> = [5, 2, 1, 4]
        .iter()
        .map(|p| ("quantity".to_string(), *p))
        .chain([2, 1, 4, 6].iter().map(|p| ("revenue".to_string(), *p)))
        .collect();
    let mut got = lake_top.clone();
    got.sort();
    expected_top.sort();
    assert_eq!(got, expected_top, "lake top_products, ranked by DuckDB");

    // SQL: the documented query returns the global top.
    let sql_top = o["sql"]["top_products"].as_array().unwrap();
    let mut by_q: Vec<&Value> = sql_top.iter().filter(|r| r[0] == "quantity").collect();
    by_q.sort_by_key(|r| {
        (
            -r[4].as_str().unwrap().parse::<i64>().unwrap(),
            -(r[5].as_str().unwrap().parse::<f64>().unwrap() * 100.0) as i64,
            r[3].as_str().unwrap().parse::<i64>().unwrap(),
        )
    });
    let q_ids: Vec<&str> = by_q
        .iter()
        .take(4)
        .map(|r| r[3].as_str().unwrap())
        .collect();
    assert_eq!(q_ids, vec!["5", "2", "1", "4"], "{sql_top:?}");

    // Redis: the window's sorted set holds every partition's list; its best 4 are the top 4.
    let r = &o["redis"];
    let key = "top:quantity:1h:2026-11-20T13:00:00Z";
    let z = r[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {r}"));
    let members: Vec<&str> = z.iter().take(4).map(|m| m[0].as_str().unwrap()).collect();
    assert_eq!(members[0], "5");
    assert_eq!(z[0][1], "4");
    // 2, 1, 4, 6 all have quantity 3 in Redis's score; ties are Redis's (by member).
    let mut rest: Vec<&str> = z[1..].iter().map(|m| m[0].as_str().unwrap()).collect();
    rest.sort();
    assert!(rest.starts_with(&["1", "2"]), "{z:?}");
    assert_eq!(r["ttl_ok"], true);

    // Segments, with unknown customers (3 and 9 not in customer_data, NULL customer).
    let seg: Vec<Value> = t["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r[2], r[3], r[4], r[5], r[6]]))
        .collect();
    assert_eq!(
        Value::from(seg),
        json!([
            ["Premium", 1, 2, "1000.00", 1],
            ["Premium", 5, 4, "100.00", 1],
            ["Regular", 1, 1, "500.00", 1],
            ["Regular", 2, 3, "2400.00", 1],
            ["unknown", 3, 1, "650.00", 1],
            ["unknown", 4, 3, "900.00", 1],
            ["unknown", 6, 3, "900.00", 1]
        ])
    );
    assert_eq!(o["lake"]["segment_sales"].as_array().unwrap().len(), 7);

    // Dashboard tables (views summing the partitions), and the same in the lake.
    let country = json!([
        ["1h", "2026-11-20 13:00:00", "DE", "3", "1650.00", "2"],
        ["1h", "2026-11-20 13:00:00", "FR", "6", "1800.00", "2"],
        ["1h", "2026-11-20 13:00:00", "US", "8", "3000.00", "3"]
    ]);
    assert_eq!(o["sql"]["sales_by_country"], country);
    assert_eq!(o["lake"]["sales_by_country"], country);
    let cards = json!([
        ["1h", "2026-11-20 13:00:00", "Amex", "1", "500.00", "1"],
        [
            "1h",
            "2026-11-20 13:00:00",
            "Mastercard",
            "3",
            "2400.00",
            "1"
        ],
        ["1h", "2026-11-20 13:00:00", "Visa", "10", "2650.00", "4"],
        ["1h", "2026-11-20 13:00:00", "unknown", "3", "900.00", "1"]
    ]);
    assert_eq!(o["sql"]["sales_by_card_type"], cards);
    assert_eq!(o["lake"]["sales_by_card_type"], cards);
    for k in ["totals", "top", "segments", "alerts"] {
        assert_eq!(t[format!("{k}_duplicates")], 0, "{k}");
    }

    // A second run over the same input (a replay) changes nothing in SQL and Redis.
    let replay = with_stream_settings(
        &env,
        "replay.toml",
        "windows = [\"1h\"]\ntop_window = \"1h\"\ntop_n = 4",
    );
    std::fs::remove_dir_all(env.dir.join("lake")).unwrap();
    stream_until_idle(&env, &replay);
    let again = outputs(
        &env,
        &env.lake(),
        &format!("{}-stream", env.id),
        &env.db_url,
    );
    assert_eq!(again["sql"], o["sql"], "upserts: a replay adds nothing");
    assert_eq!(again["redis"], o["redis"]);
}

#[test]
fn business_outputs_are_exact_on_mariadb() {
    business_outputs_are_exact(Backend::MariaDb);
}

#[test]
fn business_outputs_are_exact_on_postgres() {
    business_outputs_are_exact(Backend::Postgres);
}

#[test]
fn json_outputs_carry_the_same_numbers() {
    let env = Env::new(Backend::Sqlite);
    let cfg = with_stream_settings(
        &env,
        "json.toml",
        "windows = [\"1h\"]\ntop_window = \"1h\"\ntop_n = 4\noutput_format = \"json\"",
    );
    env.jobs(&["init"]);
    crafted(&env);
    env.jobs(&["ingest", "--once"]);
    stream_until_idle(&env, &cfg);
    let topic = |name: &str| -> Vec<Value> {
        python(&[
            "tests/py/outputs_check.py",
            "json-topic",
            common::BROKERS,
            &env.topic(name),
            &format!("{}-stream", env.id),
        ])
        .as_array()
        .unwrap()
        .clone()
    };
    // Totals: the newest per product; money as an exact JSON number.
    let mut last = std::collections::BTreeMap::new();
    for v in topic("totals") {
        last.insert(v["product_id"].as_i64().unwrap(), v);
    }
    let dell = &last[&1];
    assert_eq!(
        (
            dell["total_quantity_sold"].as_i64(),
            dell["total_revenue"].as_str(),
            dell["order_count"].as_i64(),
            dell["last_event_time"].as_str()
        ),
        (
            Some(3),
            Some("1500.00"),
            Some(2),
            Some("2026-11-20T13:30:00.000000Z")
        )
    );
    assert_eq!(last.len(), 6);
    // Top lists: merged over partitions, the same ranking as the Avro path.
    let mut by_quantity: Vec<(i64, i64, f64)> = topic("top")
        .iter()
        .filter(|l| l["metric"] == "quantity" && l["window_start"] == "2026-11-20T13:00:00.000000Z")
        .flat_map(|l| l["products"].as_array().unwrap().clone())
        .map(|p| {
            (
                p["product_id"].as_i64().unwrap(),
                p["total_quantity_sold"].as_i64().unwrap(),
                p["total_revenue"].as_str().unwrap().parse::<f64>().unwrap(),
            )
        })
        .collect();
    by_quantity.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
    let ids: Vec<i64> = by_quantity.iter().take(4).map(|p| p.0).collect();
    assert_eq!(ids, vec![5, 2, 1, 4]);
    let segments = topic("segments");
    assert_eq!(segments.len(), 7, "{segments:?}");
    assert!(
        segments
            .iter()
            .any(|s| s["customer_segment"] == "unknown" && s["product_id"] == 6)
    );
}

fn alerts(env: &Env) -> Vec<Value> {
    outputs(env, &env.lake(), &format!("{}-stream", env.id), &env.db_url)["topics"]["alerts"]
        .as_array()
        .unwrap()
        .clone()
}

fn sale(env: &Env, id: i64, product: i64, qty: i64, at: &str) {
    env.sql(&format!(
        "INSERT INTO product_sales (transaction_id, product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date) VALUES
         ({id}, {product}, 'Product {product}', 'Laptop', 'Dell', {qty}, 10.00, '2026-11-20 {at}')"
    ));
}

fn low_stock_alerts_fire_once_and_recover(backend: Backend) {
    let env = Env::new(backend);
    let cfg = with_stream_settings(&env, "alerts.toml", "low_stock_thresholds = { \"5\" = 3 }");
    env.jobs(&["init"]);
    // No customer_data table at all: reported, and every sale counts as segment unknown.
    env.sql("DROP TABLE customer_data");
    let run = || {
        env.jobs(&["ingest", "--once"]);
        let out = stream_until_idle(&env, &cfg);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    env.sql(
        "INSERT INTO products (id, name, category, brand, price) VALUES
         (1, 'Product 1', 'Laptop', 'Dell', 10.00), (2, 'Product 2', 'Laptop', 'Dell', 10.00),
         (5, 'Product 5', 'Laptop', 'Dell', 10.00)",
    );
    // Product 1: 15 in stock at 12:00. Product 5: 6 in stock, threshold 3 (override).
    // Product 2: NULL stock; product 999 is not in products: both reported, neither stops us.
    env.sql(
        "INSERT INTO inventory (product_id, product_name, brand, stock_level, updated_at) VALUES
         (1, 'Product 1', 'Dell', 15, '2026-11-20 12:00:00'),
         (5, 'Product 5', 'Dell', 6, '2026-11-20 12:00:00'),
         (2, 'Product 2', 'Dell', NULL, '2026-11-20 12:00:00'),
         (999, 'Ghost', 'Nobody', 4, '2026-11-20 12:00:00')",
    );
    sale(&env, 1, 1, 5, "11:00:00"); // before the stock was recorded: already in it
    sale(&env, 2, 1, 3, "13:00:00"); // 12 left
    sale(&env, 3, 1, 3, "13:10:00"); // 9 < 10: alert
    sale(&env, 4, 1, 4, "13:20:00"); // 5: still low, silent
    sale(&env, 5, 5, 2, "13:00:00"); // 4 >= 3: no alert for product 5
    let stderr = run();
    assert!(
        stderr.contains("Skipped inventory rows") && stderr.contains("999: not in products"),
        "{stderr}"
    );
    assert!(stderr.contains("2: stock_level is NULL"), "{stderr}");
    assert!(
        stderr.contains("Cannot read the reference tables") && stderr.contains("customer_data in"),
        "{stderr}"
    );
    let segments = outputs(
        &env,
        &env.lake(),
        &format!("{}-stream", env.id),
        &env.db_url,
    )["topics"]["segments"]
        .clone();
    assert!(
        !segments.as_array().unwrap().is_empty()
            && segments
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r[2] == "unknown"),
        "{segments}"
    );
    let low = json!(["low", 1, 15, 6, 9, 10, "2026-11-20 13:10:00+00:00"]);
    assert_eq!(alerts(&env), vec![low.clone()]);

    // Restock recorded at 13:15: the 13:20 sale (4) counts against it: 46, recovered, even
    // though no new sale arrives.
    env.sql(
        "UPDATE inventory SET stock_level = 50, updated_at = '2026-11-20 13:15:00' WHERE product_id = 1",
    );
    run();
    let recovered = json!(["recovered", 1, 50, 4, 46, 10, "2026-11-20 13:15:00+00:00"]);
    assert_eq!(alerts(&env), vec![low.clone(), recovered.clone()]);

    // Selling down again crosses the threshold again: one new alert.
    sale(&env, 6, 1, 40, "13:30:00"); // 6
    sale(&env, 7, 1, 1, "13:31:00"); // 5: silent
    run();
    let again = json!(["low", 1, 50, 44, 6, 10, "2026-11-20 13:30:00+00:00"]);
    let got = alerts(&env);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2], again);
}

#[test]
fn low_stock_alerts_fire_once_and_recover_on_postgres() {
    low_stock_alerts_fire_once_and_recover(Backend::Postgres);
}

#[test]
fn low_stock_alerts_fire_once_and_recover_on_mariadb() {
    low_stock_alerts_fire_once_and_recover(Backend::MariaDb);
}
