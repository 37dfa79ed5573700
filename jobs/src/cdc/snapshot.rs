//! The initial snapshot: the captured tables as they were at one binlog position, read in
//! primary-key pages inside one `REPEATABLE READ` transaction.
//!
//! On MariaDB, `START TRANSACTION WITH CONSISTENT SNAPSHOT` and the status variables
//! `binlog_snapshot_file` / `binlog_snapshot_position` give the transaction's binlog
//! position without any lock. On MySQL the position is read under a brief `FLUSH TABLES WITH
//! READ LOCK` (released before the first row is read), as Debezium does.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};

use super::envelope::TableInfo;
use super::position::BinlogPos;
use crate::{Error, Result};

/// An open consistent-snapshot transaction.
pub struct Snapshot {
    conn: Conn,
    shown: String,
    /// The binlog position the snapshot sees the tables at.
    pub at: BinlogPos,
}

/// A page of rows, and the SQL literals of its last row's key (where the next page starts).
pub struct Page {
    pub rows: Vec<Vec<Value>>,
    pub last_key: Option<Vec<String>>,
}

fn err(shown: &str, what: &str) -> impl FnOnce(mysql_async::Error) -> Error {
    let (url, what) = (shown.to_string(), what.to_string());
    move |source| Error::Binlog {
        url,
        what,
        source: Box::new(source),
    }
}

impl Snapshot {
    /// Opens the transaction and reads its binlog position.
    pub async fn begin(opts: &Opts, shown: &str, mariadb: bool) -> Result<Snapshot> {
        let mut conn = Conn::new(opts.clone())
            .await
            .map_err(err(shown, "connect for the snapshot"))?;
        conn.query_drop(
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET time_zone = '+00:00'",
        )
        .await
        .map_err(err(shown, "set up the snapshot session"))?;
        let at = if mariadb {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(err(shown, "start the snapshot"))?;
            let rows: Vec<(String, String)> = conn
                .query("SHOW STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
                .await
                .map_err(err(shown, "read the snapshot's binlog position"))?;
            let get = |n: &str| {
                rows.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            BinlogPos {
                file: get("binlog_snapshot_file"),
                pos: get("binlog_snapshot_position").parse().unwrap_or(4),
            }
        } else {
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(err(shown, "FLUSH TABLES WITH READ LOCK (needs RELOAD)"))?;
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(err(shown, "start the snapshot"))?;
            let row: Option<Row> = conn
                .query_first("SHOW MASTER STATUS")
                .await
                .map_err(err(shown, "read the snapshot's binlog position"))?;
            conn.query_drop("UNLOCK TABLES")
                .await
                .map_err(err(shown, "UNLOCK TABLES"))?;
            let row = row.ok_or_else(|| {
                Error::Config(format!(
                    "cdc: {shown}: SHOW MASTER STATUS is empty: the binary log is off"
                ))
            })?;
            BinlogPos {
                file: row.get::<String, _>(0).unwrap_or_default(),
                pos: row.get::<u64, _>(1).unwrap_or(4),
            }
        };
        if at.file.is_empty() {
            return Err(Error::Config(format!(
                "cdc: {shown}: the server gave no binlog position for the snapshot (is log_bin on?)"
            )));
        }
        Ok(Snapshot {
            conn,
            shown: shown.to_string(),
            at,
        })
    }

    /// Up to `limit` rows of `table` after the key `after` (SQL literals), in key order.
    pub async fn page(
        &mut self,
        table: &TableInfo,
        after: Option<&[String]>,
        limit: usize,
    ) -> Result<Page> {
        let quote = |s: &str| format!("`{}`", s.replace('`', "``"));
        let keys: Vec<String> = table
            .key
            .iter()
            .map(|&i| quote(&table.columns[i].name))
            .collect();
        let cols: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            cols.join(", "),
            quote(&table.db),
            quote(&table.name)
        );
        if let Some(after) = after {
            sql.push_str(&format!(
                " WHERE ({}) > ({})",
                keys.join(", "),
                after.join(", ")
            ));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", keys.join(", ")));
        // The binary protocol: typed values (dates as dates, integers as integers).
        let rows: Vec<Row> = self.conn.exec(sql, ()).await.map_err(err(
            &self.shown,
            &format!("read {}.{}", table.db, table.name),
        ))?;
        let rows: Vec<Vec<Value>> = rows.into_iter().map(Row::unwrap).collect();
        let last_key = rows
            .last()
            .map(|r| table.key.iter().map(|&i| r[i].as_sql(false)).collect());
        Ok(Page { rows, last_key })
    }

    /// Ends the transaction.
    pub async fn finish(mut self) -> Result<()> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(err(&self.shown, "end the snapshot"))?;
        let _ = self.conn.disconnect().await;
        Ok(())
    }
}
