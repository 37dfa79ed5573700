//! Avro binary encoding for our record types, the Confluent wire format around it
//! (magic byte 0, 4-byte big-endian schema id, Avro binary), and the schema ids of the
//! committed local registry (the HTTP registry is read by `jobs::io::registry`).
//!
//! The encoders are written by hand for speed (no per-record `Value` tree); unit tests check
//! them byte for byte against `apache-avro` with the schemas in `data/avro/`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::{Error, Result};

/// The first byte of every Confluent-framed message.
pub const MAGIC: u8 = 0;

/// The record types `jobs` writes, each with its schema in `data/avro/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// `product_sale.avsc`
    ProductSale,
    /// `product.avsc`
    Product,
    /// `product_sales_window.avsc`
    WindowedSales,
    /// `product_totals.avsc`
    ProductTotals,
    /// `top_products.avsc`
    TopProducts,
    /// `low_stock_alert.avsc`
    LowStockAlert,
    /// `segment_sales.avsc`
    SegmentSales,
    /// `sales_prediction.avsc`
    SalesPrediction,
    /// `product_recommendations.avsc`
    Recommendations,
}

impl SchemaKind {
    /// Every kind.
    pub const ALL: [SchemaKind; 9] = [
        SchemaKind::ProductSale,
        SchemaKind::Product,
        SchemaKind::WindowedSales,
        SchemaKind::ProductTotals,
        SchemaKind::TopProducts,
        SchemaKind::LowStockAlert,
        SchemaKind::SegmentSales,
        SchemaKind::SalesPrediction,
        SchemaKind::Recommendations,
    ];

    /// The schema's file name under `data/avro/`.
    pub fn file(self) -> &'static str {
        match self {
            SchemaKind::ProductSale => "product_sale.avsc",
            SchemaKind::Product => "product.avsc",
            SchemaKind::WindowedSales => "product_sales_window.avsc",
            SchemaKind::ProductTotals => "product_totals.avsc",
            SchemaKind::TopProducts => "top_products.avsc",
            SchemaKind::LowStockAlert => "low_stock_alert.avsc",
            SchemaKind::SegmentSales => "segment_sales.avsc",
            SchemaKind::SalesPrediction => "sales_prediction.avsc",
            SchemaKind::Recommendations => "product_recommendations.avsc",
        }
    }

    /// The schema text (compiled in from `data/avro/`).
    pub fn schema_text(self) -> &'static str {
        match self {
            SchemaKind::ProductSale => include_str!("../../data/avro/product_sale.avsc"),
            SchemaKind::Product => include_str!("../../data/avro/product.avsc"),
            SchemaKind::WindowedSales => {
                include_str!("../../data/avro/product_sales_window.avsc")
            }
            SchemaKind::ProductTotals => include_str!("../../data/avro/product_totals.avsc"),
            SchemaKind::TopProducts => include_str!("../../data/avro/top_products.avsc"),
            SchemaKind::LowStockAlert => include_str!("../../data/avro/low_stock_alert.avsc"),
            SchemaKind::SegmentSales => include_str!("../../data/avro/segment_sales.avsc"),
            SchemaKind::SalesPrediction => {
                include_str!("../../data/avro/sales_prediction.avsc")
            }
            SchemaKind::Recommendations => {
                include_str!("../../data/avro/product_recommendations.avsc")
            }
        }
    }

    /// The parsed schema (apache-avro is a test-only dependency: the tests check that every
    /// committed schema parses and that our encoder agrees with it).
    #[cfg(test)]
    pub fn schema(self) -> Result<apache_avro::Schema> {
        apache_avro::Schema::parse_str(self.schema_text())
            .map_err(|e| Error::Avro(format!("{}: {e}", self.file())))
    }
}

/// Schema ids in both directions.
#[derive(Debug, Clone)]
pub struct Registry {
    ids: HashMap<SchemaKind, u32>,
    kinds: HashMap<u32, SchemaKind>,
    /// Where the ids came from, for messages.
    pub source: String,
}

#[derive(Deserialize)]
struct LocalFile {
    schemas: Vec<LocalEntry>,
}

#[derive(Deserialize)]
struct LocalEntry {
    id: u32,
    #[allow(dead_code)]
    subject: String,
    file: String,
}

impl Registry {
    /// The committed local registry, `data/avro/registry.json` (compiled in).
    pub fn local() -> Result<Registry> {
        let file: LocalFile =
            serde_json::from_str(include_str!("../../data/avro/registry.json"))
                .map_err(|e| Error::Registry(format!("data/avro/registry.json: {e}")))?;
        let mut reg = Registry::empty("local registry data/avro/registry.json");
        for e in file.schemas {
            // An older version of a kind's schema (`<name>.v<N>.avsc`) is there for outside
            // readers of old messages; we write the current one only.
            if SchemaKind::ALL
                .iter()
                .any(|k| is_older_version(&e.file, k.file()))
            {
                continue;
            }
            let kind = SchemaKind::ALL
                .into_iter()
                .find(|k| k.file() == e.file)
                .ok_or_else(|| {
                    Error::Registry(format!(
                        "data/avro/registry.json: unknown schema file {}",
                        e.file
                    ))
                })?;
            // The newest entry for a file is the one written; older ids still decode.
            reg.insert(kind, e.id);
        }
        Ok(reg)
    }

    /// A registry with no ids yet, for ids from elsewhere (the HTTP registry of `jobs`);
    /// `source` says where they come from, for messages.
    pub fn empty(source: impl Into<String>) -> Registry {
        Registry {
            ids: HashMap::new(),
            kinds: HashMap::new(),
            source: source.into(),
        }
    }

    /// Records that `kind` is written with `id` (and that `id` decodes as `kind`).
    pub fn insert(&mut self, kind: SchemaKind, id: u32) {
        self.ids.insert(kind, id);
        self.kinds.insert(id, kind);
    }

    /// The id written for `kind`.
    pub fn id(&self, kind: SchemaKind) -> Result<u32> {
        self.ids.get(&kind).copied().ok_or_else(|| {
            Error::Registry(format!("{} has no id for {}", self.source, kind.file()))
        })
    }

    /// The kind a schema id stands for, if known.
    pub fn kind(&self, id: u32) -> Option<SchemaKind> {
        self.kinds.get(&id).copied()
    }
}

/// Whether `file` is `<stem>.v<digits>.avsc` for the current schema `<stem>.avsc`.
fn is_older_version(file: &str, current: &str) -> bool {
    let stem = current.trim_end_matches(".avsc");
    file.strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix(".v"))
        .and_then(|rest| rest.strip_suffix(".avsc"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits a Confluent-framed message into its schema id and Avro body.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8])> {
    if bytes.len() < 5 {
        return Err(Error::Avro(format!(
            "message of {} bytes is shorter than the 5-byte Confluent header",
            bytes.len()
        )));
    }
    if bytes[0] != MAGIC {
        return Err(Error::Avro(format!(
            "magic byte is {:#04x}, not 0: not in the Confluent wire format",
            bytes[0]
        )));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[5..]))
}

/// Builds Avro binary into a reusable buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// Clears the buffer and writes the Confluent header for `schema_id`.
    pub fn start_framed(&mut self, schema_id: u32) {
        self.buf.clear();
        self.buf.push(MAGIC);
        self.buf.extend_from_slice(&schema_id.to_be_bytes());
    }

    /// `long` and `int`: zig-zag varint.
    pub fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }

    /// `string` and `bytes`: length, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.long(b.len() as i64);
        self.buf.extend_from_slice(b);
    }

    /// `string`.
    pub fn string(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// `bytes` with logical type `decimal`: the unscaled value as minimal big-endian two's
    /// complement.
    pub fn decimal(&mut self, unscaled: i64) {
        let be = unscaled.to_be_bytes();
        let mut start = 0;
        while start < 7 {
            let (b, next) = (be[start], be[start + 1]);
            let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            start += 1;
        }
        self.bytes(&be[start..]);
    }

    /// `double` (8 bytes, little-endian).
    pub fn double(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// `int` (zig-zag varint, as `long`).
    pub fn int32(&mut self, v: i32) {
        self.long(i64::from(v));
    }

    /// One block of an `array` (count, then the caller writes the items) or its end (0).
    pub fn array_block(&mut self, count: usize) {
        self.long(count as i64);
    }

    /// `["null", "long"]`.
    pub fn opt_long(&mut self, v: Option<i64>) {
        match v {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                self.long(v);
            }
        }
    }

    /// `["null", "string"]`.
    pub fn opt_string(&mut self, v: Option<&str>) {
        match v {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                self.string(v);
            }
        }
    }
}

/// Reads Avro binary; every read checks bounds, so truncated input is an error, not a panic.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte was consumed.
    pub fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.is_at_end() {
            Ok(())
        } else {
            Err(Error::Avro(format!(
                "{} bytes left over after the record",
                self.buf.len() - self.pos
            )))
        }
    }

    fn truncated(&self) -> Error {
        Error::Avro(format!("record truncated at byte {}", self.pos))
    }

    /// `long`.
    pub fn long(&mut self) -> Result<i64> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            if shift > 63 {
                return Err(Error::Avro("varint longer than 10 bytes".into()));
            }
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    /// `int`.
    pub fn int(&mut self) -> Result<i32> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| Error::Avro(format!("int out of range: {v}")))
    }

    /// `bytes`.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.long()?;
        let len =
            usize::try_from(len).map_err(|_| Error::Avro(format!("negative length {len}")))?;
        let end = self.pos.checked_add(len).ok_or_else(|| self.truncated())?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(out)
    }

    /// `string`.
    pub fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Avro("string is not UTF-8".into()))
    }

    /// `decimal` as its unscaled value.
    pub fn decimal(&mut self) -> Result<i64> {
        let b = self.bytes()?;
        if b.is_empty() || b.len() > 8 {
            return Err(Error::Avro(format!("decimal of {} bytes", b.len())));
        }
        let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
        let mut be = [fill; 8];
        be[8 - b.len()..].copy_from_slice(b);
        Ok(i64::from_be_bytes(be))
    }

    fn branch(&mut self) -> Result<bool> {
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(Error::Avro(format!("union branch {n} out of range"))),
        }
    }

    /// `["null", "long"]`.
    pub fn opt_long(&mut self) -> Result<Option<i64>> {
        if self.branch()? {
            self.long().map(Some)
        } else {
            Ok(None)
        }
    }

    /// `["null", "string"]`.
    pub fn opt_string(&mut self) -> Result<Option<String>> {
        if self.branch()? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Product, ProductSale};
    use apache_avro::types::Value as AV;

    fn sale(customer: Option<i64>, price: i64) -> ProductSale {
        ProductSale {
            transaction_id: 3002,
            product_id: 12,
            product_name: "Apple iPhone 12".into(),
            product_category: "Smartphone".into(),
            brand: "Apple".into(),
            quantity_sold: 3,
            price_per_unit_cents: price,
            transaction_date_micros: 1_763_730_000_123_456,
            customer_id: customer,
            country: customer.map(|_| "India".into()),
            card_type: None,
        }
    }

    fn decoded_by_apache_avro(kind: SchemaKind, body: &[u8]) -> AV {
        let schema = kind.schema().unwrap();
        let mut r = body;
        let v = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut r)
            .unwrap();
        assert!(r.is_empty(), "apache-avro left bytes over");
        v
    }

    fn encode_with_apache_avro(schema: &apache_avro::Schema, v: AV) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(v)
            .unwrap()
    }

    fn field<'v>(v: &'v AV, name: &str) -> &'v AV {
        match v {
            AV::Record(fields) => &fields.iter().find(|(n, _)| n == name).unwrap().1,
            _ => panic!("not a record"),
        }
    }

    #[test]
    fn older_schema_versions_stay_for_readers_and_are_not_written() {
        assert!(is_older_version(
            "sales_prediction.v1.avsc",
            "sales_prediction.avsc"
        ));
        assert!(!is_older_version(
            "sales_prediction.avsc",
            "sales_prediction.avsc"
        ));
        assert!(!is_older_version(
            "sales_prediction.vx.avsc",
            "sales_prediction.avsc"
        ));
        let reg = Registry::local().unwrap();
        // Id 8 is the forecast's schema before the interval fields; 10 is written now.
        assert_eq!(reg.id(SchemaKind::SalesPrediction).unwrap(), 10);
        assert_eq!(reg.kind(8), None);
        let old: serde_json::Value =
            serde_json::from_str(include_str!("../../data/avro/sales_prediction.v1.avsc")).unwrap();
        assert_eq!(old["fields"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn every_committed_schema_parses_and_is_in_the_local_registry() {
        let reg = Registry::local().unwrap();
        for kind in SchemaKind::ALL {
            kind.schema().unwrap();
            assert_eq!(
                reg.kind(reg.id(kind).unwrap()),
                Some(kind),
                "{}",
                kind.file()
            );
        }
    }

    #[test]
    fn sale_encoding_matches_apache_avro_both_ways() {
        for (customer, price) in [
            (Some(42), 8_000_000),
            (None, 1),
            (Some(-5), 0),
            (None, 999_999_999_999),
        ] {
            let s = sale(customer, price);
            let mut w = Writer::default();
            s.encode(&mut w);
            let v = decoded_by_apache_avro(SchemaKind::ProductSale, &w.buf);
            assert_eq!(field(&v, "transaction_id"), &AV::Long(3002));
            assert_eq!(field(&v, "quantity_sold"), &AV::Int(3));
            assert_eq!(
                field(&v, "transaction_date"),
                &AV::TimestampMicros(1_763_730_000_123_456)
            );
            match field(&v, "price_per_unit") {
                AV::Decimal(d) => {
                    let bytes: Vec<u8> = d.try_into().unwrap();
                    let mut r = Writer::default();
                    r.decimal(price);
                    assert_eq!(&r.buf[1..], &bytes[..], "decimal bytes for {price}");
                }
                other => panic!("price decoded as {other:?}"),
            }
            match (customer, field(&v, "customer_id")) {
                (None, AV::Union(0, n)) => assert_eq!(**n, AV::Null),
                (Some(c), AV::Union(1, n)) => assert_eq!(**n, AV::Long(c)),
                (c, other) => panic!("{c:?} decoded as {other:?}"),
            }
            // And apache-avro's own encoding of that value is byte-identical to ours.
            let schema = SchemaKind::ProductSale.schema().unwrap();
            assert_eq!(encode_with_apache_avro(&schema, v), w.buf);
            // Our decoder reads it back.
            let mut r = Reader::new(&w.buf);
            assert_eq!(ProductSale::decode(&mut r).unwrap(), s);
            r.finish().unwrap();
        }
    }

    #[test]
    fn product_encoding_matches_apache_avro() {
        let p = Product {
            id: 1,
            name: "Dell Inspiron 15".into(),
            category: "Laptop".into(),
            brand: "Dell".into(),
            price_cents: 5_499_900,
            last_updated_micros: 1_700_000_000_000_000,
        };
        let mut w = Writer::default();
        p.encode(&mut w);
        let v = decoded_by_apache_avro(SchemaKind::Product, &w.buf);
        let schema = SchemaKind::Product.schema().unwrap();
        assert_eq!(encode_with_apache_avro(&schema, v), w.buf);
        let mut r = Reader::new(&w.buf);
        assert_eq!(Product::decode(&mut r).unwrap(), p);
    }

    #[test]
    fn decimals_use_minimal_twos_complement() {
        for (v, expect) in [
            (0i64, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x00, 0x80]),
            (-1, vec![0xff]),
            (-128, vec![0x80]),
            (-129, vec![0xff, 0x7f]),
        ] {
            let mut w = Writer::default();
            w.decimal(v);
            assert_eq!(&w.buf[1..], &expect[..], "{v}");
            assert_eq!(Reader::new(&w.buf).decimal().unwrap(), v);
        }
    }

    #[test]
    fn framing_and_truncation_are_errors_not_panics() {
        let reg = Registry::local().unwrap();
        let id = reg.id(SchemaKind::ProductSale).unwrap();
        assert_eq!(reg.kind(id), Some(SchemaKind::ProductSale));
        let mut w = Writer::default();
        w.start_framed(id);
        sale(Some(1), 100).encode(&mut w);
        let (got, body) = unframe(&w.buf).unwrap();
        assert_eq!(got, id);
        for cut in 0..body.len() {
            assert!(
                ProductSale::decode(&mut Reader::new(&body[..cut])).is_err(),
                "cut {cut}"
            );
        }
        assert!(unframe(b"{\"json\": 1}").is_err());
        assert!(unframe(&[0, 0, 0]).is_err());
    }
}
