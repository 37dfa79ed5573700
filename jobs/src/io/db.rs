//! The relational database: MySQL/MariaDB, PostgreSQL or SQLite behind one sqlx `AnyPool`,
//! and each dialect's SQL spelling (casts, placeholders, upserts) of the same statements.
//! Ingest's hot read path has its own typed pools, in `source`.

use std::time::Duration;

use sqlx::AnyPool;

use crate::{Error, Result};

/// The URL with any password replaced by `***` (the configuration's, in `formats`).
pub use formats::config::redact;

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
        // The schemes, and the error for any other, are the configuration's.
        formats::config::check_database_scheme(url)?;
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(Error::Internal(format!(
                "database scheme {scheme:?} passed the configuration's check but has no dialect"
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
        let url = with_sqlite_defaults(dialect, url);
        let pool = pool::<sqlx::Any>(&url, dialect, 4)
            .await
            .map_err(|source| Error::Database {
                url: name.clone(),
                what: "connect".into(),
                source: Box::new(source),
            })?;
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
}

/// A SQLite URL creates a missing file (`mode=rwc`); other URLs are returned as they are.
pub(crate) fn with_sqlite_defaults(dialect: Dialect, url: &str) -> String {
    let mut url = url.to_string();
    if dialect == Dialect::Sqlite && !url.contains("mode=") {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("mode=rwc");
    }
    url
}

/// A pool of at most `max` connections, each set up for UTC timestamps (and, in SQLite, to
/// wait for writers rather than fail); a SQLite database is switched to WAL, so that ingest
/// reads while generate writes.
pub(crate) async fn pool<DB: sqlx::Database>(
    url: &str,
    dialect: Dialect,
    max: u32,
) -> std::result::Result<sqlx::Pool<DB>, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'p> &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
{
    let setup = match dialect {
        Dialect::MySql => "SET time_zone = '+00:00'",
        Dialect::Postgres => "SET TIME ZONE 'UTC'",
        Dialect::Sqlite => "PRAGMA busy_timeout = 10000",
    };
    let pool = sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::raw_sql(setup).execute(conn).await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    if dialect == Dialect::Sqlite {
        sqlx::raw_sql("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
    }
    Ok(pool)
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
