//! Column values -> JSON, with Debezium's mapping (`time.precision.mode =
//! adaptive_time_microseconds`, `decimal.handling.mode = string`, `binary.handling.mode =
//! base64`), for rows of the binlog and of the snapshot alike.
//!
//! | SQL type | JSON |
//! |---|---|
//! | TINYINT..BIGINT [UNSIGNED], YEAR | number |
//! | FLOAT, DOUBLE | number |
//! | DECIMAL(p,s) | string, exact (`"12.30"`) |
//! | DATE | number: days since 1970-01-01 (`io.debezium.time.Date`) |
//! | DATETIME(0..3) | number: milliseconds since the epoch (`io.debezium.time.Timestamp`) |
//! | DATETIME(4..6) | number: microseconds since the epoch (`io.debezium.time.MicroTimestamp`) |
//! | TIMESTAMP(n) | string: ISO 8601 in UTC (`io.debezium.time.ZonedTimestamp`) |
//! | TIME(n) | number: microseconds (`io.debezium.time.MicroTime`) |
//! | CHAR, VARCHAR, TEXT, ENUM, SET, JSON | string (UTF-8; SET as `a,b`) |
//! | BINARY, VARBINARY, BLOB, BIT(n>1) | string: base64 |
//! | BIT(1) | boolean |
//!
//! Anything else (spatial types, for one) is not mapped: the event is dead-lettered.

use base64::Engine;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use mysql_async::Value;
use serde_json::Value as Json;

/// How one column's values map to JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    Int {
        unsigned: bool,
    },
    Float,
    Decimal,
    Date,
    /// DATETIME with its fractional digits.
    DateTime {
        decimals: u8,
    },
    Timestamp {
        decimals: u8,
    },
    Time,
    Year,
    Text,
    Binary,
    Bit {
        bits: u32,
    },
    /// ENUM with its labels (the binlog carries the 1-based index).
    Enum(Vec<String>),
    /// SET with its labels (the binlog carries a bit mask).
    Set(Vec<String>),
    Json,
    /// A type we do not map (the name from `information_schema`).
    Unsupported(String),
}

/// One column of a captured table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub mapping: Mapping,
}

impl Mapping {
    /// From `information_schema.COLUMNS`: `DATA_TYPE`, `COLUMN_TYPE` and
    /// `DATETIME_PRECISION`.
    pub fn from_info_schema(data_type: &str, column_type: &str, precision: Option<u8>) -> Mapping {
        let unsigned = column_type.contains("unsigned");
        let decimals = precision.unwrap_or(0);
        match data_type {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
                Mapping::Int { unsigned }
            }
            "float" | "double" | "real" => Mapping::Float,
            "decimal" | "numeric" => Mapping::Decimal,
            "date" => Mapping::Date,
            "datetime" => Mapping::DateTime { decimals },
            "timestamp" => Mapping::Timestamp { decimals },
            "time" => Mapping::Time,
            "year" => Mapping::Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => Mapping::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Mapping::Binary
            }
            "bit" => Mapping::Bit {
                bits: inner(column_type).parse().unwrap_or(1),
            },
            "enum" => Mapping::Enum(labels(column_type)),
            "set" => Mapping::Set(labels(column_type)),
            "json" => Mapping::Json,
            other => Mapping::Unsupported(other.to_string()),
        }
    }
}

/// The text between the first `(` and the last `)` of a column type.
fn inner(column_type: &str) -> &str {
    match (column_type.find('('), column_type.rfind(')')) {
        (Some(a), Some(b)) if a < b => &column_type[a + 1..b],
        _ => "",
    }
}

/// The labels of `enum('a','b''c')` or `set(...)`.
fn labels(column_type: &str) -> Vec<String> {
    let body = inner(column_type);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '\'') => quoted = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    out
}

/// Why a value could not be mapped.
pub type Unmapped = String;

/// One value as JSON.
pub fn to_json(col: &Column, v: &Value) -> Result<Json, Unmapped> {
    use Mapping as M;
    let bad = |what: &str| format!("column {}: {what}", col.name);
    Ok(match (&col.mapping, v) {
        (_, Value::NULL) => Json::Null,
        (M::Unsupported(t), _) => return Err(bad(&format!("type {t} is not mapped"))),
        (M::Int { unsigned: true }, Value::Int(i)) if *i < 0 => Json::from(*i as u64),
        (M::Int { .. } | M::Year, Value::Int(i)) => Json::from(*i),
        (M::Int { .. } | M::Year, Value::UInt(u)) => Json::from(*u),
        (M::Float, Value::Float(f)) => number(f64::from(*f)).ok_or_else(|| bad("not finite"))?,
        (M::Float, Value::Double(f)) => number(*f).ok_or_else(|| bad("not finite"))?,
        (M::Year, Value::Bytes(b)) => Json::from(
            text(b)
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| bad("not a year"))?,
        ),
        (M::Decimal | M::Text | M::Json, Value::Bytes(b)) => {
            Json::from(text(b).ok_or_else(|| bad("not UTF-8"))?)
        }
        (M::Binary, Value::Bytes(b)) => Json::from(base64(b)),
        (M::Bit { bits: 1 }, Value::Bytes(b)) => Json::from(b.iter().any(|x| *x != 0)),
        (M::Bit { .. }, Value::Bytes(b)) => Json::from(base64(b)),
        (M::Bit { bits: 1 }, Value::Int(i)) => Json::from(*i != 0),
        (M::Bit { .. }, Value::Int(i)) => Json::from(base64(&i.to_be_bytes())),
        (M::Bit { .. }, Value::UInt(u)) => Json::from(base64(&u.to_be_bytes())),
        // ENUM: the label from the snapshot, the 1-based index from the binlog.
        (M::Enum(_), Value::Bytes(b)) => Json::from(text(b).ok_or_else(|| bad("not UTF-8"))?),
        (M::Enum(labels), Value::Int(i)) => match *i {
            0 => Json::from(""),
            i => Json::from(
                labels
                    .get(i as usize - 1)
                    .ok_or_else(|| bad("enum index out of range"))?
                    .clone(),
            ),
        },
        // SET: `a,b` from the snapshot, a little-endian bit mask from the binlog.
        (M::Set(labels), Value::Bytes(b)) => match text(b) {
            Some(s) if s.is_empty() || labels.iter().any(|l| s.starts_with(l.as_str())) => {
                Json::from(s)
            }
            _ => {
                let mut picked = Vec::new();
                for (i, l) in labels.iter().enumerate() {
                    if b.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0) {
                        picked.push(l.as_str());
                    }
                }
                Json::from(picked.join(","))
            }
        },
        (M::Date, Value::Date(y, m, d, ..)) => {
            let date = ymd(*y, *m, *d).ok_or_else(|| bad("not a date"))?;
            Json::from(date.signed_duration_since(epoch_day()).num_days())
        }
        (M::DateTime { decimals }, Value::Date(y, m, d, h, mi, s, us)) => {
            let t = datetime(*y, *m, *d, *h, *mi, *s, *us).ok_or_else(|| bad("not a datetime"))?;
            let micros = t.and_utc().timestamp_micros();
            match decimals {
                0..=3 => Json::from(micros.div_euclid(1000)),
                _ => Json::from(micros),
            }
        }
        (M::Timestamp { decimals }, Value::Date(y, m, d, h, mi, s, us)) => {
            let t = datetime(*y, *m, *d, *h, *mi, *s, *us).ok_or_else(|| bad("not a timestamp"))?;
            Json::from(iso_utc(t, *decimals))
        }
        // The binlog's TIMESTAMP: seconds since the epoch, with the fraction after a dot.
        (M::Timestamp { decimals }, Value::Bytes(b)) => {
            let s = text(b).ok_or_else(|| bad("not a timestamp"))?;
            let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
            let secs: i64 = secs.parse().map_err(|_| bad("not a timestamp"))?;
            let micros: u32 = format!("{frac:0<6}")[..6]
                .parse()
                .map_err(|_| bad("not a timestamp"))?;
            let t = chrono::DateTime::from_timestamp(secs, micros * 1000)
                .ok_or_else(|| bad("timestamp out of range"))?;
            Json::from(iso_utc(t.naive_utc(), *decimals))
        }
        (M::Time, Value::Time(neg, days, h, m, s, us)) => {
            let micros = ((i64::from(*days) * 24 + i64::from(*h)) * 3600
                + i64::from(*m) * 60
                + i64::from(*s))
                * 1_000_000
                + i64::from(*us);
            Json::from(if *neg { -micros } else { micros })
        }
        (m, v) => return Err(bad(&format!("{v:?} does not fit {m:?}"))),
    })
}

fn number(f: f64) -> Option<Json> {
    serde_json::Number::from_f64(f).map(Json::Number)
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

fn base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn epoch_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

fn ymd(y: u16, m: u8, d: u8) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(i32::from(y), u32::from(m), u32::from(d))
}

fn datetime(y: u16, m: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Option<NaiveDateTime> {
    let time = NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us)?;
    Some(ymd(y, m, d)?.and_time(time))
}

/// `2026-12-03T10:15:00.123456Z`, with as many fractional digits as the column has.
fn iso_utc(t: NaiveDateTime, decimals: u8) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    match decimals {
        0 => format!("{base}Z"),
        n => {
            let frac = format!("{:06}", t.and_utc().timestamp_subsec_micros());
            format!("{base}.{}Z", &frac[..usize::from(n.min(6))])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str, precision: Option<u8>) -> Column {
        Column {
            name: "c".into(),
            mapping: Mapping::from_info_schema(data_type, column_type, precision),
        }
    }

    #[test]
    fn shop_types_map_as_debezium_does() {
        let dec = col("decimal", "decimal(12,2)", None);
        assert_eq!(
            to_json(&dec, &Value::Bytes(b"12.30".to_vec())),
            Ok(Json::from("12.30"))
        );
        let dt = col("datetime", "datetime(6)", Some(6));
        let v = Value::Date(2026, 12, 3, 10, 15, 0, 123_456);
        assert_eq!(to_json(&dt, &v), Ok(Json::from(1_796_292_900_123_456_i64)));
        let dt0 = col("datetime", "datetime", Some(0));
        assert_eq!(to_json(&dt0, &v), Ok(Json::from(1_796_292_900_123_i64)));
        let ts = col("timestamp", "timestamp(3)", Some(3));
        assert_eq!(to_json(&ts, &v), Ok(Json::from("2026-12-03T10:15:00.123Z")));
        let binlog_ts = Value::Bytes(b"1796292900.123000".to_vec());
        assert_eq!(
            to_json(&ts, &binlog_ts),
            Ok(Json::from("2026-12-03T10:15:00.123Z"))
        );
        let text = col("varchar", "varchar(255)", None);
        let emoji = "caf\u{e9} \u{1f600}";
        assert_eq!(
            to_json(&text, &Value::Bytes(emoji.into())),
            Ok(Json::from(emoji))
        );
        assert!(to_json(&text, &Value::Bytes(vec![0xff, 0xfe])).is_err());
        let big = col("bigint", "bigint(20) unsigned", None);
        assert_eq!(to_json(&big, &Value::Int(-1)), Ok(Json::from(u64::MAX)));
        assert_eq!(to_json(&big, &Value::NULL), Ok(Json::Null));
        let date = col("date", "date", None);
        assert_eq!(
            to_json(&date, &Value::Date(1970, 1, 2, 0, 0, 0, 0)),
            Ok(Json::from(1))
        );
        let time = col("time", "time(6)", Some(6));
        assert_eq!(
            to_json(&time, &Value::Time(true, 1, 2, 0, 0, 5)),
            Ok(Json::from(-(26 * 3600 * 1_000_000_i64 + 5)))
        );
    }

    #[test]
    fn enums_sets_and_bits_read_their_labels() {
        let e = col("enum", "enum('visa','it''s')", None);
        assert_eq!(to_json(&e, &Value::Int(2)), Ok(Json::from("it's")));
        assert_eq!(
            to_json(&e, &Value::Bytes(b"visa".to_vec())),
            Ok(Json::from("visa"))
        );
        assert!(to_json(&e, &Value::Int(3)).is_err());
        let s = col("set", "set('a','b','c')", None);
        assert_eq!(
            to_json(&s, &Value::Bytes(vec![0b101])),
            Ok(Json::from("a,c"))
        );
        assert_eq!(
            to_json(&s, &Value::Bytes(b"a,c".to_vec())),
            Ok(Json::from("a,c"))
        );
        let bit = col("bit", "bit(1)", None);
        assert_eq!(to_json(&bit, &Value::Bytes(vec![1])), Ok(Json::from(true)));
        let geo = col("point", "point", None);
        let err = to_json(&geo, &Value::Bytes(vec![0; 25])).unwrap_err();
        assert!(err.contains("point is not mapped"), "{err}");
    }
}
