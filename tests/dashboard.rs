//! `jobs dashboard` against a lake the real pipeline wrote: the hourly panel's numbers equal
//! DuckDB's over the same range and filter, the event stream announces the view, and the
//! token rules hold (refused without it off loopback; every request checked when set).

mod common;

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Env, block_on, python};
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

#[test]
#[ignore = "written at the end of a session, not yet run: run it with --ignored"]
fn the_hourly_panel_equals_duckdb_for_every_range_and_filter() {
    let env = Env::with_shop(Backend::Sqlite, 20, 4000, 300, 3);
    let port = free_port();
    let _server = serve(&env, &format!("[dashboard]\naddr = \"127.0.0.1:{port}\"\n"));
    let base = format!("http://127.0.0.1:{port}");
    let first = ready(&format!("{base}/api/hourly?range=7d"), None);
    let categories: Vec<String> = serde_json::from_value(first["categories"].clone()).unwrap();
    let brands: Vec<String> = serde_json::from_value(first["brands"].clone()).unwrap();
    assert!(categories.len() >= 3 && brands.len() >= 5, "{first}");

    let mut nonzero = 0;
    for range in ["1h", "6h", "24h", "7d", "30d"] {
        let v = ready(&format!("{base}/api/hourly?range={range}"), None);
        let h = &v["hourly"];
        let want = duck(&env, h, &[]);
        for k in ["units", "revenue_cents", "orders"] {
            assert_eq!(h[k], want[k], "range {range}, {k}: {h} vs DuckDB {want}");
        }
        // Every hour of the range is listed, and they sum to the totals.
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
    for c in &categories {
        let v = ready(&format!("{base}/api/hourly?range=30d&category={c}"), None);
        let want = duck(&env, &v["hourly"], &["category", c]);
        assert_eq!(
            v["hourly"]["revenue_cents"], want["revenue_cents"],
            "category {c}"
        );
        assert_eq!(v["hourly"]["units"], want["units"], "category {c}");
    }
    let b = &brands[0];
    let v = ready(&format!("{base}/api/hourly?range=30d&brand={b}"), None);
    let want = duck(&env, &v["hourly"], &["brand", b]);
    assert_eq!(v["hourly"]["units"], want["units"], "brand {b}");

    // The health strip reads the checkpoints: every event consumed, the input closed.
    let health = ready(&format!("{base}/api/health"), None);
    assert_eq!(health["health"]["consumed"], 4000, "{health}");
    assert_eq!(health["health"]["dead_lettered"], 0);
    // The page and its script are served; a bad range is a clear 400.
    let (status, page) = get(&format!("{base}/"), None);
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js"));
    let (status, body) = get(&format!("{base}/api/hourly?range=2y"), None);
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
