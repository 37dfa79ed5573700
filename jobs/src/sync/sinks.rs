//! Where `jobs sync` writes: Redis and PostgreSQL JSONB (tested), MongoDB (compiled with the
//! `mongodb` feature, not run against a server). Each applies a change only when its source
//! position is newer than the one stored with the row, in one atomic step per row, so that
//! replays, duplicates and redelivery never move a row backwards; a delete keeps the row's
//! position (Redis: in a hash; PostgreSQL: a row marked deleted), so an older create arriving
//! late cannot bring the row back.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::doc::Change;
use crate::io::db::{Dialect, redact};
use crate::{Error, Result};

/// Rows written and rows left because the sink held something newer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub written: u64,
    pub stale: u64,
}

/// A document store.
pub trait DocSink: Send {
    fn name(&self) -> &'static str;
    /// Applies the newest change of each row (one per row in `changes`); an empty
    /// `changes` writes nothing and succeeds.
    fn apply<'a>(
        &'a mut self,
        changes: &'a [Change],
    ) -> Pin<Box<dyn Future<Output = Result<Applied>> + Send + 'a>>;
}

/// The compare-and-set of one row: `KEYS[1]` the document, `KEYS[2]` the table's position
/// hash; `ARGV` the key, the position, the document (`""` to delete).
const REDIS_APPLY: &str = r"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and cur >= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[3]) end
return 1
";

/// Redis: the row's JSON at `<prefix><table>:<key>` (a string), its position in the hash
/// `<prefix>_cdc_pos:<table>`.
pub struct RedisDocs {
    url: String,
    prefix: String,
    shown: String,
    conn: Option<MultiplexedConnection>,
    sha: String,
}

impl RedisDocs {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisDocs> {
        let mut s = RedisDocs {
            url: url.to_string(),
            prefix: prefix.to_string(),
            shown: redact(url),
            conn: None,
            sha: String::new(),
        };
        s.conn().await?;
        Ok(s)
    }

    fn err(&self, what: &str) -> impl FnOnce(redis::RedisError) -> Error {
        let (url, what) = (self.shown.clone(), what.to_string());
        move |source| Error::Redis { url, what, source }
    }

    /// The connection, made again after a failure; the script loaded on it.
    async fn conn(&mut self) -> Result<MultiplexedConnection> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.url.as_str()).map_err(self.err("parse the URL"))?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| Error::Config(format!("redis {}: no answer within 10 s", self.shown)))?
        .map_err(self.err("connect"))?;
        self.sha = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(REDIS_APPLY)
            .query_async(&mut conn)
            .await
            .map_err(self.err("SCRIPT LOAD"))?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    async fn write(&mut self, changes: &[Change]) -> Result<Applied> {
        if changes.is_empty() {
            // An empty pipeline is an error to Redis ("empty command").
            return Ok(Applied::default());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for c in changes {
            pipe.cmd("EVALSHA")
                .arg(&self.sha)
                .arg(2)
                .arg(format!("{}{}:{}", self.prefix, c.table, c.key))
                .arg(format!("{}_cdc_pos:{}", self.prefix, c.table))
                .arg(&c.key)
                .arg(&c.pos)
                .arg(c.doc.as_deref().unwrap_or(""));
        }
        let done: std::result::Result<Vec<i64>, _> = pipe.query_async(&mut conn).await;
        match done {
            Ok(r) => {
                let written = r.iter().filter(|x| **x == 1).count() as u64;
                Ok(Applied {
                    written,
                    stale: r.len() as u64 - written,
                })
            }
            Err(e) => {
                self.conn = None;
                Err(self.err("apply changes")(e))
            }
        }
    }
}

impl DocSink for RedisDocs {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn apply<'a>(
        &'a mut self,
        changes: &'a [Change],
    ) -> Pin<Box<dyn Future<Output = Result<Applied>> + Send + 'a>> {
        Box::pin(self.write(changes))
    }
}

/// PostgreSQL: a table per source table in `schema`, `(id text primary key, doc jsonb,
/// source_pos text, deleted boolean, updated_at timestamptz)`.
pub struct PgDocs {
    pool: sqlx::PgPool,
    shown: String,
    schema: String,
    created: std::collections::HashSet<String>,
}

/// `"name"`, for a name already checked to be letters, digits, `_` and `$`.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl PgDocs {
    pub async fn connect(url: &str, schema: &str) -> Result<PgDocs> {
        let shown = redact(url);
        let pool = crate::io::db::pool::<sqlx::Postgres>(url, Dialect::Postgres, 2)
            .await
            .map_err(|source| Error::Database {
                url: shown.clone(),
                what: "connect".into(),
                source: Box::new(source),
            })?;
        let s = PgDocs {
            pool,
            shown,
            schema: schema.to_string(),
            created: Default::default(),
        };
        // A checked identifier, quoted.
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema));
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&s.pool)
            .await
            .map_err(s.err(format!("create schema {schema}")))?;
        Ok(s)
    }

    fn err(&self, what: String) -> impl FnOnce(sqlx::Error) -> Error {
        let url = self.shown.clone();
        move |source| Error::Database {
            url,
            what,
            source: Box::new(source),
        }
    }

    /// The document table of `table`, created if missing.
    pub async fn ensure(&mut self, table: &str) -> Result<String> {
        let name = format!("{}.{}", ident(&self.schema), ident(table));
        if self.created.contains(table) {
            return Ok(name);
        }
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {name} (
                 id text PRIMARY KEY,
                 doc jsonb,
                 source_pos text NOT NULL,
                 deleted boolean NOT NULL DEFAULT false,
                 updated_at timestamptz NOT NULL DEFAULT now()
             )"
        );
        // The schema and table names are checked identifiers, quoted.
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&self.pool)
            .await
            .map_err(self.err(format!("create {name}")))?;
        self.created.insert(table.to_string());
        Ok(name)
    }

    async fn write(&mut self, changes: &[Change]) -> Result<Applied> {
        let mut tables: Vec<&str> = changes.iter().map(|c| c.table.as_str()).collect();
        tables.sort();
        tables.dedup();
        let mut out = Applied::default();
        for t in tables {
            let name = self.ensure(t).await?;
            let rows: Vec<&Change> = changes.iter().filter(|c| c.table == t).collect();
            let ids: Vec<&str> = rows.iter().map(|c| c.key.as_str()).collect();
            // jsonb cannot hold U+0000: it is stored as U+FFFD (Redis keeps the original).
            let docs: Vec<Option<String>> = rows
                .iter()
                .map(|c| c.doc.as_ref().map(|d| d.replace("\\u0000", "\\ufffd")))
                .collect();
            let pos: Vec<&str> = rows.iter().map(|c| c.pos.as_str()).collect();
            let sql = format!(
                "INSERT INTO {name} AS t (id, doc, source_pos, deleted)
                 SELECT id, doc::jsonb, pos, doc IS NULL
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, doc, pos)
                 ON CONFLICT (id) DO UPDATE
                 SET doc = EXCLUDED.doc, source_pos = EXCLUDED.source_pos,
                     deleted = EXCLUDED.deleted, updated_at = now()
                 WHERE t.source_pos COLLATE \"C\" < EXCLUDED.source_pos COLLATE \"C\""
            );
            let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&ids)
                .bind(&docs)
                .bind(&pos)
                .execute(&self.pool)
                .await
                .map_err(self.err(format!("apply changes to {name}")))?;
            out.written += r.rows_affected();
            out.stale += rows.len() as u64 - r.rows_affected();
        }
        Ok(out)
    }
}

impl DocSink for PgDocs {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn apply<'a>(
        &'a mut self,
        changes: &'a [Change],
    ) -> Pin<Box<dyn Future<Output = Result<Applied>> + Send + 'a>> {
        Box::pin(self.write(changes))
    }
}
