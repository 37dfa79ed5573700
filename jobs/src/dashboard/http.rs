//! The dashboard's HTTP surface: the page and its assets (compiled in), the read-only JSON
//! API, the Server-Sent Events stream, and the token check in front of all of them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query as QueryParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;

use super::core::{Query, Table};
use super::health::health;
use super::refresh::Shared;
use super::runs::{forecast_panel, rec_panel};

const PAGE: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const UPLOT_JS: &str = include_str!("assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/vendor/uPlot.LICENSE");
const TOKEN_COOKIE: &str = "jobs_dashboard_token";
/// Products in each top list.
const TOP_N: usize = 10;

/// What the handlers share.
pub struct App {
    pub shared: Arc<Shared>,
    /// Required on every request when set.
    pub token: Option<String>,
    pub stale_after_micros: i64,
    /// Whether the stream raises low-stock alerts (`alerts` in `stream.features`).
    pub alerts_on: bool,
    /// Ends the event streams, so that a graceful shutdown does not wait for the browsers.
    pub stop: crate::shutdown::Shutdown,
}

/// The routes, behind the token check.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route(
            "/assets/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/uPlot.iife.min.js",
            get(|| asset(UPLOT_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| asset(UPLOT_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/uPlot.LICENSE",
            get(|| asset(UPLOT_LICENSE, "text/plain; charset=utf-8")),
        )
        .route("/api/panels", get(panels))
        .route("/api/forecast", get(forecast_api))
        .route("/api/recommendations", get(recommendations_api))
        .route("/api/health", get(health_api))
        .route("/api/events", get(events))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Refuses a request without the token (when one is set), and adds the headers that keep
/// the page from being framed, sniffed or fed scripts from elsewhere.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token
        && !presented(req.headers()).is_some_and(|t| same(t.as_bytes(), token.as_bytes()))
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a dashboard token is required: send `Authorization: Bearer <dashboard.token>`\n",
        )
            .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The token of a request: the bearer header, else the login cookie.
fn presented(h: &HeaderMap) -> Option<&str> {
    if let Some(t) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim());
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// `range`: `1h`, `6h`, `24h`, `7d` or `30d`; `category`, `brand`: exact names (empty: all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    range: Option<String>,
    category: Option<String>,
    brand: Option<String>,
}

fn hours(range: Option<&str>) -> Result<i64, Response> {
    match range.unwrap_or("24h") {
        "1h" => Ok(1),
        "6h" => Ok(6),
        "24h" => Ok(24),
        "7d" => Ok(7 * 24),
        "30d" => Ok(30 * 24),
        other => Err((
            StatusCode::BAD_REQUEST,
            format!("range {other:?}: expected one of 1h, 6h, 24h, 7d, 30d\n"),
        )
            .into_response()),
    }
}

/// Every panel that obeys the range and the filter, from one view: they always agree.
async fn panels(
    State(app): State<Arc<App>>,
    QueryParams(p): QueryParams<Params>,
) -> Result<Response, Response> {
    let q = Query {
        hours: hours(p.range.as_deref())?,
        category: p.category.filter(|c| !c.is_empty()),
        brand: p.brand.filter(|b| !b.is_empty()),
    };
    let v = app.shared.view.read().map_err(|_| internal())?;
    let (categories, brands) = v.index.filters();
    let range = v.index.range(&v.live, q.hours);
    let alerts = v.alerts.panel(range, |id| v.index.matches(&v.live, &q, id));
    Ok(Json(json!({
        "refreshed": v.refreshed,
        "alerts": alerts,
        "alerts_on": app.alerts_on,
        "generation": v.generation,
        "hourly": v.index.hourly(&v.live, &q),
        "top": v.index.top(&v.live, &q, TOP_N),
        "countries": v.index.bars(&v.live, &q, Table::Countries),
        "cards": v.index.bars(&v.live, &q, Table::Cards),
        "categories": categories,
        "brands": brands,
    }))
    .into_response())
}

/// `product` (forecast) or `customer` (recommendations), with the same filter as the panels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PickParams {
    product: Option<String>,
    customer: Option<String>,
    /// Accepted (the page sends one query string) and not used: these panels are dated by
    /// their run, not by the range.
    #[serde(rename = "range")]
    _range: Option<String>,
    category: Option<String>,
    brand: Option<String>,
}

impl PickParams {
    fn query(&self) -> Query {
        Query {
            hours: 24,
            category: self.category.clone().filter(|c| !c.is_empty()),
            brand: self.brand.clone().filter(|b| !b.is_empty()),
        }
    }
}

/// An optional integer parameter: empty is none, anything else must be a whole number.
fn id_param(name: &str, v: Option<&str>) -> Result<Option<i64>, Response> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("{name} {s:?}: expected a whole number\n"),
            )
                .into_response()
        }),
    }
}

/// The newest forecast run against the daily windows, for one product.
async fn forecast_api(
    State(app): State<Arc<App>>,
    QueryParams(p): QueryParams<PickParams>,
) -> Result<Response, Response> {
    let product = id_param("product", p.product.as_deref())?;
    let q = p.query();
    let v = app.shared.view.read().map_err(|_| internal())?;
    let panel = v
        .forecast
        .as_ref()
        .map(|run| forecast_panel(run, &v.index, &v.live, &q, product));
    Ok(Json(json!({"generation": v.generation, "forecast": panel})).into_response())
}

/// The newest recommendation run, for one customer or the cold-start list.
async fn recommendations_api(
    State(app): State<Arc<App>>,
    QueryParams(p): QueryParams<PickParams>,
) -> Result<Response, Response> {
    let customer = id_param("customer", p.customer.as_deref())?;
    let q = p.query();
    let v = app.shared.view.read().map_err(|_| internal())?;
    let panel = v
        .recommendations
        .as_ref()
        .map(|run| rec_panel(run, &v.index, &v.live, &q, customer));
    Ok(Json(json!({"generation": v.generation, "recommendations": panel})).into_response())
}

async fn health_api(State(app): State<Arc<App>>) -> Result<Response, Response> {
    let v = app.shared.view.read().map_err(|_| internal())?;
    let now = chrono::Utc::now().timestamp_micros();
    Ok(Json(json!({
        "generation": v.generation,
        "refreshed": v.refreshed,
        "health": health(&v.live, &v.ends, now, app.stale_after_micros),
        "refresh": v.last,
    }))
    .into_response())
}

fn internal() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "dashboard view unavailable\n",
    )
        .into_response()
}

/// `update` events carry the new generation; the browser refetches what it shows.
async fn events(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.shared.updates.subscribe();
    let first = app.shared.view.read().map(|v| v.generation).unwrap_or(0);
    let hello = futures::stream::once(async move {
        Ok(Event::default()
            .event("update")
            .data(first.to_string())
            .retry(Duration::from_secs(1)))
    });
    let updates = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(g) => {
                    return Some((Ok(Event::default().event("update").data(g.to_string())), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let stop = app.stop.clone();
    let until = async move {
        while !stop.is_raised() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    use futures::StreamExt;
    Sse::new(hello.chain(updates).take_until(until)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; jobs_dashboard_token=xyz"),
        );
        assert_eq!(presented(&h), Some("xyz"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(presented(&h), Some("abc"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
