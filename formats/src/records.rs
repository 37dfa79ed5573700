//! The records that flow through Kafka, a sale and a catalogue row, and their Avro binary
//! form. How a database row becomes one is in `jobs::ingest::rows`; the rules a sale must meet in
//! [`crate::validate`].
//!
//! Money is carried as integer cents (`i64`) end to end, so totals are exact; timestamps as
//! microseconds since the Unix epoch, UTC (see [`crate::units`]).

use serde::Serialize;

use crate::avro::{Reader, Writer};

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

/// A `product_sales` row read in place: its text borrowed from the database driver's
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

impl SaleRow<'_> {
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
