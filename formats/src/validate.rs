//! The one validation of a sale, used where a sale enters (ingest, from its database row) and
//! where it is consumed (the stream, from Kafka, which any producer may write): one list of
//! reasons, so a row ingest accepts is never dead-lettered later, far from its source.

use std::fmt;

use crate::records::SaleRow;
use crate::units::{MAX_CENTS, format_cents, rfc3339_micros};

/// The widths of the SQL output tables and of the source schema (`data/sql/`): a longer value
/// would fail every flush of the stream, so it is refused where it enters.
pub const TEXT_WIDTHS: [(&str, usize); 5] = [
    ("product_name", 255),
    ("product_category", 64),
    ("brand", 64),
    ("country", 64),
    ("card_type", 64),
];

/// Why a sale is refused; its text is the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// A required text is empty (or only blanks).
    Empty(&'static str),
    /// `quantity_sold` below zero.
    NegativeQuantity(i32),
    /// `price_per_unit` below zero.
    NegativePrice(i64),
    /// `price_per_unit` beyond `decimal(12, 2)`.
    PriceTooLarge(i64),
    /// `quantity_sold * price_per_unit` does not fit in 64-bit cents.
    RevenueOverflows,
    /// A text longer than its column.
    TooLong { field: &'static str, max: usize },
    /// `transaction_date` before 1970.
    BeforeEpoch(i64),
    /// `transaction_date` further ahead of the consumer's clock than `stream.max_future`.
    InTheFuture(i64),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Empty(field) => write!(f, "{field} is empty"),
            Invalid::NegativeQuantity(q) => write!(f, "quantity_sold is negative: {q}"),
            Invalid::NegativePrice(c) => {
                write!(f, "price_per_unit is negative: {}", format_cents(*c))
            }
            Invalid::PriceTooLarge(c) => {
                write!(
                    f,
                    "price_per_unit {} exceeds decimal(12,2)",
                    format_cents(*c)
                )
            }
            Invalid::RevenueOverflows => write!(f, "quantity_sold * price_per_unit overflows"),
            Invalid::TooLong { field, max } => {
                write!(f, "{field} is longer than {max} characters")
            }
            Invalid::BeforeEpoch(t) => {
                write!(f, "transaction_date {} is before 1970", rfc3339_micros(*t))
            }
            Invalid::InTheFuture(t) => write!(
                f,
                "transaction_date {} is ahead of the clock by more than stream.max_future",
                rfc3339_micros(*t)
            ),
        }
    }
}

impl std::error::Error for Invalid {}

/// Checks a sale against the rules every stage shares.
#[inline]
pub fn sale(s: &SaleRow<'_>) -> Result<(), Invalid> {
    if s.quantity_sold < 0 {
        return Err(Invalid::NegativeQuantity(s.quantity_sold));
    }
    for (field, value) in [
        ("product_name", s.product_name),
        ("product_category", s.product_category),
        ("brand", s.brand),
    ] {
        if value.trim().is_empty() {
            return Err(Invalid::Empty(field));
        }
    }
    let texts = [
        Some(s.product_name),
        Some(s.product_category),
        Some(s.brand),
        s.country,
        s.card_type,
    ];
    for ((field, max), value) in TEXT_WIDTHS.into_iter().zip(texts) {
        // Bytes bound characters from above: count characters only for long values.
        if let Some(v) = value
            && v.len() > max
            && v.chars().count() > max
        {
            return Err(Invalid::TooLong { field, max });
        }
    }
    if s.price_per_unit_cents > MAX_CENTS {
        return Err(Invalid::PriceTooLarge(s.price_per_unit_cents));
    }
    if i64::from(s.quantity_sold)
        .checked_mul(s.price_per_unit_cents)
        .is_none()
    {
        return Err(Invalid::RevenueOverflows);
    }
    if s.price_per_unit_cents < 0 {
        return Err(Invalid::NegativePrice(s.price_per_unit_cents));
    }
    Ok(())
}

/// Checks a sale's time where it is consumed: not before 1970, and not after `latest` (the
/// consumer's clock plus `stream.max_future`).
#[inline]
pub fn event_time(micros: i64, latest: i64) -> Result<(), Invalid> {
    if micros < 0 {
        return Err(Invalid::BeforeEpoch(micros));
    }
    if micros > latest {
        return Err(Invalid::InTheFuture(micros));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> SaleRow<'static> {
        SaleRow {
            transaction_id: 1,
            product_id: 7,
            product_name: "Dell Inspiron",
            product_category: "Laptop",
            brand: "Dell",
            quantity_sold: 2,
            price_per_unit_cents: 5_000_000,
            transaction_date_micros: 0,
            customer_id: None,
            country: Some("India"),
            card_type: None,
        }
    }

    #[test]
    fn a_good_sale_passes_and_each_rule_says_why() {
        assert_eq!(sale(&good()), Ok(()));
        let cases: Vec<(SaleRow<'static>, &str)> = vec![
            (
                SaleRow {
                    quantity_sold: -3,
                    ..good()
                },
                "quantity_sold is negative: -3",
            ),
            (
                SaleRow {
                    brand: "  ",
                    ..good()
                },
                "brand is empty",
            ),
            (
                SaleRow {
                    price_per_unit_cents: -350,
                    ..good()
                },
                "price_per_unit is negative: -3.50",
            ),
            (
                SaleRow {
                    price_per_unit_cents: MAX_CENTS + 1,
                    ..good()
                },
                "price_per_unit 10000000000.00 exceeds decimal(12,2)",
            ),
            (
                SaleRow {
                    quantity_sold: i32::MAX,
                    price_per_unit_cents: MAX_CENTS,
                    ..good()
                },
                "quantity_sold * price_per_unit overflows",
            ),
        ];
        for (row, why) in cases {
            assert_eq!(sale(&row).unwrap_err().to_string(), why);
        }
        let long = "x".repeat(65);
        let row = SaleRow {
            country: Some(&long),
            ..good()
        };
        assert_eq!(
            sale(&row).unwrap_err().to_string(),
            "country is longer than 64 characters"
        );
        // Characters, not bytes: 64 emoji fit a 64-character column.
        let emoji = "🛒".repeat(64);
        let row = SaleRow {
            card_type: Some(&emoji),
            ..good()
        };
        assert_eq!(sale(&row), Ok(()));
    }
}
