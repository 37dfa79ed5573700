//! What the stream writes: Arrow batches for the lake tables (`sales_windows`, `sales_raw`,
//! `late_sales`) with their Hive paths, and the Kafka messages for closed windows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    Decimal128Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Datelike};
use serde_json::value::RawValue;

use super::window::{Agg, ClosedWindow, ProductInfo, WindowSpec};
use crate::config::OutputFormat;
use crate::io::avro::Writer;
use crate::records::ProductSale;
use crate::units::{format_cents, rfc3339_micros};
use crate::{Error, Result};

/// A valid sale with where it came from.
#[derive(Debug, Clone)]
pub struct SourcedSale {
    pub sale: ProductSale,
    pub partition: i32,
    pub offset: i64,
    /// For late sales: the watermark it missed.
    pub watermark: Option<i64>,
}

/// A day in microseconds.
const DAY: i64 = 86_400_000_000;

fn ts(micros: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn date(micros: i64) -> String {
    let d = ts(micros);
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

pub(crate) fn ts_field(name: &str) -> Field {
    // Naive (no time zone) microsecond timestamps holding UTC: DuckDB reads TIMESTAMP.
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, None),
        false,
    )
}

/// The `sales_windows` schema.
pub fn windows_schema() -> Arc<Schema> {
    let mut f = vec![
        ts_field("window_start"),
        ts_field("window_end"),
        Field::new("window_spec", DataType::Utf8, false),
    ];
    f.extend(ProductCols::fields());
    f.extend(AggCols::fields());
    Arc::new(Schema::new(f))
}

/// The `sales_raw` (and, with `watermark`, `late_sales`) schema.
pub fn sales_schema(late: bool) -> Arc<Schema> {
    let mut f = vec![
        Field::new("transaction_id", DataType::Int64, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("product_name", DataType::Utf8, false),
        Field::new("product_category", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("quantity_sold", DataType::Int32, false),
        Field::new("price_per_unit", DataType::Decimal128(12, 2), false),
        ts_field("transaction_date"),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("card_type", DataType::Utf8, true),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ];
    if late {
        f.push(ts_field("watermark"));
    }
    Arc::new(Schema::new(f))
}

fn batch(schema: Arc<Schema>, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, cols).map_err(|e| Error::Internal(format!("arrow batch: {e}")))
}

fn dec(b: Decimal128Builder, p: u8, s: i8) -> Result<ArrayRef> {
    let mut b = b;
    Ok(Arc::new(
        b.finish()
            .with_precision_and_scale(p, s)
            .map_err(|e| Error::Internal(e.to_string()))?,
    ))
}

/// The product columns of every product table: `product_id`, `product_name`, `brand`,
/// `product_category`.
pub(crate) struct ProductCols {
    id: Int64Builder,
    name: StringBuilder,
    brand: StringBuilder,
    category: StringBuilder,
}

impl ProductCols {
    pub(crate) fn with_capacity(n: usize) -> Self {
        ProductCols {
            id: Int64Builder::with_capacity(n),
            // Sized up front: a flush of a sparse shop holds ~250K rows per column.
            name: StringBuilder::with_capacity(n, n * 24),
            brand: StringBuilder::with_capacity(n, n * 8),
            category: StringBuilder::with_capacity(n, n * 12),
        }
    }
    pub(crate) fn push(&mut self, id: i64, p: &ProductInfo) {
        self.id.append_value(id);
        self.name.append_value(&p.name);
        self.brand.append_value(&p.brand);
        self.category.append_value(&p.category);
    }
    pub(crate) fn fields() -> Vec<Field> {
        vec![
            Field::new("product_id", DataType::Int64, false),
            Field::new("product_name", DataType::Utf8, false),
            Field::new("brand", DataType::Utf8, false),
            Field::new("product_category", DataType::Utf8, false),
        ]
    }
    pub(crate) fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.category.finish()),
        ]
    }
}

/// The aggregate columns: `total_quantity_sold`, `total_revenue` DECIMAL(18,2), `order_count`.
pub(crate) struct AggCols {
    quantity: Int64Builder,
    revenue: Decimal128Builder,
    orders: Int64Builder,
}

impl AggCols {
    pub(crate) fn with_capacity(n: usize) -> Self {
        AggCols {
            quantity: Int64Builder::with_capacity(n),
            revenue: Decimal128Builder::with_capacity(n),
            orders: Int64Builder::with_capacity(n),
        }
    }
    pub(crate) fn push(&mut self, a: &Agg) {
        self.quantity.append_value(a.quantity);
        self.revenue.append_value(i128::from(a.revenue_cents));
        self.orders.append_value(a.orders);
    }
    pub(crate) fn fields() -> Vec<Field> {
        vec![
            Field::new("total_quantity_sold", DataType::Int64, false),
            Field::new("total_revenue", DataType::Decimal128(18, 2), false),
            Field::new("order_count", DataType::Int64, false),
        ]
    }
    pub(crate) fn finish(mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            Arc::new(self.quantity.finish()),
            dec(self.revenue, 18, 2)?,
            Arc::new(self.orders.finish()),
        ])
    }
}

/// Closed windows grouped by their Hive folder, `sales_windows/window=../date=..` (the date
/// of the window's start).
pub fn window_files(
    specs: &[WindowSpec],
    rows: &[&ClosedWindow],
) -> Result<BTreeMap<String, RecordBatch>> {
    // Group by (spec, day number) first: formatting a path per row costs more than the row.
    let mut days: BTreeMap<(usize, i64), Vec<&ClosedWindow>> = BTreeMap::new();
    for r in rows {
        days.entry((r.spec, r.start.div_euclid(DAY)))
            .or_default()
            .push(r);
    }
    let groups = days.into_iter().map(|((spec, day), rows)| {
        let dir = format!(
            "sales_windows/window={}/date={}",
            specs[spec].name,
            date(day * DAY)
        );
        (dir, rows)
    });
    let mut out = BTreeMap::new();
    for (dir, rows) in groups {
        let n = rows.len();
        let (mut start, mut end) = (
            TimestampMicrosecondBuilder::with_capacity(n),
            TimestampMicrosecondBuilder::with_capacity(n),
        );
        let mut spec = StringBuilder::with_capacity(n, n * 5);
        let (mut product, mut agg) = (ProductCols::with_capacity(n), AggCols::with_capacity(n));
        for r in rows {
            start.append_value(r.start);
            end.append_value(r.end);
            spec.append_value(&specs[r.spec].name);
            product.push(r.product_id(), &r.info);
            agg.push(&r.agg);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(spec.finish()),
        ];
        cols.extend(product.finish());
        cols.extend(agg.finish()?);
        out.insert(dir, batch(windows_schema(), cols)?);
    }
    Ok(out)
}

/// Sales grouped by `<table>/date=..` folder.
pub fn sales_files(
    table: &str,
    rows: &[SourcedSale],
    late: bool,
) -> Result<BTreeMap<String, RecordBatch>> {
    // Group by day number first: formatting a path per row costs more than the row.
    let mut days: BTreeMap<i64, Vec<&SourcedSale>> = BTreeMap::new();
    for r in rows {
        days.entry(r.sale.transaction_date_micros.div_euclid(DAY))
            .or_default()
            .push(r);
    }
    let mut out = BTreeMap::new();
    for (day, rows) in days {
        let dir = format!("{table}/date={}", date(day * DAY));
        let n = rows.len();
        let (mut tid, mut pid, mut cust, mut off) = (
            Int64Builder::with_capacity(n),
            Int64Builder::with_capacity(n),
            Int64Builder::with_capacity(n),
            Int64Builder::with_capacity(n),
        );
        let (mut name, mut cat, mut brand, mut country, mut card) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut qty, mut part) = (
            Int32Builder::with_capacity(n),
            Int32Builder::with_capacity(n),
        );
        let mut price = Decimal128Builder::with_capacity(n);
        let (mut when, mut wm) = (
            TimestampMicrosecondBuilder::with_capacity(n),
            TimestampMicrosecondBuilder::with_capacity(n),
        );
        for r in rows {
            let s = &r.sale;
            tid.append_value(s.transaction_id);
            pid.append_value(s.product_id);
            name.append_value(&s.product_name);
            cat.append_value(&s.product_category);
            brand.append_value(&s.brand);
            qty.append_value(s.quantity_sold);
            price.append_value(i128::from(s.price_per_unit_cents));
            when.append_value(s.transaction_date_micros);
            cust.append_option(s.customer_id);
            country.append_option(s.country.as_deref());
            card.append_option(s.card_type.as_deref());
            part.append_value(r.partition);
            off.append_value(r.offset);
            wm.append_value(r.watermark.unwrap_or(i64::MIN));
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(tid.finish()),
            Arc::new(pid.finish()),
            Arc::new(name.finish()),
            Arc::new(cat.finish()),
            Arc::new(brand.finish()),
            Arc::new(qty.finish()),
            dec(price, 12, 2)?,
            Arc::new(when.finish()),
            Arc::new(cust.finish()),
            Arc::new(country.finish()),
            Arc::new(card.finish()),
            Arc::new(part.finish()),
            Arc::new(off.finish()),
        ];
        if late {
            cols.push(Arc::new(wm.finish()));
        }
        out.insert(dir, batch(sales_schema(late), cols)?);
    }
    Ok(out)
}

/// The idempotency key of a window message: the same window of the same product always
/// has the same key, so a consumer (or our own recovery) can drop repeats.
pub fn window_key(spec: &WindowSpec, w: &ClosedWindow) -> String {
    format!("window|{}|{}|{}", spec.name, w.start, w.product_id())
}

/// The Kafka value of a closed window.
pub fn window_value(
    format: OutputFormat,
    schema_id: u32,
    spec: &WindowSpec,
    w: &ClosedWindow,
    buf: &mut Writer,
) -> Vec<u8> {
    match format {
        OutputFormat::Avro => {
            buf.start_framed(schema_id);
            buf.string(&spec.name);
            buf.long(w.start);
            buf.long(w.end);
            buf.long(w.product_id());
            buf.string(&w.info.name);
            buf.string(&w.info.brand);
            buf.string(&w.info.category);
            buf.long(w.agg.quantity);
            buf.decimal(w.agg.revenue_cents);
            buf.long(w.agg.orders);
            buf.buf.clone()
        }
        OutputFormat::Json => {
            #[derive(serde::Serialize)]
            struct J<'a> {
                window: &'a str,
                window_start: String,
                window_end: String,
                product_id: i64,
                product_name: &'a str,
                brand: &'a str,
                product_category: &'a str,
                total_quantity_sold: i64,
                total_revenue: &'a RawValue,
                order_count: i64,
            }
            let rev =
                RawValue::from_string(format_cents(w.agg.revenue_cents)).unwrap_or_else(|_| {
                    // format_cents always yields a valid JSON number.
                    RawValue::from_string("0".into()).expect("0 is JSON")
                });
            serde_json::to_vec(&J {
                window: &spec.name,
                window_start: rfc3339_micros(w.start),
                window_end: rfc3339_micros(w.end),
                product_id: w.product_id(),
                product_name: &w.info.name,
                brand: &w.info.brand,
                product_category: &w.info.category,
                total_quantity_sold: w.agg.quantity,
                total_revenue: &rev,
                order_count: w.agg.orders,
            })
            .unwrap_or_default()
        }
    }
}
