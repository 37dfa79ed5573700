//! The low-stock panel, pure: the alerts and recoveries that `jobs stream` published on
//! `low_stock_alerts`, decoded (Avro in the Confluent framing or JSON, as the stream wrote
//! them) and kept as a log: the open alerts (the product's newest message is `low`) and the
//! recoveries.
//!
//! A message is named by its idempotency key (product, stock record, kind), so a resend after
//! a crash counts once.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::config::OutputFormat;
use crate::io::avro::Reader;
use crate::units::{parse_micros, rfc3339_micros};
use crate::{Error, Result};

/// One message of `low_stock_alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMsg {
    /// `true`: fell below the threshold; `false`: recovered.
    pub low: bool,
    pub product_id: i64,
    pub product_name: String,
    pub brand: String,
    pub stock_level: i64,
    /// When the stock level was recorded, micros.
    pub recorded_at: i64,
    pub units_sold_since: i64,
    pub updated_stock: i64,
    pub threshold: i64,
    /// Event time of the sale that crossed the threshold (or the stock record's), micros.
    pub at: i64,
}

/// Decodes one message value as the stream encodes it (`stream.output_format`).
pub fn decode(format: OutputFormat, value: &[u8]) -> Result<AlertMsg> {
    match format {
        OutputFormat::Avro => {
            let body = match value {
                [0, _, _, _, _, rest @ ..] => rest,
                _ => return Err(Error::Avro("not in the Confluent framing".into())),
            };
            let mut r = Reader::new(body);
            let low = match r.string()?.as_str() {
                "low" => true,
                "recovered" => false,
                other => return Err(Error::Avro(format!("alert kind {other:?}"))),
            };
            let m = AlertMsg {
                low,
                product_id: r.long()?,
                product_name: r.string()?,
                brand: r.string()?,
                stock_level: r.long()?,
                recorded_at: r.long()?,
                units_sold_since: r.long()?,
                updated_stock: r.long()?,
                threshold: r.long()?,
                at: r.long()?,
            };
            r.finish()?;
            Ok(m)
        }
        OutputFormat::Json => {
            #[derive(serde::Deserialize)]
            struct J {
                kind: String,
                product_id: i64,
                product_name: String,
                brand: String,
                stock_level: i64,
                stock_recorded_at: String,
                units_sold_since: i64,
                updated_stock: i64,
                threshold: i64,
                event_time: String,
            }
            let j: J = serde_json::from_slice(value)
                .map_err(|e| Error::Avro(format!("alert JSON: {e}")))?;
            let time =
                |t: &str| parse_micros(t).ok_or_else(|| Error::Avro(format!("alert time {t:?}")));
            Ok(AlertMsg {
                low: match j.kind.as_str() {
                    "low" => true,
                    "recovered" => false,
                    other => return Err(Error::Avro(format!("alert kind {other:?}"))),
                },
                product_id: j.product_id,
                product_name: j.product_name,
                brand: j.brand,
                stock_level: j.stock_level,
                recorded_at: time(&j.stock_recorded_at)?,
                units_sold_since: j.units_sold_since,
                updated_stock: j.updated_stock,
                threshold: j.threshold,
                at: time(&j.event_time)?,
            })
        }
    }
}

/// Every alert read so far, and where the reading stands.
#[derive(Debug, Default)]
pub struct AlertLog {
    seen: HashSet<(i64, i64, bool)>,
    /// Each product's newest message (a product's messages share one partition: its order
    /// is the topic's).
    latest: HashMap<i64, AlertMsg>,
    recoveries: Vec<AlertMsg>,
    /// The next offset to read per partition.
    pub next: BTreeMap<i32, i64>,
    /// Messages that did not decode (counted, shown, never fatal).
    pub undecodable: u64,
    /// Whether the last read reached the broker.
    pub reachable: bool,
    /// Whether the topic was read to its end at least once.
    pub loaded: bool,
}

/// One row of the low-stock panel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertRow {
    pub product_id: i64,
    pub name: String,
    pub brand: String,
    pub updated_stock: i64,
    pub threshold: i64,
    pub stock_level: i64,
    pub units_sold_since: i64,
    /// RFC 3339: the sale that crossed the threshold, or the restock.
    pub at: String,
}

/// The low-stock panel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertsPanel {
    /// Alerts still open (whatever the range: they are open now), the newest first.
    pub open: Vec<AlertRow>,
    /// Recoveries within the range, the newest first.
    pub recoveries: Vec<AlertRow>,
    pub undecodable: u64,
    pub reachable: bool,
    pub loaded: bool,
}

impl AlertLog {
    /// Takes one message; `false` when it was seen before.
    pub fn apply(&mut self, m: AlertMsg) -> bool {
        if !self.seen.insert((m.product_id, m.recorded_at, m.low)) {
            return false;
        }
        if !m.low {
            self.recoveries.push(m.clone());
        }
        self.latest.insert(m.product_id, m);
        true
    }

    /// The panel: open alerts and the recoveries in `[from, to)` of the products `keep`
    /// lets through.
    pub fn panel(&self, (from, to): (i64, i64), keep: impl Fn(i64) -> bool) -> AlertsPanel {
        let row = |m: &AlertMsg| AlertRow {
            product_id: m.product_id,
            name: m.product_name.clone(),
            brand: m.brand.clone(),
            updated_stock: m.updated_stock,
            threshold: m.threshold,
            stock_level: m.stock_level,
            units_sold_since: m.units_sold_since,
            at: rfc3339_micros(m.at),
        };
        let mut open: Vec<&AlertMsg> = self
            .latest
            .values()
            .filter(|m| m.low && keep(m.product_id))
            .collect();
        open.sort_by_key(|m| (std::cmp::Reverse(m.at), m.product_id));
        let mut rec: Vec<&AlertMsg> = self
            .recoveries
            .iter()
            .filter(|m| m.at >= from && m.at < to && keep(m.product_id))
            .collect();
        rec.sort_by_key(|m| (std::cmp::Reverse(m.at), m.product_id));
        AlertsPanel {
            open: open.into_iter().map(row).collect(),
            recoveries: rec.into_iter().map(row).collect(),
            undecodable: self.undecodable,
            reachable: self.reachable,
            loaded: self.loaded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::avro::Writer;
    use crate::stream::stock::Alert;
    use crate::stream::window::ProductInfo;

    fn alert(product: i64, low: bool, recorded_at: i64, at: i64) -> Alert {
        Alert {
            product_id: product,
            low,
            stock_level: 20,
            recorded_at,
            sold_since: 12,
            updated_stock: 8,
            threshold: 10,
            at,
        }
    }

    #[test]
    fn decodes_what_the_stream_encodes_in_both_formats() {
        let info = ProductInfo {
            name: "<b>x</b> 🎧".into(),
            brand: "B".into(),
            category: "C".into(),
        };
        let a = alert(7, true, 1_000_000, 2_000_001);
        let mut w = Writer::default();
        for format in [OutputFormat::Avro, OutputFormat::Json] {
            let v = crate::stream::business::alert_value(format, 9, &a, &info, &mut w);
            let m = decode(format, &v).unwrap();
            assert_eq!(
                (m.low, m.product_id, m.updated_stock, m.threshold, m.at),
                (true, 7, 8, 10, 2_000_001)
            );
            assert_eq!(m.product_name, info.name);
            assert_eq!(m.recorded_at, 1_000_000);
            assert!(decode(format, &v[..v.len() - 1]).is_err(), "truncated");
        }
        assert!(decode(OutputFormat::Avro, b"garbage").is_err());
    }

    fn msg(product: i64, low: bool, recorded_at: i64, at: i64) -> AlertMsg {
        AlertMsg {
            low,
            product_id: product,
            product_name: format!("p{product}"),
            brand: "B".into(),
            stock_level: 20,
            recorded_at,
            units_sold_since: 12,
            updated_stock: 8,
            threshold: 10,
            at,
        }
    }

    #[test]
    fn open_alerts_are_the_newest_low_messages_and_resends_count_once() {
        let mut log = AlertLog::default();
        assert!(log.apply(msg(1, true, 0, 10)));
        assert!(log.apply(msg(2, true, 0, 30)));
        assert!(log.apply(msg(3, true, 0, 20)));
        assert!(!log.apply(msg(3, true, 0, 20)), "a resend");
        // Product 2 restocked: recovered, then low again on the new record.
        assert!(log.apply(msg(2, false, 40, 40)));
        assert!(log.apply(msg(1, false, 50, 50)));
        assert!(log.apply(msg(1, true, 50, 60)));
        let p = log.panel((0, 100), |_| true);
        let open: Vec<i64> = p.open.iter().map(|r| r.product_id).collect();
        assert_eq!(open, vec![1, 3], "newest first; 2 recovered");
        let rec: Vec<i64> = p.recoveries.iter().map(|r| r.product_id).collect();
        assert_eq!(rec, vec![1, 2]);
        assert_eq!(log.panel((45, 100), |_| true).recoveries.len(), 1);
        assert_eq!(log.panel((0, 100), |p| p != 3).open.len(), 1);
    }
}
