//! Taking partitions over: their checkpoints read, the files of unfinished flushes removed,
//! and the outputs scanned for the keys sent after those checkpoints, so that the replay sends
//! each message once. The decisions on what was found are the partition core's
//! ([`Partition::restore`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rdkafka::Offset;
use rdkafka::message::{Headers, Message};

use super::execute::Io;
use super::partition::{Checkpoint, Intent, Partition, Settings};
use crate::io::kafka;
use crate::{Error, Result};

/// Loads partitions `ps` from their checkpoints, undoing unfinished flushes, and finds what
/// they already sent after those checkpoints.
pub(super) async fn recover(io: &Io<'_>, s: &Settings, ps: &[i32]) -> Result<Vec<Partition>> {
    if ps.is_empty() {
        return Ok(vec![]);
    }
    let mut cks = BTreeMap::new();
    for &p in ps {
        let path = io.checkpoint_path(p);
        let ck: Option<Checkpoint> = match io.lake.get(&path).await? {
            Some(b) => Some(
                serde_json::from_slice(&b)
                    .map_err(|e| Error::Internal(format!("checkpoint {path} unreadable: {e}")))?,
            ),
            None => None,
        };
        let seq = ck.as_ref().map_or(0, |c| c.seq);
        let intent_path = io.intent_path(p);
        if let Some(b) = io.lake.get(&intent_path).await? {
            if let Ok(intent) = serde_json::from_slice::<Intent>(&b)
                && intent.seq > seq
            {
                let held = tokio::task::block_in_place(|| io.writers.shared())?;
                for f in &intent.files {
                    io.lake.delete(f).await?;
                }
                drop(held);
                tracing::info!(
                    message = "Removed the files of an unfinished flush.",
                    partition = p,
                    files = intent.files.len()
                );
            }
            io.lake.delete(&intent_path).await?;
        }
        cks.insert(p, ck);
    }
    let from = scan_from(&cks);
    let scan_started = Instant::now();
    let mut sent = tokio::task::block_in_place(|| scan_sent(io, ps, &from))?;
    tracing::debug!(
        message = "Scanned the outputs for recovery.",
        partitions = ?ps,
        ms = scan_started.elapsed().as_millis() as u64
    );
    let now = Instant::now();
    let mut out = Vec::new();
    for (p, ck) in cks {
        let next_offset = ck.as_ref().and_then(|c| c.next_offset);
        let seq = ck.as_ref().map_or(0, |c| c.seq);
        let part = Partition::restore(p, ck, sent.remove(&p).unwrap_or_default(), s, now);
        if part.pending_already_sent() > 0 {
            tracing::info!(
                message =
                    "Found outputs sent after the last checkpoint; they will not be sent again.",
                partition = p,
                messages = part.pending_already_sent()
            );
        }
        tracing::info!(message = "Partition assigned.", partition = p, next_offset = ?next_offset, checkpoint_seq = seq);
        out.push(part);
    }
    Ok(out)
}

/// Where the recovery scan starts in each output partition (`topic/partition`): the oldest
/// offset any of the checkpoints recorded there. An output partition missing from a
/// checkpoint (taken before its process wrote there), or a partition without any checkpoint,
/// means reading from the start: what was sent may lie anywhere.
pub(super) fn scan_from(cks: &BTreeMap<i32, Option<Checkpoint>>) -> BTreeMap<String, i64> {
    let mut from: BTreeMap<String, i64> = BTreeMap::new();
    for ck in cks.values() {
        let Some(c) = ck else {
            return BTreeMap::new();
        };
        for (k, v) in &c.output_offsets {
            let e = from.entry(k.clone()).or_insert(*v);
            *e = (*e).min(*v);
        }
    }
    from.retain(|k, _| {
        cks.values().all(|ck| {
            ck.as_ref()
                .is_some_and(|c| c.output_offsets.contains_key(k))
        })
    });
    from
}

/// Idempotency keys this group's partitions `ps` wrote to the outputs after `from`, in
/// offset order within each output partition (a product's alerts and totals share one),
/// which recovery needs to know the newest state. Blocking.
fn scan_sent(
    io: &Io<'_>,
    ps: &[i32],
    from: &BTreeMap<String, i64>,
) -> Result<HashMap<i32, Vec<String>>> {
    let cfg = io.cfg;
    let mut assignment = Vec::new();
    for topic in super::output_topics(cfg) {
        for q in 0..io.out_parts[topic] {
            let o = from
                .get(&format!("{topic}/{q}"))
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            assignment.push((topic.clone(), q, o));
        }
    }
    let group = cfg.stream.group_id.as_str();
    let wanted: HashMap<String, i32> = ps.iter().map(|p| (p.to_string(), *p)).collect();
    let found = kafka::read_to_end(
        &cfg.kafka,
        "jobs-stream-recovery",
        &assignment,
        "stream outputs for recovery",
        |m| {
            let h = m.headers()?;
            let (mut g, mut sp, mut key) = (None, None, None);
            for hd in h.iter() {
                let v = hd.value.and_then(|v| std::str::from_utf8(v).ok());
                match hd.key {
                    "jobs.group" => g = v,
                    "jobs.source_partition" => sp = v,
                    "jobs.idempotency_key" => key = v,
                    _ => {}
                }
            }
            if g != Some(group) {
                return None;
            }
            Some((*wanted.get(sp?)?, key?.to_string()))
        },
    )?;
    let mut keys: HashMap<i32, Vec<String>> = HashMap::new();
    for (p, k) in found {
        keys.entry(p).or_default().push(k);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Counters;

    fn ck(offsets: &[(&str, i64)]) -> Option<Checkpoint> {
        Some(Checkpoint {
            seq: 1,
            next_offset: Some(10),
            counters: Counters::default(),
            output_offsets: offsets.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            windows: Default::default(),
            totals: Default::default(),
            stock: Default::default(),
        })
    }

    #[test]
    fn the_scan_starts_at_the_oldest_checkpointed_offset_or_at_the_beginning() {
        let cks = BTreeMap::from([
            (0, ck(&[("w/0", 40), ("w/1", 7)])),
            (1, ck(&[("w/0", 25), ("w/1", 9), ("late/0", 3)])),
        ]);
        // `late/0` is unknown to partition 0's checkpoint: read it from the start.
        assert_eq!(
            scan_from(&cks),
            BTreeMap::from([("w/0".to_string(), 25), ("w/1".to_string(), 7)])
        );
        let mut cks = cks;
        cks.insert(2, None);
        assert!(
            scan_from(&cks).is_empty(),
            "a partition without a checkpoint"
        );
    }
}
