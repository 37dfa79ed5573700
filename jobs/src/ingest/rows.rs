//! The source tables as ingest reads them, and how a database row becomes a record (or the
//! reason it cannot): NULLs, types and text forms here; the business rules in
//! [`crate::validate`].

use crate::io::source::{Col, CursorTable, Value};
use crate::records::{Product, ProductSale, SaleRow};
use crate::units::{parse_cents, parse_micros};
use crate::validate;

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
    fn cents(&self, i: usize) -> Result<i64, String> {
        let name = self.cols[i].name();
        let t = self.req_str(i)?;
        parse_cents(t).map_err(|e| format!("{name} {t:?} {e}"))
    }
    fn money(&self, i: usize) -> Result<i64, String> {
        let name = self.cols[i].name();
        let t = self.req_str(i)?;
        let cents = self.cents(i)?;
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

// Free functions, not `from_row` methods: the records are `formats`' types, and the rows
// (`Value`) are this crate's.

/// Decodes a `product_sales` row as read by [`SALES_TABLE`] and checks it against
/// [`validate::sale`], the rules the stream applies too.
pub fn parse_sale_row<'a>(row: &[Value<'a>]) -> Result<SaleRow<'a>, String> {
    let f = Fields {
        cols: SALES_TABLE.cols,
        row,
    };
    let quantity = f.req_int(5)?;
    let quantity_sold = i32::try_from(quantity).map_err(|_| match quantity < 0 {
        true => format!("quantity_sold is negative: {quantity}"),
        false => format!("quantity_sold {quantity} cannot be encoded: larger than Avro int"),
    })?;
    let row = SaleRow {
        transaction_id: f.req_int(0)?,
        product_id: f.req_int(1)?,
        product_name: f.req_str(2)?,
        product_category: f.req_str(3)?,
        brand: f.req_str(4)?,
        quantity_sold,
        price_per_unit_cents: f.cents(6)?,
        transaction_date_micros: f.time(7)?,
        customer_id: f.int(8)?,
        country: f.text(9)?,
        card_type: f.text(10)?,
    };
    validate::sale(&row).map_err(|e| e.to_string())?;
    Ok(row)
}

/// Validates a `product_sales` row as read by [`SALES_TABLE`] (see [`parse_sale_row`]).
pub fn parse_sale(row: &[Value]) -> Result<ProductSale, String> {
    parse_sale_row(row).map(|r| r.to_sale())
}

/// Validates a `products` row as read by [`PRODUCTS_TABLE`].
pub fn parse_product(row: &[Value]) -> Result<Product, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_micros;

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
    fn a_good_row_validates_and_bad_ones_say_why() {
        let sale = parse_sale(&sale_row()).unwrap();
        assert_eq!(sale.price_per_unit_cents, 5_000_000);
        assert_eq!(sale.customer_id, None);
        assert_eq!(sale.key(), "7");
        // A timestamp read natively (MySQL) is the same sale.
        let mut r = sale_row();
        r[7] = Value::Micros(parse_micros("2026-11-21 13:05:00.250000").unwrap());
        assert_eq!(parse_sale(&r).unwrap(), sale);
        r[2] = Value::Micros(0);
        assert_eq!(
            parse_sale(&r).unwrap_err(),
            "product_name is a timestamp, not text"
        );

        let mut r = sale_row();
        r[2] = Value::Null;
        assert_eq!(parse_sale(&r).unwrap_err(), "product_name is NULL");
        let mut r = sale_row();
        r[5] = Value::Int(-1);
        assert_eq!(parse_sale(&r).unwrap_err(), "quantity_sold is negative: -1");
        let mut r = sale_row();
        r[5] = Value::Int(i64::from(i32::MAX) + 1);
        assert!(parse_sale(&r).unwrap_err().contains("cannot be encoded"));
        let mut r = sale_row();
        r[6] = Value::Text("10.001");
        assert!(parse_sale(&r).unwrap_err().contains("price_per_unit"));
        let mut r = sale_row();
        r[3] = Value::Undecodable("invalid utf-8 sequence".into());
        assert_eq!(
            parse_sale(&r).unwrap_err(),
            "product_category cannot be decoded: invalid utf-8 sequence"
        );
        let mut r = sale_row();
        r[7] = Value::Text("yesterday");
        assert!(parse_sale(&r).unwrap_err().contains("not a timestamp"));
    }
}
