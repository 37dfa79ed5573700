//! Ingest checkpoints and crash recovery.
//!
//! After every batch is acknowledged by the broker (idempotent producer, `acks=all`), a
//! checkpoint goes to the state topic: the table's cursor and, per destination partition, the
//! offset after our last acknowledged message (a table's first run writes one before it sends
//! anything, with every partition's end offset). A crash can leave rows past the checkpoint
//! delivered to some partitions and not to others; on restart [`scan_tails`] reads each
//! destination partition from the checkpointed offset to its end, so that the rerun sends
//! exactly the rows that are missing:
//!
//! * data messages carry no header (headers are a large part of the producer's and the
//!   broker's work per message): a row is delivered when a message with its key and a
//!   byte-identical value (schema id and every field, the row's id included) is in its
//!   partition past the checkpoint;
//! * dead letters carry a `jobs.origin` header with the row's position (their JSON body has a
//!   timestamp, so it is not the same twice); per-partition order is guaranteed by the
//!   idempotent producer, so "at or before the partition's last position" means "already
//!   there". Data messages written by earlier versions carry the header too.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use rdkafka::Offset;
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::Config;
use crate::io::kafka;
use crate::io::source::Cursor;

/// The header on every dead letter ingest writes: `<source>|<table>|<position>` (see
/// [`Position`]). Data messages written by earlier versions carry it too.
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

/// What recovery found past the checkpoint in a table's destination partitions.
#[derive(Debug, Default)]
pub struct Tails {
    /// Per (topic, partition): the last positions of this source's and table's messages that
    /// carry a `jobs.origin` header (dead letters; data messages of earlier versions).
    positions: HashMap<(String, i32), Tail>,
    /// Data messages without that header, by a hash of (partition, key, value); the bytes
    /// are kept, so a match is exact.
    delivered: HashMap<u64, Vec<Delivered>>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, PartialEq, Eq)]
struct Delivered {
    partition: i32,
    key: Box<[u8]>,
    value: Box<[u8]>,
}

impl Tails {
    /// True when nothing was found (the common case: the last run stopped cleanly).
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.delivered.is_empty()
    }

    /// Whether the message for a row is already in `topic`'s `partition`: by its position
    /// (from headers), or, for the data topic, by a message with the same key and value.
    pub fn has(
        &self,
        topic: &str,
        data: bool,
        partition: i32,
        pos: Position,
        key: &[u8],
        value: &[u8],
    ) -> bool {
        if self
            .positions
            .get(&(topic.to_string(), partition))
            .is_some_and(|t| t.has(pos))
        {
            return true;
        }
        data && self
            .delivered
            .get(&self.hash(partition, key, value))
            .is_some_and(|v| {
                v.iter()
                    .any(|d| d.partition == partition && *d.key == *key && *d.value == *value)
            })
    }

    fn hash(&self, partition: i32, key: &[u8], value: &[u8]) -> u64 {
        self.hasher.hash_one((partition, key, value))
    }

    fn add_position(&mut self, tp: (String, i32), pos: Position) {
        let t = self.positions.entry(tp).or_default();
        match pos {
            Position::Keyset(c) => t.keyset = Some(t.keyset.map_or(c, |x| x.max(c))),
            Position::NullTs(id) => t.null_id = Some(t.null_id.map_or(id, |x| x.max(id))),
        }
    }

    fn add_delivered(&mut self, d: Delivered) {
        let h = self.hash(d.partition, &d.key, &d.value);
        self.delivered.entry(h).or_default().push(d);
    }
}

/// One message of a recovery scan that may be one of ours.
enum Found {
    Position((String, i32), Position),
    Delivered(Delivered),
}

/// Reads every partition of the table's data topic and of the dead-letter topic (each given
/// with its partition count) past the checkpointed offsets in `state` (from the beginning
/// where there is none) and returns what of `source`'s `table` is there. Blocking.
pub fn scan_tails(
    cfg: &Config,
    source: &str,
    table: &str,
    data_topic: (&str, i32),
    dlq_topic: (&str, i32),
    state: &TableState,
) -> Result<Tails> {
    let mut assignment = Vec::new();
    for (topic, partitions) in [data_topic, dlq_topic] {
        for p in 0..partitions {
            let offset = match state.offsets.get(&tp_key(topic, p)) {
                Some(o) => Offset::Offset(*o),
                None => Offset::Beginning,
            };
            assignment.push((topic.to_string(), p, offset));
        }
    }
    let scanned = std::sync::atomic::AtomicU64::new(0);
    let found = kafka::read_to_end(
        &cfg.kafka,
        "jobs-ingest-recovery",
        &assignment,
        "output partitions for recovery",
        |m| {
            scanned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (mut src, mut tbl, mut pos) = (None, None, None);
            for hd in m.headers().into_iter().flat_map(|h| h.iter()) {
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
            let tp = (m.topic().to_string(), m.partition());
            if let Some(pos) = pos {
                return (src == Some(source) && tbl == Some(table))
                    .then_some(Found::Position(tp, pos));
            }
            if tp.0 != data_topic.0 {
                return None;
            }
            Some(Found::Delivered(Delivered {
                partition: m.partition(),
                key: m.key()?.into(),
                value: m.payload()?.into(),
            }))
        },
    )?;
    let scanned = scanned.into_inner();
    let mut tails = Tails::default();
    for f in found {
        match f {
            Found::Position(tp, pos) => tails.add_position(tp, pos),
            Found::Delivered(d) => tails.add_delivered(d),
        }
    }
    if !tails.is_empty() {
        tracing::info!(
            message = "Read the output partitions past the last checkpoint; rows found there will not be sent again.",
            table,
            scanned,
            by_position = tails.positions.len(),
            by_content = tails.delivered.values().map(Vec::len).sum::<usize>(),
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

    #[test]
    fn data_messages_are_found_by_their_exact_bytes() {
        let mut tails = Tails::default();
        tails.add_delivered(Delivered {
            partition: 2,
            key: b"17".as_slice().into(),
            value: b"\0\0\0\0\x01abc".as_slice().into(),
        });
        let pos = Position::Keyset(Cursor {
            ts_micros: 5,
            id: 9,
        });
        let v = b"\0\0\0\0\x01abc".as_slice();
        assert!(!tails.is_empty());
        assert!(tails.has("sales", true, 2, pos, b"17", v));
        // Another partition, key or value, or a dead letter (found by position only): not ours.
        assert!(!tails.has("sales", true, 1, pos, b"17", v));
        assert!(!tails.has("sales", true, 2, pos, b"18", v));
        assert!(!tails.has("sales", true, 2, pos, b"17", b"\0\0\0\0\x01abd"));
        assert!(!tails.has("dlq", false, 2, pos, b"17", v));
        tails.add_position(("dlq".into(), 2), pos);
        assert!(tails.has("dlq", false, 2, pos, b"", b""));
        assert!(!tails.has("dlq", false, 2, Position::NullTs(1), b"", b""));
    }
}
