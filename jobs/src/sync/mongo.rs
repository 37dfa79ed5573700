//! The MongoDB sink of `jobs sync` (cargo feature `mongodb`): one collection per source table
//! in the URL's database, a document per row with `_id` the key, `_pos` the source position
//! and `_deleted`. Compiled by scripts/test, never run against a server (none installs here).
//!
//! A change replaces the document only when the stored `_pos` is older (`replace_one` with
//! `{_id, _pos: {$lt: pos}}` and upsert): against a newer stored row the upsert collides on
//! `_id` (E11000), which is what "stale" looks like here.

use std::future::Future;
use std::pin::Pin;

use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::doc::Change;
use super::sinks::{Applied, DocSink};
use crate::io::db::redact;
use crate::{Error, Result};

pub struct MongoDocs {
    db: mongodb::Database,
    shown: String,
}

impl MongoDocs {
    pub async fn connect(url: &str) -> Result<MongoDocs> {
        let shown = redact(url);
        let err = |what: &str, e: mongodb::error::Error| Error::Sink {
            url: shown.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        };
        let client = mongodb::Client::with_uri_str(url)
            .await
            .map_err(|e| err("connect", e))?;
        let db = client.default_database().ok_or_else(|| {
            Error::Config(format!(
                "sync.mongodb_url {shown}: name the database, as in mongodb://127.0.0.1:27017/shop"
            ))
        })?;
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| err("ping", e))?;
        Ok(MongoDocs { db, shown })
    }

    async fn write(&mut self, changes: &[Change]) -> Result<Applied> {
        let mut out = Applied::default();
        for c in changes {
            let mut d: Document = match &c.doc {
                Some(json) => {
                    let v: serde_json::Value = serde_json::from_str(json)
                        .map_err(|e| self.failed("decode a document", &e))?;
                    mongodb::bson::to_document(&v)
                        .map_err(|e| self.failed("convert a document", &e))?
                }
                None => Document::new(),
            };
            d.insert("_id", c.key.clone());
            d.insert("_pos", c.pos.clone());
            d.insert("_deleted", c.doc.is_none());
            let coll = self.db.collection::<Document>(&c.table);
            let filter = doc! { "_id": &c.key, "_pos": { "$lt": &c.pos } };
            match coll.replace_one(filter, d).upsert(true).await {
                Ok(_) => out.written += 1,
                Err(e) if duplicate(&e) => out.stale += 1,
                Err(e) => return Err(self.failed(&format!("write {}", c.table), &e)),
            }
        }
        Ok(out)
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) -> Error {
        Error::Sink {
            url: self.shown.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        }
    }
}

fn duplicate(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

impl DocSink for MongoDocs {
    fn name(&self) -> &'static str {
        "mongodb"
    }

    fn apply<'a>(
        &'a mut self,
        changes: &'a [Change],
    ) -> Pin<Box<dyn Future<Output = Result<Applied>> + Send + 'a>> {
        Box::pin(self.write(changes))
    }
}
