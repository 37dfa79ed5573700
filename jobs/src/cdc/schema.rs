//! What `jobs cdc` asks the server before it reads: that it can be read as a replica (binary
//! log on, ROW format, full images, no compression, the privileges), where its binlog ends,
//! and the shape of each captured table (from `information_schema`, again after each DDL).
//! Every refusal is one line naming the server variable to set or the grant to run.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use super::convert::{Column, Mapping};
use super::envelope::TableInfo;
use super::position::BinlogPos;
use crate::{Error, Result};

/// A connection to the captured server, with the URL as it may be shown.
pub struct Server {
    pub conn: Conn,
    pub opts: Opts,
    pub shown: String,
    pub db: String,
    pub mariadb: bool,
}

/// `mysql://user@host:port/db` -> options, the URL without its password, the database.
pub fn parse_url(url: &str) -> Result<(Opts, String, String)> {
    let shown = crate::io::db::redact(url);
    let opts = Opts::from_url(url).map_err(|e| Error::Config(format!("cdc.url {shown}: {e}")))?;
    let db = opts
        .db_name()
        .map(str::to_string)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "cdc.url {shown}: name the database, as in mysql://root@127.0.0.1:3307/shop"
            ))
        })?;
    Ok((opts, shown, db))
}

impl Server {
    /// Connects and checks that the server can be captured.
    pub async fn connect(url: &str) -> Result<Server> {
        let (opts, shown, db) = parse_url(url)?;
        let conn = match Conn::new(opts.clone()).await {
            Ok(c) => c,
            Err(source) => {
                return Err(Error::Binlog {
                    what: format!(
                        "cannot connect to {}:{}",
                        opts.ip_or_hostname(),
                        opts.tcp_port()
                    ),
                    url: shown,
                    source: Box::new(source),
                });
            }
        };
        let mut s = Server {
            mariadb: conn.server_version().0 >= 10,
            conn,
            opts,
            shown,
            db,
        };
        s.check().await?;
        Ok(s)
    }

    /// A new connection after the old one failed.
    pub async fn reconnect(&mut self) -> Result<()> {
        let conn = Conn::new(self.opts.clone())
            .await
            .map_err(self.err("reconnect"))?;
        self.conn = conn;
        Ok(())
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> Error {
        let (url, what) = (self.shown.clone(), what.into());
        move |source| Error::Binlog {
            url,
            what,
            source: Box::new(source),
        }
    }

    fn refuse(&self, what: String) -> Error {
        Error::Config(format!("cdc: {}: {what}", self.shown))
    }

    /// The grant a capture user needs, for this server.
    pub fn grant(&self) -> String {
        let user = self.opts.user().unwrap_or("USER");
        let monitor = if self.mariadb {
            "BINLOG MONITOR"
        } else {
            "REPLICATION CLIENT"
        };
        format!("GRANT SELECT, RELOAD, REPLICATION SLAVE, {monitor} ON *.* TO '{user}'@'%'")
    }

    async fn variable(&mut self, name: &str) -> Result<Option<String>> {
        let row: Option<Row> = self
            .conn
            .query_first(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
            .await
            .map_err(self.err(format!("read @@{name}")))?;
        Ok(row.and_then(|r| r.get::<String, _>(1)))
    }

    async fn check(&mut self) -> Result<()> {
        let on = |v: &Option<String>| v.as_deref().is_some_and(|v| v == "ON" || v == "1");
        let log_bin = self.variable("log_bin").await?;
        if !on(&log_bin) {
            return Err(self.refuse(
                "the binary log is off: start the server with log_bin (e.g. --log-bin=mariadb-bin --binlog-format=ROW)".into(),
            ));
        }
        let format = self.variable("binlog_format").await?.unwrap_or_default();
        if !format.eq_ignore_ascii_case("ROW") {
            return Err(self.refuse(format!(
                "binlog_format is {format}: set binlog_format=ROW (SET GLOBAL binlog_format='ROW' and in the server's config)"
            )));
        }
        let image = self.variable("binlog_row_image").await?.unwrap_or_default();
        if !image.eq_ignore_ascii_case("FULL") {
            return Err(self.refuse(format!(
                "binlog_row_image is {image}: set binlog_row_image=FULL"
            )));
        }
        if on(&self.variable("log_bin_compress").await?) {
            return Err(self.refuse(
                "log_bin_compress is ON: compressed binlog events are not read; set log_bin_compress=OFF".into(),
            ));
        }
        self.head().await.map(|_| ())
    }

    /// The end of the server's binlog now.
    pub async fn head(&mut self) -> Result<BinlogPos> {
        let row: std::result::Result<Option<Row>, _> =
            self.conn.query_first("SHOW MASTER STATUS").await;
        match row {
            Ok(Some(r)) => Ok(BinlogPos {
                file: r.get::<String, _>(0).unwrap_or_default(),
                pos: r.get::<u64, _>(1).unwrap_or(4),
            }),
            Ok(None) => Err(self.refuse(
                "SHOW MASTER STATUS is empty: the binary log is off (start the server with log_bin)".into(),
            )),
            Err(mysql_async::Error::Server(e)) if e.code == 1227 || e.code == 1045 => {
                Err(self.refuse(format!(
                    "the user may not read the binlog ({}); run: {}",
                    e.message,
                    self.grant()
                )))
            }
            Err(e) => Err(self.err("SHOW MASTER STATUS")(e)),
        }
    }

    /// The binlog files the server still has.
    pub async fn files(&mut self) -> Result<Vec<String>> {
        let rows: Vec<Row> = self
            .conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(self.err("SHOW BINARY LOGS"))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.get::<String, _>(0))
            .collect())
    }

    /// The shape of `table`; refused when it does not exist or has no primary key.
    pub async fn table(&mut self, table: &str) -> Result<TableInfo> {
        let db = self.db.clone();
        let rows: Vec<Row> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 ORDER BY ORDINAL_POSITION",
                (&db, table),
            )
            .await
            .map_err(self.err(format!("read the columns of {db}.{table}")))?;
        if rows.is_empty() {
            return Err(self.refuse(format!(
                "cdc.tables: {db}.{table} does not exist (or the user may not see it)"
            )));
        }
        let columns: Vec<Column> = rows
            .into_iter()
            .map(|r| {
                let s = |i: usize| r.get::<Option<String>, _>(i).flatten().unwrap_or_default();
                let precision = r.get::<Option<u64>, _>(3).flatten().map(|p| p as u8);
                Column {
                    name: s(0),
                    mapping: Mapping::from_info_schema(
                        &s(1).to_ascii_lowercase(),
                        &s(2).to_ascii_lowercase(),
                        precision,
                    ),
                }
            })
            .collect();
        let keys: Vec<String> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY ORDINAL_POSITION",
                (&db, table),
            )
            .await
            .map_err(self.err(format!("read the primary key of {db}.{table}")))?;
        if keys.is_empty() {
            return Err(self.refuse(format!(
                "cdc.tables: {db}.{table} has no primary key; add one (ALTER TABLE {table} ADD PRIMARY KEY (...)) or leave it out of cdc.tables"
            )));
        }
        let key = keys
            .iter()
            .filter_map(|k| columns.iter().position(|c| c.name == *k))
            .collect();
        Ok(TableInfo {
            db,
            name: table.to_string(),
            columns,
            key,
        })
    }
}
