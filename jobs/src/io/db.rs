//! The relational source: MySQL/MariaDB, PostgreSQL or SQLite behind one sqlx `AnyPool`.
//!
//! Each dialect renders the same logical projection (integers as BIGINT, money as exact
//! decimal text, timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` text), so the rest of the program
//! sees one row shape and parses it once, in `records`.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::{Error, Result};

/// Which SQL dialect the source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Postgres,
    Sqlite,
}

/// The microseconds-since-epoch expression SQLite compares cursors with. `data/sql/sqlite.sql`
/// repeats it verbatim in the cursor indexes (a unit test checks), so SQLite can use them.
pub fn sqlite_micros(col: &str) -> String {
    format!(
        "(unixepoch(substr({col}, 1, 19)) * 1000000 + CAST(substr(substr({col}, 21) || '000000', 1, 6) AS INTEGER))"
    )
}

impl Dialect {
    /// The dialect named by a URL's scheme.
    pub fn from_url(url: &str) -> Result<Dialect> {
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(Error::Config(format!(
                "database_url {:?}: unsupported scheme {scheme:?}; use sqlite://FILE, mysql://USER@HOST:PORT/DB or postgres://USER@HOST:PORT/DB",
                redact(url)
            ))),
        }
    }

    /// The DDL that `jobs init` runs.
    pub fn schema(self) -> &'static str {
        match self {
            Dialect::MySql => include_str!("../../../data/sql/mysql.sql"),
            Dialect::Postgres => include_str!("../../../data/sql/postgres.sql"),
            Dialect::Sqlite => include_str!("../../../data/sql/sqlite.sql"),
        }
    }

    /// The `n`th (1-based) bind placeholder.
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    /// A placeholder for a timestamp bound as canonical text.
    pub fn ts_param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}::timestamp"),
            _ => "?".into(),
        }
    }

    /// A placeholder for money bound as exact decimal text.
    pub fn money_param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}::numeric"),
            _ => "?".into(),
        }
    }

    /// A column as BIGINT.
    pub fn int(self, col: &str) -> String {
        match self {
            Dialect::MySql => format!("CAST({col} AS SIGNED)"),
            Dialect::Postgres => format!("{col}::bigint"),
            Dialect::Sqlite => format!("CAST({col} AS INTEGER)"),
        }
    }

    /// A column as text.
    pub fn text(self, col: &str) -> String {
        match self {
            Dialect::MySql => format!("CAST({col} AS CHAR)"),
            Dialect::Postgres => format!("{col}::text"),
            Dialect::Sqlite => format!("CAST({col} AS TEXT)"),
        }
    }

    /// A timestamp column as microseconds since the epoch (BIGINT).
    pub fn micros(self, col: &str) -> String {
        match self {
            Dialect::Sqlite => sqlite_micros(col),
            Dialect::MySql => {
                format!("CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {col}) AS SIGNED)")
            }
            Dialect::Postgres => format!("(EXTRACT(EPOCH FROM {col}) * 1000000)::bigint"),
        }
    }

    /// The tail of an upsert on `key` that overwrites `cols` with the new values.
    pub fn upsert_tail(self, key: &[&str], cols: &[&str]) -> String {
        match self {
            Dialect::MySql => format!(
                " ON DUPLICATE KEY UPDATE {}",
                cols.iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key.join(", "),
                cols.iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The DDL of the stream's output tables (dashboard and top-N), run by `jobs stream`.
    pub fn output_schema(self) -> &'static str {
        match self {
            Dialect::MySql => include_str!("../../../data/sql/outputs_mysql.sql"),
            Dialect::Postgres => include_str!("../../../data/sql/outputs_postgres.sql"),
            Dialect::Sqlite => include_str!("../../../data/sql/outputs_sqlite.sql"),
        }
    }

    /// `INSERT` that leaves an existing primary key alone.
    pub fn insert_ignore(self, table: &str, cols: &str) -> String {
        match self {
            Dialect::MySql => format!("INSERT IGNORE INTO {table} ({cols}) VALUES "),
            _ => format!("INSERT INTO {table} ({cols}) VALUES "),
        }
    }

    /// What follows the VALUES list of [`Dialect::insert_ignore`].
    pub fn insert_ignore_tail(self) -> &'static str {
        match self {
            Dialect::MySql => "",
            _ => " ON CONFLICT DO NOTHING",
        }
    }

    fn render(self, col: &Col) -> String {
        match (self, col) {
            (Dialect::MySql, Col::Int(c)) => format!("CAST({c} AS SIGNED)"),
            (Dialect::Postgres, Col::Int(c)) => format!("{c}::bigint"),
            (Dialect::Sqlite, Col::Int(c)) => format!("CAST({c} AS INTEGER)"),
            (Dialect::MySql, Col::Text(c)) => format!("CAST({c} AS CHAR)"),
            (Dialect::Postgres, Col::Text(c)) => format!("{c}::text"),
            (Dialect::Sqlite, Col::Text(c)) => format!("CAST({c} AS TEXT)"),
            (Dialect::MySql, Col::Money(c)) => format!("CAST({c} AS CHAR)"),
            (Dialect::Postgres, Col::Money(c)) => format!("{c}::text"),
            (Dialect::Sqlite, Col::Money(c)) => format!("CAST({c} AS TEXT)"),
            (Dialect::MySql, Col::Time(c)) => format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"),
            (Dialect::Postgres, Col::Time(c)) => {
                format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            (Dialect::Sqlite, Col::Time(c)) => format!("CAST({c} AS TEXT)"),
        }
    }

    /// The cursor's timestamp as the dialect compares it.
    fn cursor_expr(self, ts_col: &str) -> String {
        match self {
            Dialect::Sqlite => sqlite_micros(ts_col),
            _ => ts_col.to_string(),
        }
    }
}

/// One column of a logical projection.
#[derive(Debug, Clone, Copy)]
pub enum Col {
    /// An integer, read as i64.
    Int(&'static str),
    /// A string.
    Text(&'static str),
    /// An exact decimal, read as its text.
    Money(&'static str),
    /// A timestamp, read as canonical text.
    Time(&'static str),
}

impl Col {
    /// The column's name.
    pub fn name(&self) -> &'static str {
        match self {
            Col::Int(c) | Col::Text(c) | Col::Money(c) | Col::Time(c) => c,
        }
    }
}

/// A table read incrementally by the keyset cursor `(ts_col, id_col)`.
#[derive(Debug, Clone, Copy)]
pub struct CursorTable {
    pub table: &'static str,
    pub id_col: &'static str,
    pub ts_col: &'static str,
    pub cols: &'static [Col],
}

/// One value of a fetched row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    /// The value as JSON, for dead letters.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(i) => (*i).into(),
            Value::Text(s) => s.clone().into(),
        }
    }
}

/// Rows read past a cursor, each with its own cursor position.
pub type CursorRows = Vec<(Cursor, Vec<Value>)>;

/// A cursor position: rows strictly after `(ts_micros, id)` are new.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Cursor {
    pub ts_micros: i64,
    pub id: i64,
}

/// A connection pool to the source, with its dialect.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// The URL without credentials, for messages.
    pub name: String,
}

impl Db {
    /// Connects, creating a missing SQLite file. Fails within about 10 s when the server
    /// cannot be reached.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        let name = redact(url);
        let mut url = url.to_string();
        if dialect == Dialect::Sqlite && !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Timestamps are UTC throughout; SQLite waits for writers rather than failing.
                    let sql = match dialect {
                        Dialect::MySql => "SET time_zone = '+00:00'",
                        Dialect::Postgres => "SET TIME ZONE 'UTC'",
                        Dialect::Sqlite => "PRAGMA busy_timeout = 10000",
                    };
                    sqlx::raw_sql(sql).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| Error::Database {
                url: name.clone(),
                what: "connect".into(),
                source: Box::new(source),
            })?;
        if dialect == Dialect::Sqlite {
            // WAL lets ingest read while generate writes.
            sqlx::raw_sql("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| Error::Database {
                    url: name.clone(),
                    what: "enable WAL".into(),
                    source: Box::new(source),
                })?;
        }
        Ok(Db {
            pool,
            dialect,
            name,
        })
    }

    /// Wraps a sqlx error with this database's name and what we were doing.
    pub fn err(&self, what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        let what = what.into();
        move |source| Error::Database {
            url: self.name.clone(),
            what,
            source: Box::new(source),
        }
    }

    /// Creates the tables, indexes and triggers of `data/sql/` (idempotent).
    pub async fn init_schema(&self) -> Result<()> {
        sqlx::raw_sql(self.dialect.schema())
            .execute(&self.pool)
            .await
            .map_err(self.err("create schema"))?;
        Ok(())
    }

    /// Rows strictly after `after` in cursor order, at most `limit`.
    pub async fn fetch_after(
        &self,
        t: &CursorTable,
        after: Cursor,
        limit: usize,
    ) -> Result<CursorRows> {
        let d = self.dialect;
        let cur = d.cursor_expr(t.ts_col);
        let (p1, p2) = match d {
            Dialect::Sqlite => (d.param(1), d.param(2)),
            _ => (d.ts_param(1), d.ts_param(2)),
        };
        // The cursor itself comes back as two extra columns: in the dialect's own terms, so
        // that the position we store is exactly the one the database compares.
        let cursor_cols = match d {
            Dialect::Sqlite => format!("{cur}, {}", t.id_col),
            Dialect::MySql => format!(
                "CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {}) AS SIGNED), {}",
                t.ts_col, t.id_col
            ),
            Dialect::Postgres => format!(
                "(EXTRACT(EPOCH FROM {}) * 1000000)::bigint, {}::bigint",
                t.ts_col, t.id_col
            ),
        };
        let sql = format!(
            "SELECT {cols}, {cursor_cols} FROM {table} WHERE {cur} >= {p1} AND ({cur} > {p2} OR {id} > {p3}) ORDER BY {cur}, {id} LIMIT {p4}",
            cols = self.select_list(t),
            table = t.table,
            id = t.id_col,
            p3 = d.param(3),
            p4 = d.param(4),
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        let q = match d {
            Dialect::Sqlite => q.bind(after.ts_micros).bind(after.ts_micros),
            _ => {
                let ts = crate::records::format_micros(after.ts_micros);
                q.bind(ts.clone()).bind(ts)
            }
        };
        let rows = q
            .bind(after.id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(format!("read {}", t.table)))?;
        let n = t.cols.len();
        rows.iter()
            .map(|r| {
                let values = decode(r, t.cols, self)?;
                let ts_micros: i64 = r.try_get(n).map_err(self.err("decode cursor"))?;
                let id: i64 = r.try_get(n + 1).map_err(self.err("decode cursor"))?;
                Ok((Cursor { ts_micros, id }, values))
            })
            .collect()
    }

    /// Rows whose cursor timestamp is NULL (or, in SQLite, not a timestamp) with an id above
    /// `after_id`: they can never pass the keyset cursor, so ingest dead-letters them by id.
    pub async fn fetch_null_cursor(
        &self,
        t: &CursorTable,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let d = self.dialect;
        let sql = format!(
            "SELECT {cols} FROM {table} WHERE {cur} IS NULL AND {id} > {p1} ORDER BY {id} LIMIT {p2}",
            cols = self.select_list(t),
            table = t.table,
            cur = d.cursor_expr(t.ts_col),
            id = t.id_col,
            p1 = d.param(1),
            p2 = d.param(2),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(after_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(format!("read {} rows with a NULL {}", t.table, t.ts_col)))?;
        rows.iter().map(|r| decode(r, t.cols, self)).collect()
    }

    fn select_list(&self, t: &CursorTable) -> String {
        t.cols
            .iter()
            .map(|c| self.dialect.render(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn decode(row: &AnyRow, cols: &[Col], db: &Db) -> Result<Vec<Value>> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            let v = match c {
                Col::Int(_) => row.try_get::<Option<i64>, _>(i).map(|v| v.map(Value::Int)),
                _ => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map(Value::Text)),
            };
            v.map(|v| v.unwrap_or(Value::Null))
                .map_err(db.err(format!("decode column {}", c.name())))
        })
        .collect()
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_indexes_repeat_the_cursor_expression() {
        let ddl = Dialect::Sqlite.schema();
        for col in ["created_at", "last_updated"] {
            assert!(ddl.contains(&sqlite_micros(col)), "{col}");
        }
    }

    #[test]
    fn redacts_passwords_and_names_dialects() {
        assert_eq!(
            redact("mysql://root:secret@db:3306/shop"),
            "mysql://root:***@db:3306/shop"
        );
        assert_eq!(Dialect::from_url("mariadb://x/y").unwrap(), Dialect::MySql);
        let err = Dialect::from_url("oracle://x").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme"), "{err}");
    }
}
