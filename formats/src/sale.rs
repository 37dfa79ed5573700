//! One `product_sales` message as the stream reads it: the Confluent framing, the schema id,
//! the Avro body, the row checks and the event-time bound, in that order; the error text is
//! the dead-letter reason. The fuzz target `sale` drives exactly this.

use crate::avro::{self, Reader, Registry, SchemaKind};
use crate::records::ProductSale;
use crate::validate;

/// Decodes and validates one message (its time at most `latest`, microseconds); the error is
/// the dead-letter reason.
#[inline]
pub fn decode_sale(
    registry: &Registry,
    payload: &[u8],
    latest: i64,
) -> Result<ProductSale, String> {
    let (id, body) = avro::unframe(payload).map_err(|e| e.to_string())?;
    match registry.kind(id) {
        Some(SchemaKind::ProductSale) => {}
        Some(other) => return Err(format!("schema id {id} is {}, not a sale", other.file())),
        None => return Err(format!("unknown schema id {id}")),
    }
    let mut r = Reader::new(body);
    let s = ProductSale::decode(&mut r).map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    validate::sale(&s.as_row()).map_err(|e| e.to_string())?;
    validate::event_time(s.transaction_date_micros, latest).map_err(|e| e.to_string())?;
    Ok(s)
}
