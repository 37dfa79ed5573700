//! Tests of the capture core: envelopes, tombstones, key changes, replays and DDL.

use super::*;
use crate::cdc::convert::{Column, Mapping};

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
        ],
        key: vec![0],
    }
}

fn capture() -> Capture {
    let names = Names {
        prefix: "cdc".into(),
        dlq: "cdc_dlq".into(),
        server_id: 1,
    };
    let partitions = [
        ("cdc.shop.products", 3),
        ("cdc_dlq", 1),
        ("cdc.shop.schema_changes", 1),
    ]
    .map(|(t, n)| (t.to_string(), n))
    .into();
    let from = BinlogPos {
        file: "mariadb-bin.000001".into(),
        pos: 4,
    };
    Capture::new(names, "shop", vec![products()], partitions, from, None)
}

fn row(id: i64, name: &str) -> Vec<Value> {
    vec![Value::Int(id), Value::Bytes(name.into())]
}

fn rows(kind: RowsKind, rows: Vec<RowImages>, pos: u64) -> Input {
    Input::Rows {
        db: "shop".into(),
        table: "products".into(),
        kind,
        rows,
        names: None,
        pos,
        end: pos + 50,
        ts: 1,
    }
}

fn json(m: &Message) -> serde_json::Value {
    serde_json::from_slice(m.value.as_deref().unwrap()).unwrap()
}

/// One transaction: an insert, an update, a delete and a primary-key change.
fn transaction() -> Vec<Input> {
    vec![
        Input::Gtid {
            gtid: "0-1-5".into(),
            standalone: false,
        },
        rows(RowsKind::Write, vec![(None, Some(row(1, "a")))], 100),
        rows(
            RowsKind::Update,
            vec![(Some(row(1, "a")), Some(row(1, "b")))],
            200,
        ),
        rows(RowsKind::Delete, vec![(Some(row(1, "b")), None)], 300),
        rows(
            RowsKind::Update,
            vec![(Some(row(2, "x")), Some(row(3, "x")))],
            400,
        ),
        Input::Commit { end: 500 },
    ]
}

#[test]
fn a_transaction_becomes_ordered_envelopes_with_tombstones_and_key_changes() {
    let mut c = capture();
    let mut out = Vec::new();
    let mut boundaries = 0;
    for i in transaction() {
        let s = c.on(i);
        boundaries += usize::from(s.boundary);
        out.extend(s.messages);
    }
    let ops: Vec<&str> = out.iter().map(|m| m.op).collect();
    assert_eq!(ops, ["c", "u", "d", "tombstone", "d", "tombstone", "c"]);
    assert_eq!(json(&out[0])["after"]["name"], "a");
    assert_eq!(json(&out[1])["before"]["name"], "a");
    assert_eq!(json(&out[1])["source"]["gtid"], "0-1-5");
    assert!(out[3].value.is_none() && out[3].key == br#"{"id":1}"#);
    assert_eq!(out[6].key, br#"{"id":3}"#);
    assert!(out.windows(2).all(|w| w[0].ordinal < w[1].ordinal));
    assert_eq!(boundaries, 1);
    assert_eq!(c.boundary().0.pos, 500);
    assert_eq!(c.boundary().1, Some("0-1-5"));
}

#[test]
fn a_replay_after_the_recovery_scan_writes_only_what_is_missing() {
    let mut first = capture();
    let all: Vec<Message> = transaction()
        .into_iter()
        .flat_map(|i| first.on(i).messages)
        .collect();
    // The crash left the first three messages in the broker.
    let mut again = capture();
    for m in &all[..3] {
        again.delivered(&m.topic, m.partition, m.ordinal);
    }
    let mut skipped = 0;
    let mut rest = Vec::new();
    for i in transaction() {
        let s = again.on(i);
        skipped += s.skipped;
        rest.extend(s.messages);
    }
    let by_partition = |ms: &[Message], p: i32| -> Vec<Ordinal> {
        ms.iter()
            .filter(|m| m.partition == p)
            .map(|m| m.ordinal)
            .collect()
    };
    // Per partition, what was there plus what the replay wrote is the uninterrupted run.
    for p in 0..3 {
        let mut got = by_partition(&all[..3], p);
        got.extend(by_partition(&rest, p));
        assert_eq!(got, by_partition(&all, p), "partition {p}");
    }
    assert_eq!(skipped as usize + rest.len(), all.len());
}

#[test]
fn ddl_names_the_captured_tables_and_bad_rows_are_dead_lettered() {
    let mut c = capture();
    let q = |sql: &str, db: &str| Input::Query {
        db: db.into(),
        sql: sql.into(),
        pos: 600,
        end: 700,
        ts: 1,
    };
    assert_eq!(
        c.on(q(
            "ALTER TABLE products ADD COLUMN color VARCHAR(9)",
            "shop"
        ))
        .reload,
        ["products"]
    );
    assert_eq!(
        c.on(q(
            "/* x */ alter table `shop`.`products` drop color",
            "other"
        ))
        .reload,
        ["products"]
    );
    assert!(
        c.on(q("alter table products drop color", "other"))
            .reload
            .is_empty()
    );
    assert!(
        c.on(q("ALTER TABLE products_old ADD x INT", "shop"))
            .reload
            .is_empty()
    );
    let bad = vec![Value::Int(9), Value::Bytes(vec![0xff])];
    let s = c.on(rows(RowsKind::Write, vec![(None, Some(bad))], 800));
    assert_eq!(s.messages.len(), 1);
    assert_eq!(s.messages[0].topic, "cdc_dlq");
    let v = json(&s.messages[0]);
    assert!(v["reason"].as_str().unwrap().contains("not UTF-8"), "{v}");
    assert_eq!(v["pos"], 800);
    let mut t = products();
    t.columns.push(Column {
        name: "color".into(),
        mapping: Mapping::Text,
    });
    let s = c.schema_changed(t, "ALTER TABLE products ADD color", (600, 1), (0, true));
    assert_eq!(s.messages[0].topic, "cdc.shop.schema_changes");
    assert!(s.boundary);
    let three = vec![Value::Int(4), Value::Bytes("n".into()), Value::NULL];
    let s = c.on(rows(RowsKind::Write, vec![(None, Some(three))], 900));
    assert_eq!(
        json(&s.messages[0])["after"]["color"],
        serde_json::Value::Null
    );
}
