//! The ingest read path: a source table read in keyset order through its dialect's own sqlx
//! driver, each row decoded in place.
//!
//! Every dialect reads the same logical projection (integers, money as exact decimal text,
//! timestamps as microseconds or canonical `YYYY-MM-DD HH:MM:SS.ffffff` text) followed by the
//! cursor `(timestamp, id)` exactly as the database compares it, so `records` sees one row
//! shape. MySQL/MariaDB columns are read in their native binary form (the server formatting
//! every value as text cost it a quarter of its CPU); PostgreSQL and SQLite render them in
//! SQL. Rows stay in the driver's buffers: a text value is a `&str` into them, not a copy (the
//! `Any` driver that the rest of the program uses copies every value twice, which made it most
//! of ingest's cost).

use chrono::NaiveDateTime;
use sqlx::mysql::{MySql, MySqlRow};
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Column, ColumnIndex, Decode, Pool, Row, Type, TypeInfo};

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
    /// A timestamp: microseconds where the driver reads it natively (MySQL/MariaDB), else
    /// canonical text.
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
            // Read natively, see `read_mysql_values`.
            (Dialect::MySql, c) => c.name().to_string(),
            (_, Col::Int(c)) => d.int(c),
            (_, Col::Text(c) | Col::Money(c)) => d.text(c),
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
    /// A timestamp read natively, as microseconds since the epoch.
    Micros(i64),
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
            Value::Micros(m) => crate::units::format_micros(*m).into(),
            Value::Undecodable(why) => format!("<undecodable: {why}>").into(),
        }
    }
}

/// A keyset read: the rows and each row's cursor, decoded on the reading task so that the
/// publishing thread does not decode them again.
#[derive(Debug)]
pub struct Keyset {
    pub rows: Rows,
    /// `cursors[r]` is row `r`'s position.
    pub cursors: Vec<Cursor>,
}

impl Keyset {
    fn new(rows: Rows, n: usize) -> std::result::Result<Keyset, sqlx::Error> {
        let cursors = (0..rows.len())
            .map(|r| rows.cursor(r, n))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Keyset { rows, cursors })
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
            Rows::MySql(rows) => read_mysql_values(&rows[r], cols, out),
            Rows::Postgres(rows) => read_values(&rows[r], cols, out),
            Rows::Sqlite(rows) => read_values(&rows[r], cols, out),
        }
    }

    /// The cursor of row `r` of a keyset read: the two columns after the `n` projected ones.
    fn cursor(&self, r: usize, n: usize) -> std::result::Result<Cursor, sqlx::Error> {
        match self {
            Rows::MySql(rows) => read_mysql_cursor(&rows[r], n),
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

/// MySQL/MariaDB values in their binary form: integers of any signed width, text, DECIMAL as
/// the exact digits the server sends, DATETIME/TIMESTAMP to microseconds.
fn read_mysql_values<'r>(row: &'r MySqlRow, cols: &[Col], out: &mut Vec<Value<'r>>) {
    for (i, c) in cols.iter().enumerate() {
        let v = match c {
            Col::Int(_) => row
                .try_get::<Option<i64>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Int)),
            // sqlx checks DECIMAL only against its big-number types; the server sends the
            // value as its decimal text, which is what we want.
            Col::Money(_) if row.column(i).type_info().name() == "DECIMAL" => row
                .try_get_unchecked::<Option<&'r str>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Text)),
            Col::Text(_) | Col::Money(_) => row
                .try_get::<Option<&'r str>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Text)),
            Col::Time(_) => row
                .try_get::<Option<NaiveDateTime>, _>(i)
                .map(|v| v.map_or(Value::Null, |t| Value::Micros(micros(t)))),
        };
        out.push(v.unwrap_or_else(|e| Value::Undecodable(e.to_string())));
    }
}

fn read_mysql_cursor(row: &MySqlRow, n: usize) -> std::result::Result<Cursor, sqlx::Error> {
    Ok(Cursor {
        ts_micros: micros(row.try_get(n)?),
        id: row.try_get(n + 1)?,
    })
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
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

/// Runs one query on a connection of whichever pool, binding the same values. On a
/// connection, not the pool: the pool's executor wraps the row stream in one more stream, a
/// measurable cost per row.
macro_rules! fetch_all {
    ($pools:expr, $sql:expr, $($bind:expr),*) => {
        match $pools {
            Pools::MySql(p) => async {
                let mut c = p.acquire().await?;
                sqlx::query(sqlx::AssertSqlSafe($sql))$(.bind($bind))*.fetch_all(&mut *c).await
            }.await.map(Rows::MySql),
            Pools::Postgres(p) => async {
                let mut c = p.acquire().await?;
                sqlx::query(sqlx::AssertSqlSafe($sql))$(.bind($bind))*.fetch_all(&mut *c).await
            }.await.map(Rows::Postgres),
            Pools::Sqlite(p) => async {
                let mut c = p.acquire().await?;
                sqlx::query(sqlx::AssertSqlSafe($sql))$(.bind($bind))*.fetch_all(&mut *c).await
            }.await.map(Rows::Sqlite),
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

    /// Rows strictly after `after` in cursor order, at most `limit`, with their cursors.
    pub async fn fetch_after(
        &self,
        t: &CursorTable,
        after: Cursor,
        limit: usize,
    ) -> Result<Keyset> {
        if let Some(rows) = self.fetch_after_by_id_range(t, after, limit).await? {
            return Ok(rows);
        }
        let d = self.dialect;
        let sql = format!(
            "SELECT {cols}, {cursor_cols} FROM {table} WHERE {after} ORDER BY {cur}, {id} LIMIT {p4}",
            cols = select_list(d, t),
            cursor_cols = cursor_cols(d, t),
            table = t.table,
            after = after_predicate(d, t, 1),
            cur = cursor_expr(d, t.ts_col),
            id = t.id_col,
            p4 = d.param(4),
        );
        let limit = limit as i64;
        let rows = match d {
            Dialect::Sqlite => {
                let ts = after.ts_micros;
                fetch_all!(&self.pools, sql.as_str(), ts, ts, after.id, limit)
            }
            _ => {
                let ts = crate::units::format_micros(after.ts_micros);
                fetch_all!(&self.pools, sql.as_str(), &ts, &ts, after.id, limit)
            }
        };
        let rows = rows.map_err(self.err(format!("read {}", t.table)))?;
        Keyset::new(rows, t.cols.len()).map_err(self.err("decode the cursor".into()))
    }

    /// The InnoDB way to read a keyset batch: the ids of the next `limit` rows come from the
    /// cursor index alone (it holds the primary key), then the rows themselves from one range
    /// of the clustered primary key, sorted here. Reading them through the cursor index
    /// instead costs one primary-key lookup per row, more than twice the server's CPU. The
    /// batch is exactly the `limit` smallest cursors after `after`: every one of them has an
    /// id in the range, and any other row of the range has a larger cursor.
    ///
    /// `None` when the ids are too scattered for a range read to pay off (a table whose
    /// timestamps move independently of its ids, such as one updated in place).
    async fn fetch_after_by_id_range(
        &self,
        t: &CursorTable,
        after: Cursor,
        limit: usize,
    ) -> Result<Option<Keyset>> {
        let Pools::MySql(pool) = &self.pools else {
            return Ok(None);
        };
        let d = self.dialect;
        let ts = crate::units::format_micros(after.ts_micros);
        let span_sql = format!(
            "SELECT CAST(COUNT(*) AS SIGNED), CAST(MIN({id}) AS SIGNED), CAST(MAX({id}) AS SIGNED) \
             FROM (SELECT {id} FROM {table} WHERE {after} ORDER BY {ts_col}, {id} LIMIT ?) k",
            id = t.id_col,
            table = t.table,
            after = after_predicate(d, t, 1),
            ts_col = t.ts_col,
        );
        let mut conn = pool
            .acquire()
            .await
            .map_err(self.err(format!("read the next ids of {}", t.table)))?;
        let (count, lo, hi): (i64, Option<i64>, Option<i64>) =
            sqlx::query_as(sqlx::AssertSqlSafe(span_sql))
                .bind(&ts)
                .bind(&ts)
                .bind(after.id)
                .bind(limit as i64)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.err(format!("read the next ids of {}", t.table)))?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Some(Keyset {
                rows: Rows::MySql(Vec::new()),
                cursors: Vec::new(),
            }));
        };
        // A range up to 4x the batch is still cheaper than a lookup per row.
        if hi.saturating_sub(lo) >= count.saturating_mul(4) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {cols}, {cursor_cols} FROM {table} WHERE {id} BETWEEN ? AND ? AND {after}",
            cols = select_list(d, t),
            cursor_cols = cursor_cols(d, t),
            table = t.table,
            id = t.id_col,
            after = after_predicate(d, t, 3),
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lo)
            .bind(hi)
            .bind(&ts)
            .bind(&ts)
            .bind(after.id)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.err(format!("read {}", t.table)))?;
        let n = t.cols.len();
        let mut keyed = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let c = read_mysql_cursor(r, n).map_err(|e| self.err("decode the cursor".into())(e))?;
            keyed.push((c, i));
        }
        // The primary key order is the cursor order whenever rows were inserted in time order.
        if !keyed.is_sorted() {
            keyed.sort_unstable();
            let mut slots: Vec<Option<MySqlRow>> = rows.into_iter().map(Some).collect();
            rows = keyed.iter().filter_map(|&(_, i)| slots[i].take()).collect();
        }
        rows.truncate(limit);
        keyed.truncate(limit);
        Ok(Some(Keyset {
            rows: Rows::MySql(rows),
            cursors: keyed.into_iter().map(|(c, _)| c).collect(),
        }))
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

/// The cursor columns `(micros, id)` in the dialect's own terms, so that the position we store
/// is exactly the one the database compares.
fn cursor_cols(d: Dialect, t: &CursorTable) -> String {
    match d {
        // Native DATETIME and integer, see `read_mysql_cursor`.
        Dialect::MySql => format!("{}, {}", t.ts_col, t.id_col),
        _ => format!("{}, {}", d.micros(t.ts_col), d.int(t.id_col)),
    }
}

/// `cursor > (ts, id)` with the three parameters from `first` on: ts, ts, id.
fn after_predicate(d: Dialect, t: &CursorTable, first: usize) -> String {
    let cur = cursor_expr(d, t.ts_col);
    let (p1, p2) = match d {
        Dialect::Sqlite => (d.param(first), d.param(first + 1)),
        _ => (d.ts_param(first), d.ts_param(first + 1)),
    };
    format!(
        "{cur} >= {p1} AND ({cur} > {p2} OR {id} > {p3})",
        id = t.id_col,
        p3 = d.param(first + 2)
    )
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
