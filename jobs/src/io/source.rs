//! The ingest read path: a source table read in keyset order through its dialect's own sqlx
//! driver, each row decoded in place.
//!
//! Every dialect renders the same logical projection (integers as BIGINT, money as exact
//! decimal text, timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` text) followed by the cursor
//! `(micros, id)` as the database itself compares it, so `records` parses one row shape. Rows
//! stay in the driver's buffers: a text value is a `&str` into them, not a copy (the `Any`
//! driver that the rest of the program uses copies every value twice, which made it most of
//! ingest's cost).

use sqlx::mysql::{MySql, MySqlRow};
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{ColumnIndex, Decode, Pool, Row, Type};

use crate::io::db::{self, Dialect, sqlite_micros};
use crate::{Error, Result};

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

    fn render(&self, d: Dialect) -> String {
        match (d, self) {
            (_, Col::Int(c)) => d.int(c),
            (_, Col::Text(c) | Col::Money(c)) => d.text(c),
            (Dialect::MySql, Col::Time(c)) => format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"),
            (Dialect::Postgres, Col::Time(c)) => {
                format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            (Dialect::Sqlite, Col::Time(c)) => format!("CAST({c} AS TEXT)"),
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

/// One value of a fetched row, borrowed from the driver's buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    /// The driver could not decode the value (for example text that is not UTF-8 in SQLite);
    /// the row is dead-lettered with this reason.
    Undecodable(String),
}

impl Value<'_> {
    /// The value as JSON, for dead letters.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(i) => (*i).into(),
            Value::Text(s) => (*s).into(),
            Value::Undecodable(why) => format!("<undecodable: {why}>").into(),
        }
    }
}

/// Rows of one read, as the dialect's driver returned them.
#[derive(Debug)]
pub enum Rows {
    MySql(Vec<MySqlRow>),
    Postgres(Vec<PgRow>),
    Sqlite(Vec<SqliteRow>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::MySql(r) => r.len(),
            Rows::Postgres(r) => r.len(),
            Rows::Sqlite(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The projected values of row `r` (`cols` as the read rendered them), into `out`.
    pub fn values<'a>(&'a self, r: usize, cols: &[Col], out: &mut Vec<Value<'a>>) {
        out.clear();
        match self {
            Rows::MySql(rows) => read_values(&rows[r], cols, out),
            Rows::Postgres(rows) => read_values(&rows[r], cols, out),
            Rows::Sqlite(rows) => read_values(&rows[r], cols, out),
        }
    }

    /// The cursor of row `r` of a keyset read: the two columns after the `n` projected ones.
    pub fn cursor(&self, r: usize, n: usize) -> std::result::Result<Cursor, sqlx::Error> {
        match self {
            Rows::MySql(rows) => read_cursor(&rows[r], n),
            Rows::Postgres(rows) => read_cursor(&rows[r], n),
            Rows::Sqlite(rows) => read_cursor(&rows[r], n),
        }
    }
}

fn read_values<'r, R>(row: &'r R, cols: &[Col], out: &mut Vec<Value<'r>>)
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + Decode<'r, R::Database>,
    &'r str: Type<R::Database> + Decode<'r, R::Database>,
{
    for (i, c) in cols.iter().enumerate() {
        let v = match c {
            Col::Int(_) => row
                .try_get::<Option<i64>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Int)),
            _ => row
                .try_get::<Option<&'r str>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Text)),
        };
        out.push(v.unwrap_or_else(|e| Value::Undecodable(e.to_string())));
    }
}

fn read_cursor<'r, R>(row: &'r R, n: usize) -> std::result::Result<Cursor, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + Decode<'r, R::Database>,
{
    Ok(Cursor {
        ts_micros: row.try_get(n)?,
        id: row.try_get(n + 1)?,
    })
}

#[derive(Debug, Clone)]
enum Pools {
    MySql(Pool<MySql>),
    Postgres(Pool<Postgres>),
    Sqlite(Pool<Sqlite>),
}

/// The source database, connected through its dialect's own driver.
#[derive(Debug, Clone)]
pub struct Source {
    pools: Pools,
    pub dialect: Dialect,
    /// The URL without credentials, for messages.
    pub name: String,
}

/// Runs one query on whichever pool, binding the same values.
macro_rules! fetch_all {
    ($pools:expr, $sql:expr, $($bind:expr),*) => {
        match $pools {
            Pools::MySql(p) => sqlx::query(sqlx::AssertSqlSafe($sql))$(.bind($bind))*.fetch_all(p).await.map(Rows::MySql),
            Pools::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe($sql))$(.bind($bind))*.fetch_all(p).await.map(Rows::Postgres),
            Pools::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe($sql))$(.bind($bind))*.fetch_all(p).await.map(Rows::Sqlite),
        }
    };
}

impl Source {
    /// Connects (at most two connections: one read runs while the previous batch is sent).
    /// Fails within about 10 s when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Source> {
        let dialect = Dialect::from_url(url)?;
        let name = db::redact(url);
        let url = db::with_sqlite_defaults(dialect, url);
        let err = |source| Error::Database {
            url: name.clone(),
            what: "connect".into(),
            source: Box::new(source),
        };
        let pools = match dialect {
            Dialect::MySql => Pools::MySql(db::pool(&url, dialect, 2).await.map_err(err)?),
            Dialect::Postgres => Pools::Postgres(db::pool(&url, dialect, 2).await.map_err(err)?),
            Dialect::Sqlite => Pools::Sqlite(db::pool(&url, dialect, 2).await.map_err(err)?),
        };
        Ok(Source {
            pools,
            dialect,
            name,
        })
    }

    fn err(&self, what: String) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |source| Error::Database {
            url: self.name.clone(),
            what,
            source: Box::new(source),
        }
    }

    /// Rows strictly after `after` in cursor order, at most `limit`; each row's cursor is in
    /// the two columns after `t.cols` (see [`Rows::cursor`]).
    pub async fn fetch_after(&self, t: &CursorTable, after: Cursor, limit: usize) -> Result<Rows> {
        let d = self.dialect;
        let cur = cursor_expr(d, t.ts_col);
        let (p1, p2) = match d {
            Dialect::Sqlite => (d.param(1), d.param(2)),
            _ => (d.ts_param(1), d.ts_param(2)),
        };
        // The cursor comes back in the dialect's own terms, so that the position we store is
        // exactly the one the database compares.
        let cursor_cols = format!("{}, {}", d.micros(t.ts_col), d.int(t.id_col));
        let sql = format!(
            "SELECT {cols}, {cursor_cols} FROM {table} WHERE {cur} >= {p1} AND ({cur} > {p2} OR {id} > {p3}) ORDER BY {cur}, {id} LIMIT {p4}",
            cols = select_list(d, t),
            table = t.table,
            id = t.id_col,
            p3 = d.param(3),
            p4 = d.param(4),
        );
        let limit = limit as i64;
        let rows = match d {
            Dialect::Sqlite => {
                let ts = after.ts_micros;
                fetch_all!(&self.pools, sql.as_str(), ts, ts, after.id, limit)
            }
            _ => {
                let ts = crate::records::format_micros(after.ts_micros);
                fetch_all!(&self.pools, sql.as_str(), &ts, &ts, after.id, limit)
            }
        };
        rows.map_err(self.err(format!("read {}", t.table)))
    }

    /// Rows whose cursor timestamp is NULL (or, in SQLite, not a timestamp) with an id above
    /// `after_id`: they can never pass the keyset cursor, so ingest dead-letters them by id.
    /// The rows carry no cursor columns.
    pub async fn fetch_null_cursor(
        &self,
        t: &CursorTable,
        after_id: i64,
        limit: usize,
    ) -> Result<Rows> {
        let d = self.dialect;
        let sql = format!(
            "SELECT {cols} FROM {table} WHERE {cur} IS NULL AND {id} > {p1} ORDER BY {id} LIMIT {p2}",
            cols = select_list(d, t),
            table = t.table,
            cur = cursor_expr(d, t.ts_col),
            id = t.id_col,
            p1 = d.param(1),
            p2 = d.param(2),
        );
        let limit = limit as i64;
        fetch_all!(&self.pools, sql.as_str(), after_id, limit)
            .map_err(self.err(format!("read {} rows with a NULL {}", t.table, t.ts_col)))
    }
}

fn select_list(d: Dialect, t: &CursorTable) -> String {
    t.cols
        .iter()
        .map(|c| c.render(d))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cursor's timestamp as the dialect compares it (SQLite stores text, compared as micros
/// through the expression its cursor indexes repeat).
fn cursor_expr(d: Dialect, ts_col: &str) -> String {
    match d {
        Dialect::Sqlite => sqlite_micros(ts_col),
        _ => ts_col.to_string(),
    }
}
