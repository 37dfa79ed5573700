//! The metrics of `jobs cdc` (Prometheus text on `cdc.metrics_addr`): messages per table
//! and op, the lag behind the server's binlog head, the saved position, the snapshot's
//! progress and the binlog connection's state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::position::BinlogPos;
use super::state::Checkpoint;
use crate::metrics::Render;

#[derive(Debug, Default)]
pub struct CdcMetrics {
    /// `(table, op)` -> messages written.
    pub messages: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub recovered: AtomicU64,
    pub snapshot_rows: AtomicU64,
    pub checkpoints: AtomicU64,
    /// 1 while the binlog connection is up.
    pub binlog_up: AtomicI64,
    pub binlog_retries: AtomicU64,
    /// The commit time of the last event read (ms since the epoch).
    pub last_event_ms: AtomicI64,
    /// Where reading has got to, and the server's head.
    pub read: Mutex<Option<BinlogPos>>,
    pub head: Mutex<Option<BinlogPos>>,
    pub saved: Mutex<Option<BinlogPos>>,
}

impl CdcMetrics {
    pub fn count(&self, table: &str, op: &'static str) {
        if let Ok(mut m) = self.messages.lock() {
            *m.entry((table.to_string(), op)).or_default() += 1;
        }
    }

    pub fn checkpoint(&self, c: &Checkpoint) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.saved.lock() {
            s.clone_from(&c.resume);
        }
    }

    pub fn set(slot: &Mutex<Option<BinlogPos>>, pos: BinlogPos) {
        if let Ok(mut s) = slot.lock() {
            *s = Some(pos);
        }
    }

    fn pos(slot: &Mutex<Option<BinlogPos>>) -> Option<BinlogPos> {
        slot.lock().ok().and_then(|s| s.clone())
    }
}

impl Render for CdcMetrics {
    fn render(&self) -> String {
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                s.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let msgs: Vec<(String, String)> = self
            .messages
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((t, op), n)| (format!("{{table=\"{t}\",op=\"{op}\"}}"), n.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "jobs_cdc_messages_total",
            "counter",
            "Messages written per table and op (c, u, d, r, tombstone, ddl, dlq).",
            msgs,
        );
        metric(
            "jobs_cdc_recovered_total",
            "counter",
            "Messages found already delivered after a crash, not sent again.",
            one(g(&self.recovered)),
        );
        metric(
            "jobs_cdc_snapshot_rows_total",
            "counter",
            "Rows read by the snapshot.",
            one(g(&self.snapshot_rows)),
        );
        metric(
            "jobs_cdc_checkpoints_total",
            "counter",
            "Positions saved.",
            one(g(&self.checkpoints)),
        );
        metric(
            "jobs_cdc_binlog_up",
            "gauge",
            "1 while the binlog connection is up.",
            one(self.binlog_up.load(Ordering::Relaxed).to_string()),
        );
        metric(
            "jobs_cdc_binlog_retries_total",
            "counter",
            "Reconnections to the server.",
            one(g(&self.binlog_retries)),
        );
        let (read, head) = (Self::pos(&self.read), Self::pos(&self.head));
        let behind = match (&read, &head) {
            (Some(r), Some(h)) if r.file == h.file => h.pos.saturating_sub(r.pos),
            (Some(r), Some(h)) if r.seq() < h.seq() => h.pos.max(1),
            _ => 0,
        };
        metric(
            "jobs_cdc_lag_bytes",
            "gauge",
            "Bytes of binlog between the server's head and the last event read.",
            one(behind.to_string()),
        );
        let last = self.last_event_ms.load(Ordering::Relaxed);
        let lag_s = if behind == 0 || last == 0 {
            0.0
        } else {
            (chrono::Utc::now().timestamp_millis() - last).max(0) as f64 / 1e3
        };
        metric(
            "jobs_cdc_lag_seconds",
            "gauge",
            "Seconds since the commit of the last event read, while behind the head.",
            one(format!("{lag_s:.3}")),
        );
        for (name, pos) in [
            ("read", read),
            ("head", head),
            ("saved", Self::pos(&self.saved)),
        ] {
            if let Some(p) = pos {
                metric(
                    &format!("jobs_cdc_{name}_position"),
                    "gauge",
                    &format!("The {name} binlog position (file sequence and offset)."),
                    vec![
                        ("{part=\"file\"}".into(), p.seq().to_string()),
                        ("{part=\"pos\"}".into(), p.pos.to_string()),
                    ],
                );
            }
        }
        s
    }
}
