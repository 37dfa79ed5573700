//! The pure half of `jobs sync`: a cdc message -> the document change it asks for, and a batch
//! reduced to the newest change per row.
//!
//! A change's position is the `jobs.cdc.pos` header `jobs cdc` writes; messages from another
//! Debezium producer get theirs from `source.file`/`source.pos`/`source.row`. Positions
//! compare as text (`crate::cdc::position::Ordinal::key`), in Redis and PostgreSQL alike.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::cdc::position::{Kind, Ordinal, file_seq};

/// What a row becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub table: String,
    /// The primary key as text ([`key_text`]).
    pub key: String,
    /// The source position ([`Ordinal::key`]).
    pub pos: String,
    /// The row as a JSON object; `None`: deleted.
    pub doc: Option<String>,
}

/// A message read from a cdc topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Change(Change),
    /// A delete's tombstone: the delete before it did the work.
    Tombstone,
    Bad(String),
}

/// The key of a row as text: the value of a one-column key (`{"id":7}` -> `7`); for a
/// composite key, its values as a JSON array in column-name order (`{"a":1,"b":"x:y"}` ->
/// `[1,"x:y"]`), which no two keys share.
pub fn key_text(key: &Json) -> Option<String> {
    let mut entries: Vec<(&String, &Json)> = key.as_object()?.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    match entries.as_slice() {
        [] => None,
        [(_, Json::String(s))] => Some(s.clone()),
        [(_, v)] => Some(v.to_string()),
        many => Some(Json::Array(many.iter().map(|(_, v)| (*v).clone()).collect()).to_string()),
    }
}

/// One message of `table`'s topic.
pub fn parse(
    table: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    pos_header: Option<&str>,
) -> Parsed {
    let Some(value) = value else {
        return Parsed::Tombstone;
    };
    let bad = |why: &str| Parsed::Bad(format!("{table}: {why}"));
    let Some(key) = key
        .and_then(|k| serde_json::from_slice::<Json>(k).ok())
        .and_then(|k| key_text(&k))
    else {
        return bad("the key is not a JSON object of the primary key");
    };
    let v: Json = match serde_json::from_slice(value) {
        Ok(v) => v,
        Err(e) => return bad(&format!("the value is not JSON: {e}")),
    };
    // Kafka Connect's JsonConverter with schemas: the envelope is under `payload`.
    let v = match v.get("payload") {
        Some(p) if p.is_object() => p.clone(),
        _ => v,
    };
    let op = v.get("op").and_then(Json::as_str).unwrap_or("");
    let doc = match op {
        "c" | "u" | "r" => match v.get("after") {
            Some(a @ Json::Object(_)) => Some(a.to_string()),
            _ => return bad(&format!("op {op} without an `after` object")),
        },
        "d" => None,
        _ => return bad(&format!("unknown op {op:?}")),
    };
    let pos = match pos_header.and_then(Ordinal::parse) {
        Some(o) => o.key(),
        None => {
            let s = &v["source"];
            match (s["file"].as_str(), s["pos"].as_u64()) {
                (Some(file), Some(pos)) => Ordinal {
                    file_seq: file_seq(file),
                    pos,
                    row: s["row"].as_u64().unwrap_or(0),
                    kind: Kind::Change,
                }
                .key(),
                _ => return bad("no position: neither a jobs.cdc.pos header nor source.file/pos"),
            }
        }
    };
    Parsed::Change(Change {
        table: table.to_string(),
        key,
        pos,
        doc,
    })
}

/// The newest change of each row in a batch (the sinks write each row once per batch).
pub fn reduce(changes: Vec<Change>) -> Vec<Change> {
    let mut newest: HashMap<(String, String), Change> = HashMap::new();
    for c in changes {
        match newest.get(&(c.table.clone(), c.key.clone())) {
            Some(old) if old.pos >= c.pos => {}
            _ => {
                newest.insert((c.table.clone(), c.key.clone()), c);
            }
        }
    }
    let mut out: Vec<Change> = newest.into_values().collect();
    out.sort_by(|a, b| a.pos.cmp(&b.pos));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, pos: &str, doc: Option<&str>) -> Change {
        Change {
            table: "products".into(),
            key: key.into(),
            pos: pos.into(),
            doc: doc.map(String::from),
        }
    }

    #[test]
    fn debezium_messages_become_document_changes() {
        let v = br#"{"before":null,"after":{"id":7,"name":"x"},"op":"c","source":{"file":"mariadb-bin.000002","pos":90,"row":1}}"#;
        let Parsed::Change(c) = parse("products", Some(br#"{"id":7}"#), Some(v), None) else {
            panic!("not a change")
        };
        assert_eq!(c.key, "7");
        assert_eq!(c.doc.as_deref(), Some(r#"{"id":7,"name":"x"}"#));
        assert_eq!(c.pos, "0000000002.000000000000090.000000001.0");
        let d = br#"{"before":{"id":7},"after":null,"op":"d"}"#;
        let hdr = "0000000002.000000000000100.000000000.0";
        assert_eq!(
            parse("products", Some(br#"{"id":7}"#), Some(d), Some(hdr)),
            Parsed::Change(change("7", hdr, None))
        );
        assert_eq!(
            parse("products", Some(b"{}"), None, None),
            Parsed::Tombstone
        );
        let composite = serde_json::json!({"b": "x:y", "a": 1});
        assert_eq!(key_text(&composite).as_deref(), Some(r#"[1,"x:y"]"#));
        for (k, v) in [
            (&br#"{"id":1}"#[..], &b"not json"[..]),
            (br#"{"id":1}"#, br#"{"op":"x"}"#),
            (b"7", br#"{"op":"d"}"#),
            (br#"{"id":1}"#, br#"{"op":"d"}"#),
        ] {
            assert!(matches!(
                parse("products", Some(k), Some(v), None),
                Parsed::Bad(_)
            ));
        }
    }

    #[test]
    fn a_batch_keeps_the_newest_change_per_row() {
        let out = reduce(vec![
            change("1", "3", Some("b")),
            change("1", "2", Some("a")),
            change("2", "1", Some("x")),
            change("1", "4", None),
        ]);
        assert_eq!(out, [change("2", "1", Some("x")), change("1", "4", None)]);
    }
}
