//! The business outputs' records: running totals, top-N lists, low-stock alerts, segment and
//! dashboard rows, as Kafka values (Avro in the Confluent framing, or JSON) and as Arrow
//! batches for the lake.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde::Serialize;
use serde_json::value::RawValue;

use super::outputs::{AggCols, ProductCols, ts_field};
use super::stock::Alert;
use super::top::Metric;
use super::totals::Total;
use super::window::{ClosedWindow, ProductInfo, WindowSpec};
use crate::config::OutputFormat;
use crate::io::avro::Writer;
use crate::units::{format_cents, format_micros, rfc3339_micros, rfc3339_secs};
use crate::{Error, Result};

fn money(cents: i64) -> Box<RawValue> {
    // format_cents always yields a valid JSON number.
    RawValue::from_string(format_cents(cents))
        .unwrap_or_else(|_| RawValue::from_string("0".into()).expect("0 is JSON"))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// A product's running totals (`aggregated_product_sales`).
pub fn totals_value(
    format: OutputFormat,
    schema_id: u32,
    product_id: i64,
    info: &ProductInfo,
    t: &Total,
    w: &mut Writer,
) -> Vec<u8> {
    match format {
        OutputFormat::Avro => {
            w.start_framed(schema_id);
            w.long(product_id);
            w.string(&info.name);
            w.string(&info.brand);
            w.string(&info.category);
            w.long(t.agg.quantity);
            w.decimal(t.agg.revenue_cents);
            w.long(t.agg.orders);
            w.long(t.last_event);
            w.buf.clone()
        }
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct J<'a> {
                product_id: i64,
                product_name: &'a str,
                brand: &'a str,
                product_category: &'a str,
                total_quantity_sold: i64,
                total_revenue: Box<RawValue>,
                order_count: i64,
                last_event_time: String,
            }
            json(&J {
                product_id,
                product_name: &info.name,
                brand: &info.brand,
                product_category: &info.category,
                total_quantity_sold: t.agg.quantity,
                total_revenue: money(t.agg.revenue_cents),
                order_count: t.agg.orders,
                last_event_time: rfc3339_micros(t.last_event),
            })
        }
    }
}

/// One source partition's top N of one closed window by one metric.
#[derive(Debug, Clone)]
pub struct TopList<'a> {
    pub metric: Metric,
    pub spec: &'a WindowSpec,
    pub start: i64,
    pub end: i64,
    pub partition: i32,
    pub partitions: i32,
    /// Best first.
    pub rows: Vec<&'a ClosedWindow>,
}

impl TopList<'_> {
    /// The Kafka key: one list per metric and window (and source partition).
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.metric.name(),
            self.spec.name,
            rfc3339_secs(self.start)
        )
    }

    /// The idempotency key.
    pub fn idempotency_key(&self) -> String {
        format!(
            "top|{}|{}|{}|p{}",
            self.metric.name(),
            self.spec.name,
            self.start,
            self.partition
        )
    }

    /// The Kafka value (`top_products`).
    pub fn value(&self, format: OutputFormat, schema_id: u32, w: &mut Writer) -> Vec<u8> {
        match format {
            OutputFormat::Avro => {
                w.start_framed(schema_id);
                w.string(self.metric.name());
                w.string(&self.spec.name);
                w.long(self.start);
                w.long(self.end);
                w.int32(self.partition);
                w.int32(self.partitions);
                if !self.rows.is_empty() {
                    w.array_block(self.rows.len());
                    for (i, r) in self.rows.iter().enumerate() {
                        w.int32(i as i32 + 1);
                        w.long(r.product_id());
                        w.string(&r.info.name);
                        w.string(&r.info.brand);
                        w.string(&r.info.category);
                        w.long(r.agg.quantity);
                        w.decimal(r.agg.revenue_cents);
                        w.long(r.agg.orders);
                    }
                }
                w.array_block(0);
                w.buf.clone()
            }
            OutputFormat::Json => {
                #[derive(Serialize)]
                struct P<'a> {
                    rank: usize,
                    product_id: i64,
                    product_name: &'a str,
                    brand: &'a str,
                    product_category: &'a str,
                    total_quantity_sold: i64,
                    total_revenue: Box<RawValue>,
                    order_count: i64,
                }
                #[derive(Serialize)]
                struct J<'a> {
                    metric: &'a str,
                    window: &'a str,
                    window_start: String,
                    window_end: String,
                    source_partition: i32,
                    source_partitions: i32,
                    products: Vec<P<'a>>,
                }
                json(&J {
                    metric: self.metric.name(),
                    window: &self.spec.name,
                    window_start: rfc3339_micros(self.start),
                    window_end: rfc3339_micros(self.end),
                    source_partition: self.partition,
                    source_partitions: self.partitions,
                    products: self
                        .rows
                        .iter()
                        .enumerate()
                        .map(|(i, r)| P {
                            rank: i + 1,
                            product_id: r.product_id(),
                            product_name: &r.info.name,
                            brand: &r.info.brand,
                            product_category: &r.info.category,
                            total_quantity_sold: r.agg.quantity,
                            total_revenue: money(r.agg.revenue_cents),
                            order_count: r.agg.orders,
                        })
                        .collect(),
                })
            }
        }
    }
}

/// A low-stock alert or recovery (`low_stock_alerts`).
pub fn alert_value(
    format: OutputFormat,
    schema_id: u32,
    a: &Alert,
    info: &ProductInfo,
    w: &mut Writer,
) -> Vec<u8> {
    let kind = if a.low { "low" } else { "recovered" };
    match format {
        OutputFormat::Avro => {
            w.start_framed(schema_id);
            w.string(kind);
            w.long(a.product_id);
            w.string(&info.name);
            w.string(&info.brand);
            w.long(a.stock_level);
            w.long(a.recorded_at);
            w.long(a.sold_since);
            w.long(a.updated_stock);
            w.long(a.threshold);
            w.long(a.at);
            w.buf.clone()
        }
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct J<'a> {
                kind: &'a str,
                product_id: i64,
                product_name: &'a str,
                brand: &'a str,
                stock_level: i64,
                stock_recorded_at: String,
                units_sold_since: i64,
                updated_stock: i64,
                threshold: i64,
                event_time: String,
            }
            json(&J {
                kind,
                product_id: a.product_id,
                product_name: &info.name,
                brand: &info.brand,
                stock_level: a.stock_level,
                stock_recorded_at: rfc3339_micros(a.recorded_at),
                units_sold_since: a.sold_since,
                updated_stock: a.updated_stock,
                threshold: a.threshold,
                event_time: rfc3339_micros(a.at),
            })
        }
    }
}

/// A (segment, product) row of a closed window (`customer_segment_sales`).
pub fn segment_value(
    format: OutputFormat,
    schema_id: u32,
    spec: &WindowSpec,
    r: &ClosedWindow,
    w: &mut Writer,
) -> Vec<u8> {
    match format {
        OutputFormat::Avro => {
            w.start_framed(schema_id);
            w.string(&spec.name);
            w.long(r.start);
            w.long(r.end);
            w.string(&r.label);
            w.long(r.product_id());
            w.string(&r.info.name);
            w.string(&r.info.brand);
            w.string(&r.info.category);
            w.long(r.agg.quantity);
            w.decimal(r.agg.revenue_cents);
            w.long(r.agg.orders);
            w.buf.clone()
        }
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct J<'a> {
                window: &'a str,
                window_start: String,
                window_end: String,
                customer_segment: &'a str,
                product_id: i64,
                product_name: &'a str,
                brand: &'a str,
                product_category: &'a str,
                total_quantity_sold: i64,
                total_revenue: Box<RawValue>,
                order_count: i64,
            }
            json(&J {
                window: &spec.name,
                window_start: rfc3339_micros(r.start),
                window_end: rfc3339_micros(r.end),
                customer_segment: &r.label,
                product_id: r.product_id(),
                product_name: &r.info.name,
                brand: &r.info.brand,
                product_category: &r.info.category,
                total_quantity_sold: r.agg.quantity,
                total_revenue: money(r.agg.revenue_cents),
                order_count: r.agg.orders,
            })
        }
    }
}

fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::Internal(format!("arrow batch: {e}")))
}

/// Which label column a grouped table has.
#[derive(Debug, Clone, Copy)]
pub enum LabelTable {
    /// `segment_sales`: customer_segment + product columns.
    Segments,
    /// `sales_by_country`.
    Country,
    /// `sales_by_card_type`.
    CardType,
}

impl LabelTable {
    pub fn table(self) -> &'static str {
        match self {
            LabelTable::Segments => "segment_sales",
            LabelTable::Country => "sales_by_country",
            LabelTable::CardType => "sales_by_card_type",
        }
    }
    fn label_col(self) -> &'static str {
        match self {
            LabelTable::Segments => "customer_segment",
            LabelTable::Country => "country",
            LabelTable::CardType => "card_type",
        }
    }
}

/// Label rows grouped by their Hive folder `<table>/window=../date=..`, as Arrow batches.
/// Every row carries its source partition: a country's sales are summed over partitions.
pub fn label_files(
    kind: LabelTable,
    specs: &[WindowSpec],
    rows: &[&ClosedWindow],
    partition: i32,
) -> Result<BTreeMap<String, RecordBatch>> {
    let mut groups: BTreeMap<String, Vec<&ClosedWindow>> = BTreeMap::new();
    for r in rows {
        let dir = format!(
            "{}/window={}/date={}",
            kind.table(),
            specs[r.spec].name,
            &format_micros(r.start)[..10]
        );
        groups.entry(dir).or_default().push(r);
    }
    let with_product = matches!(kind, LabelTable::Segments);
    let mut out = BTreeMap::new();
    for (dir, rows) in groups {
        let n = rows.len();
        let (mut start, mut end) = (
            TimestampMicrosecondBuilder::with_capacity(n),
            TimestampMicrosecondBuilder::with_capacity(n),
        );
        let (mut spec, mut label) = (StringBuilder::new(), StringBuilder::new());
        let (mut product, mut agg) = (ProductCols::with_capacity(n), AggCols::with_capacity(n));
        let mut part = Int32Builder::with_capacity(n);
        for r in &rows {
            start.append_value(r.start);
            end.append_value(r.end);
            spec.append_value(&specs[r.spec].name);
            label.append_value(&r.label);
            product.push(r.product_id(), &r.info);
            agg.push(&r.agg);
            part.append_value(partition);
        }
        let mut fields = vec![
            ts_field("window_start"),
            ts_field("window_end"),
            Field::new("window_spec", DataType::Utf8, false),
            Field::new(kind.label_col(), DataType::Utf8, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(spec.finish()),
            Arc::new(label.finish()),
        ];
        if with_product {
            fields.extend(ProductCols::fields());
            cols.extend(product.finish());
        }
        fields.extend(AggCols::fields());
        cols.extend(agg.finish()?);
        fields.push(Field::new("source_partition", DataType::Int32, false));
        cols.push(Arc::new(part.finish()));
        out.insert(dir, batch(fields, cols)?);
    }
    Ok(out)
}

/// Top lists as rows in `top_products/metric=../window=../date=..` folders.
pub fn top_files(lists: &[TopList<'_>]) -> Result<BTreeMap<String, RecordBatch>> {
    let mut groups: BTreeMap<String, Vec<(&TopList<'_>, usize, &ClosedWindow)>> = BTreeMap::new();
    for l in lists {
        let dir = format!(
            "top_products/metric={}/window={}/date={}",
            l.metric.name(),
            l.spec.name,
            &format_micros(l.start)[..10]
        );
        let g = groups.entry(dir).or_default();
        for (i, r) in l.rows.iter().enumerate() {
            g.push((l, i + 1, r));
        }
    }
    let mut out = BTreeMap::new();
    for (dir, rows) in groups {
        let n = rows.len();
        let (mut start, mut end) = (
            TimestampMicrosecondBuilder::with_capacity(n),
            TimestampMicrosecondBuilder::with_capacity(n),
        );
        let (mut rank, mut part) = (
            Int32Builder::with_capacity(n),
            Int32Builder::with_capacity(n),
        );
        let (mut product, mut agg) = (ProductCols::with_capacity(n), AggCols::with_capacity(n));
        for (l, rk, r) in &rows {
            start.append_value(l.start);
            end.append_value(l.end);
            rank.append_value(*rk as i32);
            part.append_value(l.partition);
            product.push(r.product_id(), &r.info);
            agg.push(&r.agg);
        }
        let mut fields = vec![
            ts_field("window_start"),
            ts_field("window_end"),
            Field::new("partition_rank", DataType::Int32, false),
            Field::new("source_partition", DataType::Int32, false),
        ];
        fields.extend(ProductCols::fields());
        fields.extend(AggCols::fields());
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(rank.finish()),
            Arc::new(part.finish()),
        ];
        cols.extend(product.finish());
        cols.extend(agg.finish()?);
        let b = batch(fields, cols)?;
        out.insert(dir, b);
    }
    Ok(out)
}

/// The `sales_totals` snapshot of one source partition's products.
pub fn totals_batch(
    rows: &[(i64, Total)],
    product_info: impl Fn(i64) -> Option<Arc<ProductInfo>>,
    partition: i32,
    as_of_offset: i64,
) -> Result<RecordBatch> {
    let n = rows.len();
    let (mut product, mut agg) = (ProductCols::with_capacity(n), AggCols::with_capacity(n));
    let mut last = TimestampMicrosecondBuilder::with_capacity(n);
    let mut part = Int32Builder::with_capacity(n);
    let mut off = Int64Builder::with_capacity(n);
    for (p, t) in rows {
        product.push(*p, &product_info(*p).unwrap_or_default());
        agg.push(&t.agg);
        last.append_value(t.last_event);
        part.append_value(partition);
        off.append_value(as_of_offset);
    }
    let mut fields = ProductCols::fields();
    fields.extend(AggCols::fields());
    fields.extend([
        ts_field("last_event_time"),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("as_of_offset", DataType::Int64, false),
    ]);
    let mut cols = product.finish();
    cols.extend(agg.finish()?);
    cols.extend([
        Arc::new(last.finish()) as ArrayRef,
        Arc::new(part.finish()),
        Arc::new(off.finish()),
    ]);
    batch(fields, cols)
}
