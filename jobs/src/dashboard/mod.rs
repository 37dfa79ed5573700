//! `jobs dashboard`: the shop's sales on one page, live, served by the binary itself.
//!
//! Every number comes from the lake that `jobs stream` writes and from its checkpoints,
//! never from a copy: [`refresh`] polls the checkpoint folder and reads only the files that
//! are new, [`core`] keeps them indexed and computes the panels, [`http`] serves the page,
//! the JSON API and the Server-Sent Events that tell the page to redraw.
//!
//! Bound to loopback by default; any other address needs `dashboard.token`, which every
//! request must then present (`Authorization: Bearer ...` or the login cookie).

pub mod alerts;
pub mod core;
pub mod health;
mod http;
mod outputs;
pub mod refresh;
pub mod runs;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::io::lake::Lake;
use crate::shutdown::Shutdown;
use crate::{Error, Result};

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where the dashboard may listen: loopback freely, elsewhere only with a token.
pub fn bind_address(cfg: &Config) -> Result<SocketAddr> {
    let d = &cfg.dashboard;
    let addr: SocketAddr = d.addr.parse().map_err(|e| {
        Error::Config(format!(
            "dashboard.addr {:?} is not an address: {e}",
            d.addr
        ))
    })?;
    let token = d.token.as_deref().unwrap_or_default();
    if !token.is_empty() && token.len() < MIN_TOKEN_LEN {
        return Err(Error::Config(format!(
            "dashboard.token is shorter than {MIN_TOKEN_LEN} characters"
        )));
    }
    if !addr.ip().is_loopback() && token.is_empty() {
        return Err(Error::Config(format!(
            "dashboard.addr {addr} is not a loopback address: set dashboard.token (JOBS_DASHBOARD__TOKEN) to serve it there"
        )));
    }
    Ok(addr)
}

/// The index in `stream.windows` of the tumbling window of `size` micros, if there is one.
fn tumbling(cfg: &Config, size: i64) -> Option<usize> {
    cfg.stream
        .windows
        .iter()
        .position(|s| s.size_micros == size && s.slide_micros == s.size_micros)
}

/// Serves until `stop` is raised.
pub async fn run(cfg: &Config, stop: Shutdown) -> Result<()> {
    let addr = bind_address(cfg)?;
    let lake = Lake::open(&cfg.lake, &cfg.s3)?;
    let hour_spec = tumbling(cfg, 3_600_000_000);
    let window = hour_spec.map_or_else(|| "1h".to_string(), |i| cfg.stream.windows[i].name.clone());
    let day_spec = tumbling(cfg, 86_400_000_000);
    let shared = Arc::new(refresh::Shared {
        view: RwLock::new(refresh::View::default()),
        updates: tokio::sync::broadcast::channel(64).0,
    });
    let src = refresh::Source {
        lake: lake.clone(),
        state_dir: crate::stream::state_dir(cfg),
        window,
        hour_spec,
        day_window: day_spec.map(|i| cfg.stream.windows[i].name.clone()),
        day_spec,
        lateness: cfg.stream.allowed_lateness.as_micros() as i64,
        poll: cfg.dashboard.poll_interval,
    };
    let refresher = tokio::spawn(refresh::run(src, shared.clone(), stop.clone()));
    let ends = tokio::spawn(refresh::end_offsets(
        cfg.kafka.clone(),
        cfg.topics.product_sales.clone(),
        shared.clone(),
        stop.clone(),
        std::time::Duration::from_secs(5),
    ));
    let runs = tokio::spawn(outputs::runs(
        lake,
        shared.clone(),
        stop.clone(),
        std::time::Duration::from_secs(5),
    ));
    let alerts_on = cfg.stream.has(crate::config::Feature::Alerts);
    let alerts = alerts_on.then(|| {
        tokio::spawn(outputs::alerts(
            cfg.kafka.clone(),
            cfg.topics.low_stock_alerts.clone(),
            cfg.stream.output_format,
            shared.clone(),
            stop.clone(),
            std::time::Duration::from_secs(2),
        ))
    });
    let app = Arc::new(http::App {
        alerts_on,
        shared,
        token: cfg.dashboard.token.clone().filter(|t| !t.is_empty()),
        stale_after_micros: cfg.dashboard.stale_after.as_micros() as i64,
        stop: stop.clone(),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("dashboard.addr {addr}: cannot listen: {e}")))?;
    tracing::info!(message = "Dashboard listening.", url = %format!("http://{addr}/"));
    let until = stop.clone();
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(async move {
            while !until.is_raised() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("dashboard server: {e}")))?;
    let _ = refresher.await;
    let _ = ends.await;
    let _ = runs.await;
    if let Some(a) = alerts {
        let _ = a.await;
    }
    Ok(())
}
