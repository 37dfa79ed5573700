//! The saved position of `jobs cdc` and what recovery reads after a crash.
//!
//! A checkpoint goes to the state topic (compacted, keyed by the capture's name) only after
//! the broker acknowledged every message before it: the binlog position to resume from
//! (always between transactions), and per output partition the offset after our last
//! acknowledged message. After a crash, messages past the checkpoint may be in some
//! partitions and not in others; [`scan`] reads each partition from its checkpointed offset
//! to its end and returns the last [`Ordinal`] there (the `jobs.cdc.pos` header), and the
//! capture core drops every replayed message at or before it. Per-partition order is the
//! idempotent producer's guarantee, so "at or before" means "already there".

use std::collections::{BTreeMap, HashMap};

use rdkafka::Offset;
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

use super::position::{BinlogPos, Ordinal};
use crate::Result;
use crate::config::KafkaConfig;
use crate::io::kafka;

/// The header with the message's [`Ordinal::key`].
pub const H_POS: &str = "jobs.cdc.pos";
/// The header with the capture's name (`cdc.name`): a dead-letter topic may be shared.
pub const H_CAPTURE: &str = "jobs.cdc.capture";

/// Where a snapshot got to: the tables before `table` are read in full, and `table` up to
/// the key `after` (its primary-key values as SQL literals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The binlog position the snapshot was taken at; the binlog is read from it afterwards.
    pub at: BinlogPos,
    pub table: usize,
    pub after: Option<Vec<String>>,
    pub rows: u64,
}

/// A saved position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    /// The captured tables (`cdc.tables`) the position was taken for.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Resume reading here (between transactions).
    pub resume: Option<BinlogPos>,
    /// The GTID of the last transaction before `resume`.
    pub gtid: Option<String>,
    /// `topic/partition` -> the offset after our last acknowledged message there.
    pub offsets: BTreeMap<String, i64>,
    /// Set while a snapshot is under way.
    pub snapshot: Option<SnapshotProgress>,
    /// Changes written so far, for operators.
    pub changes: u64,
    /// When this checkpoint was written (ms since the epoch).
    pub written_ms: i64,
}

pub fn tp_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The newest checkpoint of `name` on `topic`, if any. Blocking.
pub fn load(cfg: &KafkaConfig, topic: &str, name: &str) -> Result<Option<Checkpoint>> {
    let assignment = [(topic.to_string(), 0, Offset::Beginning)];
    let all = kafka::read_to_end(
        cfg,
        "jobs-cdc-recovery",
        &assignment,
        &format!("cdc state topic {topic}"),
        |m| {
            let c: Checkpoint = serde_json::from_slice(m.payload()?).ok()?;
            (c.name == name).then_some(c)
        },
    )?;
    Ok(all.into_iter().last())
}

/// Per `(topic, partition)` past the checkpoint: the last ordinal there. Blocking.
pub fn scan(
    cfg: &KafkaConfig,
    topics: &HashMap<String, i32>,
    at: &Checkpoint,
) -> Result<HashMap<(String, i32), Ordinal>> {
    let mut assignment = Vec::new();
    let mut names: Vec<&String> = topics.keys().collect();
    names.sort();
    for t in names {
        for p in 0..topics[t] {
            let offset = match at.offsets.get(&tp_key(t, p)) {
                Some(o) => Offset::Offset(*o),
                None => Offset::Beginning,
            };
            assignment.push((t.clone(), p, offset));
        }
    }
    let found = kafka::read_to_end(
        cfg,
        "jobs-cdc-recovery",
        &assignment,
        "cdc topics for recovery",
        |m| {
            let h = m.headers()?;
            let get = |key: &str| {
                h.iter()
                    .find(|h| h.key == key)
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
            };
            // Another capture's messages in a shared topic are not ours to count.
            if get(H_CAPTURE).is_some_and(|c| c != at.name) {
                return None;
            }
            let pos = get(H_POS).and_then(Ordinal::parse)?;
            Some(((m.topic().to_string(), m.partition()), pos))
        },
    )?;
    let mut out: HashMap<(String, i32), Ordinal> = HashMap::new();
    for (tp, o) in found {
        let e = out.entry(tp).or_insert(o);
        *e = (*e).max(o);
    }
    Ok(out)
}
