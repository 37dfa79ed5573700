//! A captured table's shape, and the messages of its changes in Debezium's envelope (JSON,
//! `schemas.enable=false`): the key is an object of the primary-key columns, the value
//! `{before, after, source, op, ts_ms}`; a delete is followed by a tombstone.

use mysql_async::Value;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::convert::{Column, to_json};

/// A captured table: its columns in table order and which of them form the primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub db: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns`, in key order.
    pub key: Vec<usize>,
}

/// A row image as JSON, in column order.
pub type Image = Map<String, Json>;

impl TableInfo {
    /// The row's values as a JSON object. `names`, when the binlog carries column names
    /// (`binlog_row_metadata=FULL`), must match ours: otherwise the row was written under
    /// another schema than the one we hold.
    pub fn image(&self, values: &[Value], names: Option<&[String]>) -> Result<Image, String> {
        if values.len() != self.columns.len() {
            return Err(format!(
                "{}.{}: the row has {} columns, the table {}",
                self.db,
                self.name,
                values.len(),
                self.columns.len()
            ));
        }
        if let Some(names) = names
            && names.iter().zip(&self.columns).any(|(n, c)| *n != c.name)
        {
            return Err(format!(
                "{}.{}: the row's columns ({}) are not the table's ({})",
                self.db,
                self.name,
                names.join(", "),
                self.column_names().join(", ")
            ));
        }
        let mut m = Map::with_capacity(values.len());
        for (c, v) in self.columns.iter().zip(values) {
            m.insert(c.name.clone(), to_json(c, v)?);
        }
        Ok(m)
    }

    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The key of a row image: `{"id": 7}` (JSON bytes, the key's columns in name order,
    /// whatever order a JSON map of this build keeps).
    pub fn key_of(&self, image: &Image) -> Vec<u8> {
        let mut cols: Vec<&str> = self
            .key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect();
        cols.sort_unstable();
        let mut out = b"{".to_vec();
        for (i, name) in cols.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let v = image.get(*name).cloned().unwrap_or(Json::Null);
            out.extend(serde_json::to_vec(name).unwrap_or_default());
            out.push(b':');
            out.extend(serde_json::to_vec(&v).unwrap_or_default());
        }
        out.push(b'}');
        out
    }
}

/// What happened to a row (Debezium's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// Read by the snapshot.
    Read,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }
}

/// Debezium's `source` block.
#[derive(Debug, Clone, Serialize)]
pub struct Source<'a> {
    pub version: &'static str,
    pub connector: &'static str,
    /// The topic prefix (Debezium's logical server name).
    pub name: &'a str,
    /// When the change was committed on the server (the event's timestamp, in ms).
    pub ts_ms: i64,
    /// `"true"` for snapshot reads, `"false"` for changes.
    pub snapshot: &'static str,
    pub db: &'a str,
    pub table: &'a str,
    pub server_id: u32,
    pub gtid: Option<&'a str>,
    pub file: &'a str,
    pub pos: u64,
    pub row: u64,
}

/// The value of a change message.
pub fn value(
    op: Op,
    before: Option<&Image>,
    after: Option<&Image>,
    source: &Source<'_>,
    now_ms: i64,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        before: Option<&'a Image>,
        after: Option<&'a Image>,
        source: &'a Source<'a>,
        op: &'static str,
        ts_ms: i64,
    }
    serde_json::to_vec(&Envelope {
        before,
        after,
        source,
        op: op.code(),
        ts_ms: now_ms,
    })
    .unwrap_or_default()
}

/// The value of a schema change message on `<prefix>.<db>.schema_changes`.
pub fn schema_change(table: &TableInfo, ddl: &str, source: &Source<'_>, now_ms: i64) -> Vec<u8> {
    let columns: Vec<Json> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                "name": c.name,
                "position": i + 1,
                "mapping": format!("{:?}", c.mapping),
            })
        })
        .collect();
    let key: Vec<&str> = table
        .key
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "source": source,
        "ts_ms": now_ms,
        "databaseName": table.db,
        "ddl": ddl,
        "tableChanges": [{
            "type": "ALTER",
            "id": format!("{}.{}", table.db, table.name),
            "table": {"primaryKeyColumnNames": key, "columns": columns},
        }],
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::convert::Mapping;
    use super::*;

    fn products() -> TableInfo {
        let col = |name: &str, mapping| Column {
            name: name.into(),
            mapping,
        };
        TableInfo {
            db: "shop".into(),
            name: "products".into(),
            columns: vec![
                col("id", Mapping::Int { unsigned: false }),
                col("name", Mapping::Text),
                col("price", Mapping::Decimal),
            ],
            key: vec![0],
        }
    }

    #[test]
    fn a_change_is_debeziums_envelope_keyed_by_the_primary_key() {
        let t = products();
        let row = [
            Value::Int(7),
            Value::Bytes("Lamp \u{1f4a1}".into()),
            Value::NULL,
        ];
        let after = t.image(&row, None).unwrap();
        assert_eq!(t.key_of(&after), br#"{"id":7}"#);
        let source = Source {
            version: "jobs",
            connector: "mariadb",
            name: "cdc",
            ts_ms: 1000,
            snapshot: "false",
            db: "shop",
            table: "products",
            server_id: 1,
            gtid: Some("0-1-9"),
            file: "mariadb-bin.000001",
            pos: 400,
            row: 0,
        };
        let v: Json =
            serde_json::from_slice(&value(Op::Create, None, Some(&after), &source, 5)).unwrap();
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], Json::Null);
        assert_eq!(v["after"]["name"], "Lamp \u{1f4a1}");
        assert_eq!(v["after"]["price"], Json::Null);
        assert_eq!(v["source"]["gtid"], "0-1-9");
        assert_eq!(v["source"]["pos"], 400);
        let names = ["id".to_string(), "title".into(), "price".into()];
        let err = t.image(&row, Some(&names)).unwrap_err();
        assert!(err.contains("not the table's"), "{err}");
        assert!(t.image(&row[..2], None).is_err());
    }
}
