//! The records that flow through Kafka: a sale and a catalogue row, how a database row
//! becomes one (or a reason it cannot), and their Avro binary form.
//!
//! Money is carried as integer cents (`i64`) end to end, so totals are exact; timestamps as
//! microseconds since the Unix epoch, UTC.

use chrono::{DateTime, NaiveDateTime};
use serde::Serialize;

use crate::io::avro::{Reader, Writer};
use crate::io::source::{Col, CursorTable, Value};

/// Avro `decimal(12, 2)`: the largest magnitude in cents.
pub const MAX_CENTS: i64 = 999_999_999_999;

/// One sales transaction (Avro `jobs.sales.ProductSale`, seed 001's columns plus the
/// customer, country and card type that seeds 001 and 003 aggregate by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductSale {
    pub transaction_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub product_category: String,
    pub brand: String,
    pub quantity_sold: i32,
    pub price_per_unit_cents: i64,
    pub transaction_date_micros: i64,
    pub customer_id: Option<i64>,
    pub country: Option<String>,
    pub card_type: Option<String>,
}

/// One catalogue row (Avro `jobs.catalog.Product`, seed 000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category: String,
    pub brand: String,
    pub price_cents: i64,
    pub last_updated_micros: i64,
}

/// The `product_sales` table as ingest reads it. The cursor is the insert time, not the
/// transaction date, so rows back-filled with old dates after ingest passed them still come.
pub const SALES_TABLE: CursorTable = CursorTable {
    table: "product_sales",
    id_col: "transaction_id",
    ts_col: "created_at",
    cols: &[
        Col::Int("transaction_id"),
        Col::Int("product_id"),
        Col::Text("product_name"),
        Col::Text("product_category"),
        Col::Text("brand"),
        Col::Int("quantity_sold"),
        Col::Money("price_per_unit"),
        Col::Time("transaction_date"),
        Col::Int("customer_id"),
        Col::Text("country"),
        Col::Text("card_type"),
    ],
};

/// The `products` table as ingest reads it.
pub const PRODUCTS_TABLE: CursorTable = CursorTable {
    table: "products",
    id_col: "id",
    ts_col: "last_updated",
    cols: &[
        Col::Int("id"),
        Col::Text("name"),
        Col::Text("category"),
        Col::Text("brand"),
        Col::Money("price"),
        Col::Time("last_updated"),
    ],
};

/// Fields of a row, by position, with the errors a bad value gives.
struct Fields<'r, 'a> {
    cols: &'r [Col],
    row: &'r [Value<'a>],
}

impl<'a> Fields<'_, 'a> {
    fn undecodable(&self, i: usize, why: &str) -> String {
        format!("{} cannot be decoded: {why}", self.cols[i].name())
    }
    fn int(&self, i: usize) -> Result<Option<i64>, String> {
        match &self.row[i] {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(t) => Err(format!("{} is not an integer: {t:?}", self.cols[i].name())),
            Value::Micros(_) => Err(format!(
                "{} is a timestamp, not an integer",
                self.cols[i].name()
            )),
            Value::Undecodable(why) => Err(self.undecodable(i, why)),
        }
    }
    fn text(&self, i: usize) -> Result<Option<&'a str>, String> {
        match &self.row[i] {
            Value::Null => Ok(None),
            Value::Int(v) => Err(format!("{} is not text: {v}", self.cols[i].name())),
            Value::Text(t) => Ok(Some(t)),
            Value::Micros(_) => Err(format!("{} is a timestamp, not text", self.cols[i].name())),
            Value::Undecodable(why) => Err(self.undecodable(i, why)),
        }
    }
    fn req_int(&self, i: usize) -> Result<i64, String> {
        self.int(i)?
            .ok_or_else(|| format!("{} is NULL", self.cols[i].name()))
    }
    fn req_str(&self, i: usize) -> Result<&'a str, String> {
        match self.text(i)? {
            None => Err(format!("{} is NULL", self.cols[i].name())),
            Some(t) if t.trim().is_empty() => Err(format!("{} is empty", self.cols[i].name())),
            Some(t) => Ok(t),
        }
    }
    fn req_text(&self, i: usize) -> Result<String, String> {
        self.req_str(i).map(str::to_string)
    }
    fn money(&self, i: usize) -> Result<i64, String> {
        let name = self.cols[i].name();
        let t = self.req_str(i)?;
        let cents = parse_cents(t).map_err(|e| format!("{name} {t:?} {e}"))?;
        if cents < 0 {
            return Err(format!("{name} is negative: {t}"));
        }
        Ok(cents)
    }
    fn time(&self, i: usize) -> Result<i64, String> {
        let name = self.cols[i].name();
        if let Value::Micros(m) = self.row[i] {
            return Ok(m);
        }
        let t = self.req_str(i)?;
        parse_micros(t).ok_or_else(|| format!("{name} is not a timestamp: {t:?}"))
    }
}

/// A `product_sales` row validated in place: its text borrowed from the database driver's
/// buffer, so that ingest encodes a row without copying any of its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleRow<'a> {
    pub transaction_id: i64,
    pub product_id: i64,
    pub product_name: &'a str,
    pub product_category: &'a str,
    pub brand: &'a str,
    pub quantity_sold: i32,
    pub price_per_unit_cents: i64,
    pub transaction_date_micros: i64,
    pub customer_id: Option<i64>,
    pub country: Option<&'a str>,
    pub card_type: Option<&'a str>,
}

impl<'a> SaleRow<'a> {
    /// Validates a `product_sales` row as read by [`SALES_TABLE`].
    pub fn from_row(row: &[Value<'a>]) -> Result<SaleRow<'a>, String> {
        let f = Fields {
            cols: SALES_TABLE.cols,
            row,
        };
        let quantity = f.req_int(5)?;
        if quantity < 0 {
            return Err(format!("quantity_sold is negative: {quantity}"));
        }
        let quantity_sold = i32::try_from(quantity).map_err(|_| {
            format!("quantity_sold {quantity} cannot be encoded: larger than Avro int")
        })?;
        Ok(SaleRow {
            transaction_id: f.req_int(0)?,
            product_id: f.req_int(1)?,
            product_name: f.req_str(2)?,
            product_category: f.req_str(3)?,
            brand: f.req_str(4)?,
            quantity_sold,
            price_per_unit_cents: f.money(6)?,
            transaction_date_micros: f.time(7)?,
            customer_id: f.int(8)?,
            country: f.text(9)?,
            card_type: f.text(10)?,
        })
    }

    /// Appends the Avro binary encoding (schema `data/avro/product_sale.avsc`).
    pub fn encode(&self, w: &mut Writer) {
        w.long(self.transaction_id);
        w.long(self.product_id);
        w.string(self.product_name);
        w.string(self.product_category);
        w.string(self.brand);
        w.long(i64::from(self.quantity_sold));
        w.decimal(self.price_per_unit_cents);
        w.long(self.transaction_date_micros);
        w.opt_long(self.customer_id);
        w.opt_string(self.country);
        w.opt_string(self.card_type);
    }

    /// The owned record.
    pub fn to_sale(&self) -> ProductSale {
        ProductSale {
            transaction_id: self.transaction_id,
            product_id: self.product_id,
            product_name: self.product_name.to_string(),
            product_category: self.product_category.to_string(),
            brand: self.brand.to_string(),
            quantity_sold: self.quantity_sold,
            price_per_unit_cents: self.price_per_unit_cents,
            transaction_date_micros: self.transaction_date_micros,
            customer_id: self.customer_id,
            country: self.country.map(str::to_string),
            card_type: self.card_type.map(str::to_string),
        }
    }
}

impl ProductSale {
    /// Validates a `product_sales` row as read by [`SALES_TABLE`] (see [`SaleRow`]).
    pub fn from_row(row: &[Value]) -> Result<ProductSale, String> {
        SaleRow::from_row(row).map(|r| r.to_sale())
    }

    /// The record as a [`SaleRow`] borrowing its text.
    pub fn as_row(&self) -> SaleRow<'_> {
        SaleRow {
            transaction_id: self.transaction_id,
            product_id: self.product_id,
            product_name: &self.product_name,
            product_category: &self.product_category,
            brand: &self.brand,
            quantity_sold: self.quantity_sold,
            price_per_unit_cents: self.price_per_unit_cents,
            transaction_date_micros: self.transaction_date_micros,
            customer_id: self.customer_id,
            country: self.country.as_deref(),
            card_type: self.card_type.as_deref(),
        }
    }

    /// Appends the Avro binary encoding (schema `data/avro/product_sale.avsc`).
    pub fn encode(&self, w: &mut Writer) {
        self.as_row().encode(w);
    }

    /// Decodes the Avro binary encoding.
    pub fn decode(r: &mut Reader<'_>) -> crate::Result<ProductSale> {
        Ok(ProductSale {
            transaction_id: r.long()?,
            product_id: r.long()?,
            product_name: r.string()?,
            product_category: r.string()?,
            brand: r.string()?,
            quantity_sold: r.int()?,
            price_per_unit_cents: r.decimal()?,
            transaction_date_micros: r.long()?,
            customer_id: r.opt_long()?,
            country: r.opt_string()?,
            card_type: r.opt_string()?,
        })
    }

    /// The Kafka key: the product id, so one product's events stay in one partition.
    pub fn key(&self) -> String {
        self.product_id.to_string()
    }
}

impl Product {
    /// Validates a `products` row as read by [`PRODUCTS_TABLE`].
    pub fn from_row(row: &[Value]) -> Result<Product, String> {
        let f = Fields {
            cols: PRODUCTS_TABLE.cols,
            row,
        };
        Ok(Product {
            id: f.req_int(0)?,
            name: f.req_text(1)?,
            category: f.req_text(2)?,
            brand: f.req_text(3)?,
            price_cents: f.money(4)?,
            last_updated_micros: f.time(5)?,
        })
    }

    /// Appends the Avro binary encoding (schema `data/avro/product.avsc`).
    pub fn encode(&self, w: &mut Writer) {
        w.long(self.id);
        w.string(&self.name);
        w.string(&self.category);
        w.string(&self.brand);
        w.decimal(self.price_cents);
        w.long(self.last_updated_micros);
    }

    /// Decodes the Avro binary encoding.
    pub fn decode(r: &mut Reader<'_>) -> crate::Result<Product> {
        Ok(Product {
            id: r.long()?,
            name: r.string()?,
            category: r.string()?,
            brand: r.string()?,
            price_cents: r.decimal()?,
            last_updated_micros: r.long()?,
        })
    }

    /// The Kafka key: the product id.
    pub fn key(&self) -> String {
        self.id.to_string()
    }
}

/// Parses exact decimal text (`"50000"`, `"19.9"`, `"-3.50"`) into cents; more than two
/// decimal places (other than trailing zeros), exponents and values beyond
/// `decimal(12, 2)` are errors, never rounded.
pub fn parse_cents(text: &str) -> Result<i64, &'static str> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty() {
        return Err("is not a decimal number");
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a decimal number");
    }
    if frac.len() > 2 {
        return Err("cannot be encoded: more than 2 decimal places");
    }
    let int = int.trim_start_matches('0');
    if int.len() > 10 {
        return Err("cannot be encoded: more than 12 digits");
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "is not a decimal number")?
    };
    let mut cents: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| "is not a decimal number")?
    };
    if frac.len() == 1 {
        cents *= 10;
    }
    let v = whole * 100 + cents;
    if v > MAX_CENTS {
        return Err("cannot be encoded: more than 12 digits");
    }
    Ok(if neg { -v } else { v })
}

/// Formats cents as decimal text with two places: `5000000` -> `"50000.00"`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f]` (or with `T`, or RFC 3339 with an offset) as UTC
/// microseconds since the epoch.
pub fn parse_micros(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Some(m) = parse_canonical_micros(t.as_bytes()) {
        return Some(m);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_micros())
}

/// The fast path of [`parse_micros`]: exactly `YYYY-MM-DD HH:MM:SS` with an optional
/// fraction of 1 to 6 digits, as every dialect's projection renders timestamps; anything else
/// (or an impossible date) is left to chrono's general parser.
fn parse_canonical_micros(b: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let micros = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=6).contains(&frac.len()) => {
            num(frac)? * 10u32.pow(6 - frac.len() as u32)
        }
        _ => return None,
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
    let dt =
        date.and_hms_micro_opt(num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?, micros)?;
    Some(dt.and_utc().timestamp_micros())
}

/// Formats microseconds as the canonical `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) text that every
/// dialect parses.
pub fn format_micros(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        None => "1970-01-01 00:00:00.000000".into(),
    }
}

/// Formats microseconds as RFC 3339 UTC (`2026-11-21T13:00:00.123456Z`) for JSON.
pub fn rfc3339_micros(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => String::new(),
    }
}

/// Formats microseconds as RFC 3339 UTC to the second (`2026-11-21T13:00:00Z`), for keys.
pub fn rfc3339_secs(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale_row() -> Vec<Value<'static>> {
        vec![
            Value::Int(3001),
            Value::Int(7),
            Value::Text("Dell Inspiron"),
            Value::Text("Laptop"),
            Value::Text("Dell"),
            Value::Int(2),
            Value::Text("50000.00"),
            Value::Text("2026-11-21 13:05:00.250000"),
            Value::Null,
            Value::Text("India"),
            Value::Null,
        ]
    }

    #[test]
    fn money_is_exact_and_refuses_to_round() {
        assert_eq!(parse_cents("50000.00"), Ok(5_000_000));
        assert_eq!(parse_cents("19.9"), Ok(1990));
        assert_eq!(parse_cents("0.07"), Ok(7));
        assert_eq!(parse_cents("12"), Ok(1200));
        assert_eq!(parse_cents("1.500"), Ok(150));
        assert_eq!(parse_cents("-3.5"), Ok(-350));
        assert!(
            parse_cents("19.999")
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(parse_cents("1e+20").is_err());
        assert!(
            parse_cents("12345678901.00")
                .unwrap_err()
                .contains("12 digits")
        );
        assert_eq!(parse_cents("9999999999.99"), Ok(MAX_CENTS));
        assert_eq!(format_cents(5_000_000), "50000.00");
        assert_eq!(format_cents(7), "0.07");
    }

    #[test]
    fn timestamps_round_trip_through_canonical_text() {
        let m = parse_micros("2026-11-21 13:05:00.25").unwrap();
        assert_eq!(format_micros(m), "2026-11-21 13:05:00.250000");
        assert_eq!(parse_micros("2026-11-21T13:05:00.250000"), Some(m));
        assert_eq!(parse_micros("2026-11-21T13:05:00.25Z"), Some(m));
        assert_eq!(parse_micros("2026-11-21 13:05:00"), Some(m - 250_000));
        assert_eq!(rfc3339_micros(m), "2026-11-21T13:05:00.250000Z");
        assert_eq!(parse_micros("21/11/2026"), None);
        // The fast path agrees with chrono's parser, and leaves it what it does not know.
        for t in [
            "2026-11-21 13:05:00.123456",
            "2026-11-21 13:05:00.1",
            "1999-12-31 23:59:59",
            "2024-02-29 00:00:00.000001",
        ] {
            let slow = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_micros();
            assert_eq!(parse_canonical_micros(t.as_bytes()), Some(slow), "{t}");
        }
        for t in [
            "2025-02-29 00:00:00",
            "2026-11-21 24:00:00",
            "2026-11-21 13:05:00.1234567",
            "2026-11-21T13:05:00",
            "2026-1x-21 13:05:00",
        ] {
            assert_eq!(parse_canonical_micros(t.as_bytes()), None, "{t}");
        }
        assert_eq!(parse_micros("2025-02-29 00:00:00"), None);
    }

    #[test]
    fn a_good_row_validates_and_bad_ones_say_why() {
        let sale = ProductSale::from_row(&sale_row()).unwrap();
        assert_eq!(sale.price_per_unit_cents, 5_000_000);
        assert_eq!(sale.customer_id, None);
        assert_eq!(sale.key(), "7");
        // A timestamp read natively (MySQL) is the same sale.
        let mut r = sale_row();
        r[7] = Value::Micros(parse_micros("2026-11-21 13:05:00.250000").unwrap());
        assert_eq!(ProductSale::from_row(&r).unwrap(), sale);
        r[2] = Value::Micros(0);
        assert_eq!(
            ProductSale::from_row(&r).unwrap_err(),
            "product_name is a timestamp, not text"
        );

        let mut r = sale_row();
        r[2] = Value::Null;
        assert_eq!(
            ProductSale::from_row(&r).unwrap_err(),
            "product_name is NULL"
        );
        let mut r = sale_row();
        r[5] = Value::Int(-1);
        assert_eq!(
            ProductSale::from_row(&r).unwrap_err(),
            "quantity_sold is negative: -1"
        );
        let mut r = sale_row();
        r[5] = Value::Int(i64::from(i32::MAX) + 1);
        assert!(
            ProductSale::from_row(&r)
                .unwrap_err()
                .contains("cannot be encoded")
        );
        let mut r = sale_row();
        r[6] = Value::Text("10.001");
        assert!(
            ProductSale::from_row(&r)
                .unwrap_err()
                .contains("price_per_unit")
        );
        let mut r = sale_row();
        r[3] = Value::Undecodable("invalid utf-8 sequence".into());
        assert_eq!(
            ProductSale::from_row(&r).unwrap_err(),
            "product_category cannot be decoded: invalid utf-8 sequence"
        );
        let mut r = sale_row();
        r[7] = Value::Text("yesterday");
        assert!(
            ProductSale::from_row(&r)
                .unwrap_err()
                .contains("not a timestamp")
        );
    }
}
