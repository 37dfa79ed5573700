//! The stream's stores for fast reads: SQL tables (dashboard and top-N) and Redis sorted
//! sets (top-N). Both are written with upserts on the window key before the checkpoint that
//! covers them, so a replay after a crash rewrites the same values and adds nothing.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::business::TopList;
use super::window::ClosedWindow;
use crate::io::db::{Db, Dialect};
use crate::units::{format_cents, format_micros, rfc3339_secs};
use crate::{Error, Result};

/// Rows per multi-row upsert statement (well under every dialect's placeholder limit).
const CHUNK: usize = 500;

/// How a bound value is written into SQL.
#[derive(Clone, Copy)]
enum Param {
    Plain,
    /// A timestamp bound as canonical text.
    Time,
    /// Money bound as exact decimal text.
    Money,
}

/// `(p1, p2, ..), (..)`: the placeholders of `rows` rows of `cols`.
fn values(d: Dialect, rows: usize, cols: &[Param]) -> String {
    let mut out = String::new();
    let mut n = 0;
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for (i, c) in cols.iter().enumerate() {
            n += 1;
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&match c {
                Param::Plain => d.param(n),
                Param::Time => d.ts_param(n),
                Param::Money => d.money_param(n),
            });
        }
        out.push(')');
    }
    out
}

/// The SQL output tables of `data/sql/outputs_*.sql`.
pub struct SqlSink {
    db: Db,
}

/// A dashboard row: one label (country or card type) of one window from one partition.
pub struct LabelRow<'a> {
    pub spec: &'a str,
    pub row: &'a ClosedWindow,
    pub partition: i32,
}

impl SqlSink {
    /// Connects and creates the output tables if missing.
    pub async fn connect(url: &str) -> Result<SqlSink> {
        let db = Db::connect(url).await?;
        sqlx::raw_sql(db.dialect.output_schema())
            .execute(&db.pool)
            .await
            .map_err(db.err("create the stream's output tables"))?;
        Ok(SqlSink { db })
    }

    /// The database, without credentials.
    pub fn name(&self) -> &str {
        &self.db.name
    }

    /// Upserts dashboard rows into `stream_sales_by_country` or `stream_sales_by_card_type`
    /// (`label_col` = `country` / `card_type`) and top-N rows into `top_products`, in one
    /// transaction. Returns the rows written.
    pub async fn write(
        &self,
        countries: &[LabelRow<'_>],
        cards: &[LabelRow<'_>],
        top: &[TopList<'_>],
    ) -> Result<usize> {
        if countries.is_empty() && cards.is_empty() && top.is_empty() {
            return Ok(0);
        }
        let d = self.db.dialect;
        let mut tx = self
            .db
            .pool
            .begin()
            .await
            .map_err(self.db.err("begin the output transaction"))?;
        let mut n = 0;
        for (table, col, rows) in [
            ("stream_sales_by_country", "country", countries),
            ("stream_sales_by_card_type", "card_type", cards),
        ] {
            for chunk in rows.chunks(CHUNK) {
                use Param::{Money, Plain, Time};
                let mut sql = format!(
                    "INSERT INTO {table} (window_spec, window_start, window_end, {col}, source_partition, total_quantity_sold, total_revenue, order_count) VALUES "
                );
                sql.push_str(&values(
                    d,
                    chunk.len(),
                    &[Plain, Time, Time, Plain, Plain, Plain, Money, Plain],
                ));
                sql.push_str(&d.upsert_tail(
                    &["window_spec", "window_start", col, "source_partition"],
                    &[
                        "window_end",
                        "total_quantity_sold",
                        "total_revenue",
                        "order_count",
                    ],
                ));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for r in chunk {
                    q = q
                        .bind(r.spec.to_string())
                        .bind(format_micros(r.row.start))
                        .bind(format_micros(r.row.end))
                        .bind(r.row.label.to_string())
                        .bind(r.partition)
                        .bind(r.row.agg.quantity)
                        .bind(format_cents(r.row.agg.revenue_cents))
                        .bind(r.row.agg.orders);
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(self.db.err(format!("upsert into {table}")))?;
                n += chunk.len();
            }
        }
        let rows: Vec<(&TopList<'_>, &ClosedWindow)> = top
            .iter()
            .flat_map(|l| l.rows.iter().map(move |r| (l, *r)))
            .collect();
        for chunk in rows.chunks(CHUNK) {
            use Param::{Money, Plain, Time};
            let mut sql = "INSERT INTO top_products (metric, window_spec, window_start, window_end, product_id, product_name, brand, product_category, total_quantity_sold, total_revenue, order_count, source_partition) VALUES ".to_string();
            sql.push_str(&values(
                d,
                chunk.len(),
                &[
                    Plain, Plain, Time, Time, Plain, Plain, Plain, Plain, Plain, Money, Plain,
                    Plain,
                ],
            ));
            sql.push_str(&d.upsert_tail(
                &["metric", "window_spec", "window_start", "product_id"],
                &[
                    "window_end",
                    "product_name",
                    "brand",
                    "product_category",
                    "total_quantity_sold",
                    "total_revenue",
                    "order_count",
                    "source_partition",
                ],
            ));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (l, r) in chunk {
                q = q
                    .bind(l.metric.name().to_string())
                    .bind(l.spec.name.clone())
                    .bind(format_micros(l.start))
                    .bind(format_micros(l.end))
                    .bind(r.product_id())
                    .bind(r.info.name.clone())
                    .bind(r.info.brand.clone())
                    .bind(r.info.category.clone())
                    .bind(r.agg.quantity)
                    .bind(format_cents(r.agg.revenue_cents))
                    .bind(r.agg.orders)
                    .bind(l.partition);
            }
            q.execute(&mut *tx)
                .await
                .map_err(self.db.err("upsert into top_products"))?;
            n += chunk.len();
        }
        tx.commit()
            .await
            .map_err(self.db.err("commit the output transaction"))?;
        Ok(n)
    }
}

/// Top-N sorted sets in Redis. Keys (`<p>` = `jobs:<group id>`):
/// - `<p>:top:<metric>:<window>:<window_start RFC 3339>`: ZSET, member = product id, score =
///   quantity or revenue; `ZRANGE key 0 9 REV WITHSCORES` is the window's top 10;
/// - `<p>:top:<metric>:<window>:windows`: ZSET of those window starts, score = epoch seconds;
///   `ZRANGE key 0 0 REV` is the newest;
/// - `<p>:products`: HASH product id -> `{"name","brand","category"}` JSON.
///
/// Window keys expire after `redis_ttl`.
pub struct RedisSink {
    client: redis::Client,
    /// The connection, opened again after a failure (a multiplexed connection does not
    /// reconnect by itself).
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    url: String,
    prefix: String,
    ttl_secs: i64,
}

impl RedisSink {
    /// Connects (within 10 s) and checks with a PING.
    pub async fn connect(url: &str, group: &str, ttl: Duration) -> Result<RedisSink> {
        let shown = crate::io::db::redact(url);
        let client = redis::Client::open(url).map_err(|source| Error::Redis {
            url: shown.clone(),
            what: "parse the URL".into(),
            source,
        })?;
        let sink = RedisSink {
            client,
            conn: tokio::sync::Mutex::new(None),
            url: shown,
            prefix: format!("jobs:{group}"),
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1),
        };
        let mut conn = sink.open().await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(sink.err("PING"))?;
        *sink.conn.lock().await = Some(conn);
        Ok(sink)
    }

    fn err(&self, what: &str) -> impl FnOnce(redis::RedisError) -> Error + '_ {
        let what = what.to_string();
        move |source| Error::Redis {
            url: self.url.clone(),
            what,
            source,
        }
    }

    /// A new connection, within 10 s.
    async fn open(&self) -> Result<MultiplexedConnection> {
        match tokio::time::timeout(
            Duration::from_secs(10),
            self.client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(r) => r.map_err(self.err("connect")),
            Err(_) => Err(self.err("connect")(redis::RedisError::from(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 10 s"),
            ))),
        }
    }

    /// Writes the lists (idempotent: ZADD of the same members and scores). Returns the
    /// number of commands sent.
    pub async fn write_top(&self, lists: &[TopList<'_>]) -> Result<usize> {
        if lists.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        let mut n = 0;
        for l in lists {
            if l.rows.is_empty() {
                continue;
            }
            let base = format!("{}:top:{}:{}", self.prefix, l.metric.name(), l.spec.name);
            let start = rfc3339_secs(l.start);
            let key = format!("{base}:{start}");
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&key);
            for r in &l.rows {
                let score = match l.metric {
                    super::top::Metric::Quantity => r.agg.quantity.to_string(),
                    super::top::Metric::Revenue => format_cents(r.agg.revenue_cents),
                };
                zadd.arg(score).arg(r.product_id());
            }
            pipe.add_command(zadd).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(self.ttl_secs).ignore();
            let index = format!("{base}:windows");
            pipe.cmd("ZADD")
                .arg(&index)
                .arg(l.start.div_euclid(1_000_000))
                .arg(&start)
                .ignore();
            pipe.cmd("EXPIRE").arg(&index).arg(self.ttl_secs).ignore();
            // The index outlives its windows' keys: drop the starts whose keys expired.
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&index)
                .arg("-inf")
                .arg(format!(
                    "({}",
                    l.start.div_euclid(1_000_000) - self.ttl_secs
                ))
                .ignore();
            let mut hset = redis::cmd("HSET");
            hset.arg(format!("{}:products", self.prefix));
            for r in &l.rows {
                let v = serde_json::json!({
                    "name": r.info.name, "brand": r.info.brand, "category": r.info.category
                });
                hset.arg(r.product_id()).arg(v.to_string());
            }
            pipe.add_command(hset).ignore();
            n += 6;
        }
        // One attempt: the caller retries (`io::retry`); a failed connection is dropped so the
        // next attempt opens a new one.
        let mut guard = self.conn.lock().await;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => self.open().await?,
        };
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(self.err("write the top-N sorted sets"))?;
        *guard = Some(conn);
        Ok(n)
    }
}
