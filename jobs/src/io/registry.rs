//! Schema ids from a Confluent-compatible schema registry over HTTP; the committed local
//! registry and the Avro encoding are pure, in `formats` ([`crate::io::avro`]).

use crate::config::{RegistryConfig, Topics};
use crate::io::avro::{Registry, SchemaKind};
use crate::io::retry::{self, Health};
use crate::shutdown::Shutdown;
use crate::{Error, Result};

/// A Confluent-compatible registry at `url`: each schema is registered (or found) under
/// the subject `<topic>-value` (TopicNameStrategy).
pub async fn remote(url: &str, subjects: &[(SchemaKind, &str)]) -> Result<Registry> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Registry(format!("{url}: {e}")))?;
    let mut reg = Registry::empty(format!("schema registry {url}"));
    for (kind, topic) in subjects {
        let subject = format!("{topic}-value");
        let endpoint = format!("{}/subjects/{subject}/versions", url.trim_end_matches('/'));
        let body = serde_json::json!({ "schema": kind.schema_text() });
        let resp = client
            .post(&endpoint)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&body)
            .send()
            .await
            .map_err(|e| match e.is_builder() || e.is_redirect() {
                // A URL the client refuses (`localhost:8081` parses with the scheme
                // `localhost`) or a redirect loop is a configuration to fix, not an outage.
                true => Error::Registry(format!("POST {endpoint}: {e}")),
                false => Error::RegistryUnreachable(format!("POST {endpoint}: {e}")),
            })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Error::RegistryUnreachable(format!("POST {endpoint}: {e}")))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::RegistryUnreachable(format!(
                "POST {endpoint}: {status}: {text}"
            )));
        }
        if !status.is_success() {
            return Err(Error::Registry(format!(
                "POST {endpoint}: {status}: {text}"
            )));
        }
        let id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Error::Registry(format!("POST {endpoint}: no id in {text}")))?;
        reg.insert(*kind, id);
    }
    Ok(reg)
}

/// The registry its config section asks for: HTTP when `schema_registry.url` is set (our
/// schemas registered under `<topic>-value`), else the committed local file.
///
/// An HTTP registry that cannot be reached (or answers 5xx or 429) is waited for with
/// backoff, one log line when it fails and one when it is back, until `shutdown` is raised
/// (then the error is returned); without `shutdown` (the batch jobs) the first error is
/// returned. A refusal (an incompatible schema, 401, 403) is returned at once.
pub async fn for_config(
    reg: &RegistryConfig,
    t: &Topics,
    shutdown: Option<&Shutdown>,
) -> Result<Registry> {
    let Some(url) = &reg.url else {
        return Ok(Registry::local()?);
    };
    let subjects = subjects(t);
    match shutdown {
        Some(shutdown) => {
            let health = Health::default();
            retry::retry("schema registry", &health, shutdown, || {
                remote(url, &subjects)
            })
            .await
        }
        None => remote(url, &subjects).await,
    }
}

/// Each schema of ours and the topic whose `<topic>-value` subject it is registered under.
fn subjects(t: &Topics) -> [(SchemaKind, &str); 9] {
    [
        (SchemaKind::ProductSale, t.product_sales.as_str()),
        (SchemaKind::Product, t.product_updates.as_str()),
        (SchemaKind::WindowedSales, t.windowed_product_sales.as_str()),
        (
            SchemaKind::ProductTotals,
            t.aggregated_product_sales.as_str(),
        ),
        (SchemaKind::TopProducts, t.top_products.as_str()),
        (SchemaKind::LowStockAlert, t.low_stock_alerts.as_str()),
        (SchemaKind::SegmentSales, t.customer_segment_sales.as_str()),
        (SchemaKind::SalesPrediction, t.sales_predictions.as_str()),
        (
            SchemaKind::Recommendations,
            t.product_recommendations.as_str(),
        ),
    ]
}
