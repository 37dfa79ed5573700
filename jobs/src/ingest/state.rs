//! Ingest checkpoints and crash recovery.
//!
//! After every batch is acknowledged by the broker (idempotent producer, `acks=all`), a
//! checkpoint goes to the state topic: the table's cursor and, per destination partition, the
//! offset after our last acknowledged message. A crash can leave rows past the checkpoint
//! delivered to some partitions and not to others; on restart [`scan_tails`] reads each
//! destination partition from the checkpointed offset to its end and finds the last row of
//! this source and table in it (from the `jobs.cursor` header), so that the rerun sends
//! exactly the rows that are missing. Per-partition order is guaranteed by the idempotent
//! producer, so "at or before the partition's tail" means "already there".

use std::collections::{BTreeMap, HashMap};

use rdkafka::Offset;
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::Config;
use crate::io::kafka;
use crate::io::source::Cursor;

/// The header on every message ingest writes: `<source>|<table>|<position>` (see
/// [`Position`]), one header rather than three because headers are a large part of the
/// producer's and the broker's work per message.
pub const H_ORIGIN: &str = "jobs.origin";
/// The table's name, also on dead letters (for people and tools reading the DLQ).
pub const H_TABLE: &str = "jobs.table";
// Written by versions before `jobs.origin`; still read by recovery.
const H_SOURCE: &str = "jobs.source";
const H_CURSOR: &str = "jobs.cursor";

/// The `jobs.origin` header's text up to the position: `<source>|<table>|`.
pub fn origin_prefix(source: &str, table: &str) -> String {
    format!("{source}|{table}|")
}

/// Splits a `jobs.origin` header into source, table and position.
fn parse_origin(v: &str) -> Option<(&str, &str, Position)> {
    let mut it = v.rsplitn(3, '|');
    let pos = Position::parse(it.next()?)?;
    let table = it.next()?;
    Some((it.next()?, table, pos))
}

/// How far ingest got in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    /// Rows strictly after this `(timestamp, id)` are new.
    pub cursor: Cursor,
    /// Rows with a NULL timestamp and an id up to this one were dead-lettered.
    pub null_id: i64,
    /// Rows handled so far (published or dead-lettered), for operators.
    pub rows: u64,
    /// Per `topic/partition`: the offset after our last acknowledged message there.
    #[serde(default)]
    pub offsets: BTreeMap<String, i64>,
}

/// The position of one message, as its `jobs.origin` header ends: `T:<micros>:<id>` for the
/// keyset cursor, `N:<id>` for the NULL-timestamp cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Keyset(Cursor),
    NullTs(i64),
}

impl Position {
    pub fn header(&self) -> String {
        let mut s = String::new();
        self.write_header(&mut s);
        s
    }

    /// Appends the header text to `out` (ingest reuses one buffer for every message).
    pub fn write_header(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = match self {
            Position::Keyset(c) => write!(out, "T:{}:{}", c.ts_micros, c.id),
            Position::NullTs(id) => write!(out, "N:{id}"),
        };
    }

    pub fn parse(s: &str) -> Option<Position> {
        let mut it = s.split(':');
        match (it.next()?, it.next(), it.next()) {
            ("T", Some(ts), Some(id)) => Some(Position::Keyset(Cursor {
                ts_micros: ts.parse().ok()?,
                id: id.parse().ok()?,
            })),
            ("N", Some(id), None) => Some(Position::NullTs(id.parse().ok()?)),
            _ => None,
        }
    }
}

/// The last positions of this table's rows found in one partition past the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tail {
    pub keyset: Option<Cursor>,
    pub null_id: Option<i64>,
}

impl Tail {
    /// Whether a row at `pos` is already in this partition.
    pub fn has(&self, pos: Position) -> bool {
        match pos {
            Position::Keyset(c) => self.keyset.is_some_and(|t| c <= t),
            Position::NullTs(id) => self.null_id.is_some_and(|t| id <= t),
        }
    }
}

/// `topic/partition`, the key of [`TableState::offsets`].
pub fn tp_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

#[derive(Serialize, Deserialize)]
struct Record {
    source: String,
    table: String,
    #[serde(flatten)]
    state: TableState,
}

/// The checkpoint message for a table: (key, JSON value).
pub fn record(source: &str, table: &str, state: &TableState) -> (String, Vec<u8>) {
    let rec = Record {
        source: source.to_string(),
        table: table.to_string(),
        state: state.clone(),
    };
    // Serializing plain integers and strings cannot fail.
    let value = serde_json::to_vec(&rec).unwrap_or_default();
    (format!("{source}|{table}"), value)
}

/// Reads the state topic and returns the latest checkpoint of each of `source`'s tables.
/// Blocking.
pub fn load(cfg: &Config, source: &str) -> Result<HashMap<String, TableState>> {
    let topic = &cfg.topics.ingest_state;
    let mut out = HashMap::new();
    let assignment = [(topic.clone(), 0, Offset::Beginning)];
    let records = kafka::read_to_end(
        &cfg.kafka,
        "jobs-ingest-recovery",
        &assignment,
        &format!("ingest state topic {topic}"),
        |m| {
            let payload = m.payload()?;
            match serde_json::from_slice::<Record>(payload) {
                Ok(rec) => Some(rec),
                Err(e) => {
                    tracing::warn!(message = "Ignoring an unreadable checkpoint.", topic = %topic, offset = m.offset(), error = %e);
                    None
                }
            }
        },
    )?;
    // In offset order: the newest checkpoint of each table wins.
    for rec in records.into_iter().filter(|r| r.source == source) {
        out.insert(rec.table, rec.state);
    }
    Ok(out)
}

/// For every partition of `topics`, the last position of `source`/`table` rows written after
/// the checkpointed offsets in `state` (from the beginning where there is no checkpoint).
/// Blocking.
pub fn scan_tails(
    cfg: &Config,
    source: &str,
    table: &str,
    topics: &[(&str, i32)],
    state: &TableState,
) -> Result<HashMap<(String, i32), Tail>> {
    let mut assignment = Vec::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            let offset = match state.offsets.get(&tp_key(topic, p)) {
                Some(o) => Offset::Offset(*o),
                None => Offset::Beginning,
            };
            assignment.push((topic.to_string(), p, offset));
        }
    }
    let mut tails: HashMap<(String, i32), Tail> = HashMap::new();
    let scanned = std::sync::atomic::AtomicU64::new(0);
    let found = kafka::read_to_end(
        &cfg.kafka,
        "jobs-ingest-recovery",
        &assignment,
        "output partitions for recovery",
        |m| {
            scanned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let h = m.headers()?;
            let (mut src, mut tbl, mut pos) = (None, None, None);
            for hd in h.iter() {
                let v = hd.value.and_then(|v| std::str::from_utf8(v).ok());
                match hd.key {
                    H_ORIGIN => {
                        if let Some((s, t, p)) = v.and_then(parse_origin) {
                            (src, tbl, pos) = (Some(s), Some(t), Some(p));
                        }
                    }
                    H_SOURCE => src = v,
                    H_TABLE => tbl = v,
                    H_CURSOR => pos = v.and_then(Position::parse),
                    _ => {}
                }
            }
            if src != Some(source) || tbl != Some(table) {
                return None;
            }
            Some(((m.topic().to_string(), m.partition()), pos?))
        },
    )?;
    let scanned = scanned.into_inner();
    for (tp, pos) in found {
        let t = tails.entry(tp).or_default();
        match pos {
            Position::Keyset(c) => t.keyset = Some(t.keyset.map_or(c, |x| x.max(c))),
            Position::NullTs(id) => t.null_id = Some(t.null_id.map_or(id, |x| x.max(id))),
        }
    }
    if !tails.is_empty() {
        tracing::info!(
            message =
                "Found rows delivered after the last checkpoint; they will not be sent again.",
            table,
            partitions = tails.len(),
            scanned
        );
    }
    Ok(tails)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p_header(c: Cursor) -> String {
        Position::Keyset(c).header()
    }

    #[test]
    fn positions_round_trip_and_tails_compare() {
        let c = Cursor {
            ts_micros: 1_700_000_000_000_000,
            id: 42,
        };
        for p in [Position::Keyset(c), Position::NullTs(7)] {
            assert_eq!(Position::parse(&p.header()), Some(p));
        }
        assert_eq!(Position::parse("X:1"), None);
        let origin = format!(
            "{}{}",
            origin_prefix("mysql://db|x", "product_sales"),
            p_header(c)
        );
        assert_eq!(
            parse_origin(&origin),
            Some(("mysql://db|x", "product_sales", Position::Keyset(c)))
        );
        assert_eq!(parse_origin("product_sales|T:1:2"), None);
        let tail = Tail {
            keyset: Some(c),
            null_id: None,
        };
        assert!(tail.has(Position::Keyset(c)));
        assert!(tail.has(Position::Keyset(Cursor { id: 41, ..c })));
        assert!(!tail.has(Position::Keyset(Cursor { id: 43, ..c })));
        assert!(!tail.has(Position::NullTs(1)));
    }
}
