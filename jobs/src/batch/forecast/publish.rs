//! What a forecast run publishes: the lake's rows and the `sales_predictions` messages, the
//! same numbers in both.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use models::features::Granularity;
use serde_json::json;

use super::ProductForecast;
use crate::batch::history::ProductInfo;
use crate::batch::{Dates, date_of, day_number};
use crate::config::OutputFormat;
use crate::io::avro::Writer;
use crate::{Error, Result};

/// The run's rows for the lake: one per product and period.
pub(super) fn lake_batch(
    fits: &[ProductForecast],
    products: &BTreeMap<i64, ProductInfo>,
    (dates, g): (&Dates, Granularity),
    version: &str,
) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("product_name", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("product_category", DataType::Utf8, false),
        Field::new("forecast_date", DataType::Date32, false),
        Field::new("predicted_quantity", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("history_days", DataType::Int32, false),
        Field::new("predicted_low", DataType::Float64, false),
        Field::new("predicted_high", DataType::Float64, false),
        Field::new("period_days", DataType::Int32, false),
    ]));
    let (mut id, mut date, mut hist, mut period) = (
        Int64Builder::new(),
        Date32Builder::new(),
        Int32Builder::new(),
        Int32Builder::new(),
    );
    let (mut name, mut brand, mut cat, mut model, mut ver) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut qty, mut low, mut high) = (
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    );
    let start = day_number(dates.run_date);
    let step = g.days();
    let unknown = ProductInfo::default();
    for f in fits {
        let info = products.get(&f.product_id).unwrap_or(&unknown);
        for (d, q) in f.forecast.iter().enumerate() {
            id.append_value(f.product_id);
            name.append_value(&info.name);
            brand.append_value(&info.brand);
            cat.append_value(&info.category);
            date.append_value((start + d as i64 * step) as i32);
            qty.append_value(*q);
            model.append_value(&f.model);
            ver.append_value(version);
            hist.append_value(f.history_days as i32);
            low.append_value(f.band[d].0);
            high.append_value(f.band[d].1);
            period.append_value(step as i32);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(name.finish()),
        Arc::new(brand.finish()),
        Arc::new(cat.finish()),
        Arc::new(date.finish()),
        Arc::new(qty.finish()),
        Arc::new(model.finish()),
        Arc::new(ver.finish()),
        Arc::new(hist.finish()),
        Arc::new(low.finish()),
        Arc::new(high.finish()),
        Arc::new(period.finish()),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| Error::Internal(format!("arrow batch: {e}")))
}

/// The run's `sales_predictions` messages, keyed by product: one per product and period.
pub(super) fn messages(
    fits: &[ProductForecast],
    products: &BTreeMap<i64, ProductInfo>,
    (dates, g): (&Dates, Granularity),
    version: &str,
    format: OutputFormat,
    schema_id: u32,
) -> Vec<(String, Vec<u8>)> {
    let start = day_number(dates.run_date);
    let run = day_number(dates.run_date);
    let step = g.days();
    let unknown = ProductInfo::default();
    let mut w = Writer::default();
    let mut out = Vec::new();
    for f in fits {
        let name = &products.get(&f.product_id).unwrap_or(&unknown).name;
        for (d, q) in f.forecast.iter().enumerate() {
            let day = start + d as i64 * step;
            let value = match format {
                OutputFormat::Avro => {
                    w.start_framed(schema_id);
                    w.long(f.product_id);
                    w.string(name);
                    w.int32(day as i32);
                    w.double(*q);
                    w.string(&f.model);
                    w.string(version);
                    w.int32(run as i32);
                    w.double(f.band[d].0);
                    w.double(f.band[d].1);
                    w.int32(step as i32);
                    w.buf.clone()
                }
                OutputFormat::Json => serde_json::to_vec(&json!({
                    "product_id": f.product_id,
                    "product_name": name,
                    "forecast_date": date_of(day).to_string(),
                    "predicted_quantity": q,
                    "model": &f.model,
                    "model_version": version,
                    "run_date": dates.run_date.to_string(),
                    "predicted_low": f.band[d].0,
                    "predicted_high": f.band[d].1,
                    "period_days": step,
                }))
                .expect("a JSON value always encodes"),
            };
            out.push((f.product_id.to_string(), value));
        }
    }
    out
}
