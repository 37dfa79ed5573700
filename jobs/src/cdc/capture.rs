//! The synchronous core of `jobs cdc`: binlog events in, the messages to write out, and the
//! positions where a restart may resume. No I/O: the shell (`super::follow`) reads the
//! binlog, sends what this decides and checkpoints the boundaries it reports.
//!
//! Invariants:
//! * messages come out in binlog order, and each carries its [`Ordinal`];
//! * a message whose ordinal is at or before the last one already in its partition (from the
//!   recovery scan, or sent earlier in this process) is dropped: a replay from a checkpoint
//!   writes each change once;
//! * a resume point ([`Capture::boundary`]) is only ever between transactions, where the
//!   binlog can be read again from without a table map missing.

use std::collections::HashMap;

use mysql_async::Value;

use super::envelope::{self, Image, Op, Source, TableInfo};
use super::position::{BinlogPos, Kind, Ordinal, file_seq};
use crate::io::kafka::partition_for;

/// A row's `(before, after)` images.
pub type RowImages = (Option<Vec<Value>>, Option<Vec<Value>>);

/// A message to write: key, value (`None`: tombstone), ordinal, op.
type Out = (Vec<u8>, Option<Vec<u8>>, Ordinal, &'static str);

/// A rows event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

/// A binlog event, as far as capture cares.
#[derive(Debug, Clone)]
pub enum Input {
    /// The reader moved to `file` at `pos` (at connect, and when the server rotates).
    Rotate { file: String, pos: u64 },
    /// A transaction starts (`standalone`: a DDL statement, no COMMIT follows).
    Gtid { gtid: String, standalone: bool },
    /// A `BEGIN` query.
    Begin,
    /// Rows of one table; `pos` is where the event starts, `end` where the next one does.
    Rows {
        db: String,
        table: String,
        kind: RowsKind,
        /// `(before, after)` images.
        rows: Vec<RowImages>,
        /// Column names, when the server logs them (`binlog_row_metadata=FULL`).
        names: Option<Vec<String>>,
        pos: u64,
        end: u64,
        ts: u32,
    },
    /// An XID event or a `COMMIT` query: the transaction is in the binlog in full.
    Commit { end: u64 },
    /// Any other statement (DDL), with its default database.
    Query {
        db: String,
        sql: String,
        pos: u64,
        end: u64,
        ts: u32,
    },
    /// Anything else (heartbeats, checkpoints, GTID lists): only its end matters.
    Other { end: u64 },
}

/// One message to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub key: Vec<u8>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    pub ordinal: Ordinal,
    /// For the metrics: the table and op (`dlq` for dead letters, `ddl` for schema changes).
    pub table: String,
    pub op: &'static str,
}

/// What the shell must do after an event.
#[derive(Debug, Default)]
pub struct Step {
    pub messages: Vec<Message>,
    /// Captured tables a DDL statement named: reload their columns, then call
    /// [`Capture::schema_changed`] for each, before the next event.
    pub reload: Vec<String>,
    /// A transaction ended here: the position is a resume point.
    pub boundary: bool,
    /// Messages dropped as already delivered.
    pub skipped: u64,
}

/// Topics and naming of one capture.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
    pub dlq: String,
    pub server_id: u32,
}

impl Names {
    pub fn topic(&self, db: &str, table: &str) -> String {
        format!("{}.{db}.{table}", self.prefix)
    }

    pub fn schema_topic(&self, db: &str) -> String {
        format!("{}.{db}.schema_changes", self.prefix)
    }
}

/// The capture state machine.
pub struct Capture {
    names: Names,
    db: String,
    tables: HashMap<String, TableInfo>,
    partitions: HashMap<String, i32>,
    /// Per `(topic, partition)`: the last ordinal there.
    delivered: HashMap<(String, i32), Ordinal>,
    file: String,
    /// Where the current event ends.
    end: u64,
    in_txn: bool,
    gtid: Option<String>,
    boundary: BinlogPos,
    boundary_gtid: Option<String>,
    now_ms: fn() -> i64,
}

impl Capture {
    /// A capture of `tables` (all of database `db`) resuming at `from`; `partitions` holds
    /// every topic it writes.
    pub fn new(
        names: Names,
        db: &str,
        tables: Vec<TableInfo>,
        partitions: HashMap<String, i32>,
        from: BinlogPos,
        gtid: Option<String>,
    ) -> Capture {
        Capture {
            names,
            db: db.to_string(),
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
            partitions,
            delivered: HashMap::new(),
            file: from.file.clone(),
            end: from.pos,
            in_txn: false,
            gtid: gtid.clone(),
            boundary: from,
            boundary_gtid: gtid,
            now_ms: || chrono::Utc::now().timestamp_millis(),
        }
    }

    /// The last resume point: every message before it has been handed out.
    pub fn boundary(&self) -> (&BinlogPos, Option<&str>) {
        (&self.boundary, self.boundary_gtid.as_deref())
    }

    /// Where reading has got to (the end of the last event).
    pub fn position(&self) -> BinlogPos {
        BinlogPos {
            file: self.file.clone(),
            pos: self.end,
        }
    }

    /// Records what the recovery scan found in a partition (or what was sent to it).
    pub fn delivered(&mut self, topic: &str, partition: i32, ordinal: Ordinal) {
        let e = self
            .delivered
            .entry((topic.to_string(), partition))
            .or_insert(ordinal);
        *e = (*e).max(ordinal);
    }

    /// Whether the last event ended a transaction (or none was open).
    pub fn between_transactions(&self) -> bool {
        !self.in_txn
    }

    /// Back to the last resume point, to read from it again (after a lost connection): what
    /// was already handed out is dropped as delivered.
    pub fn rewind(&mut self) {
        self.file = self.boundary.file.clone();
        self.end = self.boundary.pos;
        self.in_txn = false;
        self.gtid = self.boundary_gtid.clone();
    }

    /// An event that could not be decoded at all: a dead letter with the reason.
    pub fn undecodable(&mut self, reason: &str, pos: u64, ts: u32) -> Step {
        let mut step = Step::default();
        self.dead_letter(&mut step, "", reason, pos, 0, ts);
        step
    }

    pub fn table(&self, name: &str) -> Option<&TableInfo> {
        self.tables.get(name)
    }

    /// Handles one event.
    pub fn on(&mut self, input: Input) -> Step {
        let mut step = Step::default();
        match input {
            Input::Rotate { file, pos } => {
                self.file = file;
                self.end = pos;
                if !self.in_txn {
                    self.mark_boundary(&mut step);
                }
            }
            Input::Gtid { gtid, standalone } => {
                self.gtid = Some(gtid);
                self.in_txn = !standalone;
            }
            Input::Begin => self.in_txn = true,
            Input::Commit { end } => {
                self.end = end;
                self.in_txn = false;
                self.mark_boundary(&mut step);
            }
            Input::Rows {
                db,
                table,
                kind,
                rows,
                names,
                pos,
                end,
                ts,
            } => {
                self.end = end;
                if db == self.db && self.tables.contains_key(&table) {
                    self.rows(&table, kind, rows, names.as_deref(), pos, ts, &mut step);
                }
            }
            Input::Query { db, sql, end, .. } => {
                self.end = end;
                // A DDL statement commits on its own (and the transaction before it); any
                // other statement inside a transaction (SAVEPOINT) does not end it.
                if is_ddl(&sql) {
                    step.reload = self.ddl_tables(&db, &sql);
                    self.in_txn = false;
                }
                if step.reload.is_empty() && !self.in_txn {
                    self.mark_boundary(&mut step);
                }
            }
            // Only forward: the format description after a reconnect carries its own, older
            // position.
            Input::Other { end } => self.end = self.end.max(end),
        }
        step
    }

    /// After a DDL statement: the table's new shape, announced on the schema topic (the
    /// `index`th table the statement names). The position after the statement becomes a
    /// resume point once every reloaded table is in.
    pub fn schema_changed(
        &mut self,
        table: TableInfo,
        ddl: &str,
        (pos, ts): (u64, u32),
        (index, last): (usize, bool),
    ) -> Step {
        let mut step = Step::default();
        let ordinal = self.ordinal(pos, index as u64);
        let topic = self.names.schema_topic(&self.db);
        let source = self.source(&table.name, pos, 0, ts, "false");
        let value = envelope::schema_change(&table, ddl, &source, (self.now_ms)());
        let key =
            serde_json::to_vec(&serde_json::json!({ "databaseName": self.db })).unwrap_or_default();
        let name = table.name.clone();
        self.tables.insert(name.clone(), table);
        self.push(&mut step, topic, key, Some(value), ordinal, name, "ddl");
        if last {
            self.mark_boundary(&mut step);
        }
        step
    }

    fn mark_boundary(&mut self, step: &mut Step) {
        self.boundary = self.position();
        self.boundary_gtid = self.gtid.clone();
        step.boundary = true;
    }

    fn ordinal(&self, pos: u64, row: u64) -> Ordinal {
        Ordinal {
            file_seq: file_seq(&self.file),
            pos,
            row,
            kind: Kind::Change,
        }
    }

    fn source<'a>(
        &'a self,
        table: &'a str,
        pos: u64,
        row: u64,
        ts: u32,
        snapshot: &'static str,
    ) -> Source<'a> {
        Source {
            version: env!("CARGO_PKG_VERSION"),
            connector: "mariadb",
            name: &self.names.prefix,
            ts_ms: i64::from(ts) * 1000,
            snapshot,
            db: &self.db,
            table,
            server_id: self.names.server_id,
            gtid: self.gtid.as_deref(),
            file: &self.file,
            pos,
            row,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rows(
        &mut self,
        table: &str,
        kind: RowsKind,
        rows: Vec<RowImages>,
        names: Option<&[String]>,
        pos: u64,
        ts: u32,
        step: &mut Step,
    ) {
        let Some(info) = self.tables.get(table).cloned() else {
            return;
        };
        let topic = self.names.topic(&self.db, table);
        for (row, (before, after)) in rows.into_iter().enumerate() {
            let row = row as u64;
            let ordinal = self.ordinal(pos, row);
            let image = |v: &Option<Vec<Value>>| match v {
                Some(v) => info.image(v, names).map(Some),
                None => Ok(None),
            };
            let (before, after) = match (image(&before), image(&after)) {
                (Ok(b), Ok(a)) => (b, a),
                (Err(reason), _) | (_, Err(reason)) => {
                    self.dead_letter(step, table, &reason, pos, row, ts);
                    continue;
                }
            };
            let op = match kind {
                RowsKind::Write => Op::Create,
                RowsKind::Update => Op::Update,
                RowsKind::Delete => Op::Delete,
            };
            let source = self.source(table, pos, row, ts, "false");
            let now = (self.now_ms)();
            let key_before = before.as_ref().map(|b| info.key_of(b));
            let key_after = after.as_ref().map(|a| info.key_of(a));
            let mut out: Vec<Out> = Vec::new();
            match (op, key_before, key_after) {
                // A primary-key change: a delete and its tombstone, then a create.
                (Op::Update, Some(kb), Some(ka)) if kb != ka => {
                    let d = envelope::value(Op::Delete, before.as_ref(), None, &source, now);
                    let c = envelope::value(Op::Create, None, after.as_ref(), &source, now);
                    out.push((kb.clone(), Some(d), ordinal, "d"));
                    out.push((kb, None, ordinal.with(Kind::Tombstone), "tombstone"));
                    out.push((ka, Some(c), ordinal.with(Kind::KeyChange), "c"));
                }
                (Op::Delete, Some(kb), _) => {
                    let d = envelope::value(op, before.as_ref(), None, &source, now);
                    out.push((kb.clone(), Some(d), ordinal, "d"));
                    out.push((kb, None, ordinal.with(Kind::Tombstone), "tombstone"));
                }
                (_, _, Some(ka)) => {
                    let v = envelope::value(op, before.as_ref(), after.as_ref(), &source, now);
                    out.push((ka, Some(v), ordinal, op.code()));
                }
                _ => {
                    self.dead_letter(step, table, "a rows event without its image", pos, row, ts);
                    continue;
                }
            }
            for (key, value, ordinal, op) in out {
                self.push(
                    step,
                    topic.clone(),
                    key,
                    value,
                    ordinal,
                    table.to_string(),
                    op,
                );
            }
        }
    }

    /// A dead letter with the reason and where the event is.
    fn dead_letter(
        &mut self,
        step: &mut Step,
        table: &str,
        reason: &str,
        pos: u64,
        row: u64,
        ts: u32,
    ) {
        let value = serde_json::to_vec(&serde_json::json!({
            "reason": reason,
            "db": self.db,
            "table": table,
            "file": self.file,
            "pos": pos,
            "row": row,
            "gtid": self.gtid,
            "ts_ms": i64::from(ts) * 1000,
        }))
        .unwrap_or_default();
        let key = format!("{}.{table}", self.db).into_bytes();
        let ordinal = self.ordinal(pos, row);
        self.push(
            step,
            self.names.dlq.clone(),
            key,
            Some(value),
            ordinal,
            table.to_string(),
            "dlq",
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: &mut Step,
        topic: String,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        ordinal: Ordinal,
        table: String,
        op: &'static str,
    ) {
        let partitions = self.partitions.get(&topic).copied().unwrap_or(1);
        let partition = partition_for(&key, partitions);
        let slot = self.delivered.entry((topic.clone(), partition));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if ordinal <= *e.get() {
                    step.skipped += 1;
                    return;
                }
                e.insert(ordinal);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(ordinal);
            }
        }
        step.messages.push(Message {
            topic,
            partition,
            key,
            value,
            ordinal,
            table,
            op,
        });
    }

    /// The captured tables a DDL statement of default database `db` touches.
    fn ddl_tables(&self, db: &str, sql: &str) -> Vec<String> {
        let lower = strip_comments(sql).to_ascii_lowercase().replace('`', "");
        let words: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '$'))
            .filter(|w| !w.is_empty())
            .collect();
        let mut out: Vec<String> = Vec::new();
        for name in self.tables.keys() {
            let own = db == self.db;
            let qualified = format!("{}.{}", self.db, name).to_ascii_lowercase();
            let plain = name.to_ascii_lowercase();
            if words
                .iter()
                .any(|w| *w == qualified || (own && *w == plain))
            {
                out.push(name.clone());
            }
        }
        out.sort();
        out
    }

    /// Snapshot rows: `op = r` at the snapshot's position, not deduplicated (a snapshot that
    /// resumes after a crash may repeat its last batch).
    pub fn snapshot_row(
        &mut self,
        table: &str,
        values: &[Value],
        at: &BinlogPos,
        row: u64,
    ) -> Option<Message> {
        let info = self.tables.get(table)?;
        let topic = self.names.topic(&self.db, table);
        let ordinal = Ordinal {
            file_seq: at.seq(),
            pos: at.pos,
            row,
            kind: Kind::Change,
        };
        let image: Image = match info.image(values, None) {
            Ok(i) => i,
            Err(reason) => {
                let mut step = Step::default();
                self.dead_letter(&mut step, table, &reason, at.pos, row, 0);
                return step.messages.pop();
            }
        };
        let key = info.key_of(&image);
        let source = Source {
            file: &at.file,
            ts_ms: (self.now_ms)(),
            ..self.source(table, at.pos, row, 0, "true")
        };
        let value = envelope::value(Op::Read, None, Some(&image), &source, (self.now_ms)());
        let partitions = self.partitions.get(&topic).copied().unwrap_or(1);
        let partition = partition_for(&key, partitions);
        Some(Message {
            topic,
            partition,
            key,
            value: Some(value),
            ordinal,
            table: table.to_string(),
            op: "r",
        })
    }
}

/// Whether a statement is DDL (it commits implicitly).
fn is_ddl(sql: &str) -> bool {
    let lower = strip_comments(sql).to_ascii_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");
    matches!(first, "alter" | "create" | "drop" | "rename" | "truncate")
}

/// The statement without `/* ... */` and `-- ...` comments.
fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            out.push(' ');
        } else if let Some(r) = rest.strip_prefix("-- ") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
