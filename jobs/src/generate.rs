//! `jobs generate`: a believable electronics shop in the source database.
//!
//! A catalogue of laptops, smartphones, tablets and accessories; customers in segments and
//! countries with their card types; orders with a daily curve (evening peak), a weekly one
//! (weekends busier), per-product popularity, trend and price changes with a demand response
//! (so a forecast has signal), some guest checkouts (no customer id), and inventory.
//! Deterministic for a given `--seed` and `--until`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::config::Config;
use crate::io::db::{Db, Dialect};
use crate::shutdown::Shutdown;
use crate::units::{format_cents, format_micros};

mod live;
mod shop;
use live::follow;
pub use shop::{CATALOGUE, Sale, Shop};
use shop::{DAY_MICROS, FIRST, LAST, SEGMENTS};

/// What to generate.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Days of history to back-fill, ending at `until`.
    pub days: u32,
    /// Orders in the back-fill; default 1500 per day.
    pub orders: Option<u64>,
    /// After the back-fill, keep inserting this many orders per second at the current time.
    pub follow_rate: Option<f64>,
    /// Skip the back-fill (with `follow_rate`: only live orders).
    pub no_backfill: bool,
    /// Random seed.
    pub seed: u64,
    /// End of the back-fill, microseconds since the epoch; default now.
    pub until_micros: Option<i64>,
    /// Number of customers.
    pub customers: u32,
    /// With `follow_rate`: also lower the stock of what sells and cancel (delete) about one
    /// order in fifty a moment later: the insert, update and delete mix `jobs cdc` captures.
    pub changes: bool,
}

/// What one run inserted.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub sales: u64,
    pub price_changes: u64,
    /// With `changes`: stock updates and cancelled (deleted) orders.
    pub stock_updates: u64,
    pub cancelled: u64,
    pub seconds: f64,
}

/// Inserts the shop into the database: catalogue, customers, inventory, back-fill, and live
/// orders while `follow_rate` is set, until `shutdown`.
pub async fn run(cfg: &Config, opts: &RunOptions, shutdown: &Shutdown) -> Result<Stats> {
    let db = Db::connect(&cfg.database_url).await?;
    db.init_schema().await?;
    let started = Instant::now();
    let end = opts
        .until_micros
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    let start = end - i64::from(opts.days.max(1)) * DAY_MICROS;
    let mut shop = Shop::new(opts.seed, opts.customers.max(1), start, end);
    let mut stats = Stats::default();
    insert_reference_data(&db, &shop, end).await?;
    if !opts.no_backfill {
        let n = opts.orders.unwrap_or(1500 * u64::from(opts.days.max(1)));
        let sales = shop.backfill(start, end, n);
        for chunk in sales.chunks(5_000) {
            insert_sales(&db, chunk).await?;
            stats.sales += chunk.len() as u64;
        }
        stats.price_changes += apply_prices(&db, &shop.prices_at(end)).await?;
        tracing::info!(message = "Back-fill inserted.", sales = stats.sales, days = opts.days, database = %db.name);
    }
    if let Some(rate) = opts.follow_rate {
        follow(
            &db,
            &mut shop,
            (rate, opts.changes),
            start,
            shutdown,
            &mut stats,
        )
        .await?;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Catalogue, customers and inventory; rows that exist are left alone.
async fn insert_reference_data(db: &Db, shop: &Shop, at: i64) -> Result<()> {
    let d = db.dialect;
    let mut tx = db.pool.begin().await.map_err(db.err("begin"))?;
    let sql = values_sql(
        d,
        "products",
        "id, name, category, brand, price",
        &[P::Int, P::Text, P::Text, P::Text, P::Money],
        CATALOGUE.len(),
        true,
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
    for (i, (name, cat, brand, list)) in CATALOGUE.iter().enumerate() {
        q = q
            .bind(i as i64 + 1)
            .bind(*name)
            .bind(*cat)
            .bind(*brand)
            .bind(format_cents(list * 100));
    }
    q.execute(&mut *tx)
        .await
        .map_err(db.err("insert products"))?;

    // Inventory: most products comfortably stocked, a few close to the low-stock threshold.
    let mut rng = ChaCha8Rng::seed_from_u64(0x1f7e_u64 ^ shop.customers.len() as u64);
    let sql = values_sql(
        d,
        "inventory",
        "product_id, product_name, brand, stock_level, updated_at",
        &[P::Int, P::Text, P::Text, P::Int, P::Time],
        CATALOGUE.len(),
        true,
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
    for (i, (name, _, brand, _)) in CATALOGUE.iter().enumerate() {
        let stock: i64 = if i % 9 == 4 {
            rng.random_range(8..25)
        } else {
            rng.random_range(60..600)
        };
        q = q
            .bind(i as i64 + 1)
            .bind(*name)
            .bind(*brand)
            .bind(stock)
            .bind(format_micros(at));
    }
    q.execute(&mut *tx)
        .await
        .map_err(db.err("insert inventory"))?;

    for chunk in shop.customers.chunks(1000) {
        let sql = values_sql(
            d,
            "customer_data",
            "customer_id, customer_name, customer_segment",
            &[P::Int, P::Text, P::Text],
            chunk.len(),
            true,
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for c in chunk {
            let name = format!(
                "{} {}",
                FIRST[(c.id as usize * 7) % FIRST.len()],
                LAST[(c.id as usize * 13 + c.id as usize / FIRST.len()) % LAST.len()]
            );
            q = q.bind(c.id).bind(name).bind(SEGMENTS[c.segment].0);
        }
        q.execute(&mut *tx)
            .await
            .map_err(db.err("insert customers"))?;
    }
    tx.commit().await.map_err(db.err("commit reference data"))?;
    Ok(())
}

/// Sets each product's price where it differs (cents < 0 means leave alone); the database
/// moves `last_updated`, so ingest publishes the change. Returns the rows changed.
async fn apply_prices(db: &Db, cents: &[i64]) -> Result<u64> {
    let d = db.dialect;
    let sql = format!(
        "UPDATE products SET price = {} WHERE id = {} AND (price IS NULL OR price <> {})",
        d.money_param(1),
        d.param(2),
        d.money_param(3)
    );
    let mut changed = 0;
    for (i, c) in cents.iter().enumerate() {
        if *c < 0 {
            continue;
        }
        let text = format_cents(*c);
        let r = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(text.clone())
            .bind(i as i64 + 1)
            .bind(text)
            .execute(&db.pool)
            .await
            .map_err(db.err("update product price"))?;
        changed += r.rows_affected();
    }
    Ok(changed)
}

/// Inserts sales in multi-row statements within one transaction.
pub async fn insert_sales(db: &Db, sales: &[Sale]) -> Result<()> {
    const COLS: &str = "product_id, product_name, product_category, brand, quantity_sold, price_per_unit, transaction_date, customer_id, country, card_type";
    const KINDS: &[P] = &[
        P::Int,
        P::Text,
        P::Text,
        P::Text,
        P::Int,
        P::Money,
        P::Time,
        P::Int,
        P::Text,
        P::Text,
    ];
    let mut tx = db.pool.begin().await.map_err(db.err("begin"))?;
    for chunk in sales.chunks(1000) {
        let sql = values_sql(db.dialect, "product_sales", COLS, KINDS, chunk.len(), false);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for s in chunk {
            q = q
                .bind(s.product_id)
                .bind(s.name)
                .bind(s.category)
                .bind(s.brand)
                .bind(s.quantity)
                .bind(format_cents(s.price_cents))
                .bind(format_micros(s.at))
                .bind(s.customer)
                .bind(s.country.clone())
                .bind(s.card.clone());
        }
        q.execute(&mut *tx)
            .await
            .map_err(db.err("insert product_sales"))?;
    }
    tx.commit().await.map_err(db.err("commit product_sales"))?;
    Ok(())
}

/// How a bound parameter is typed in SQL.
#[derive(Clone, Copy)]
enum P {
    Int,
    Text,
    Money,
    Time,
}

/// `INSERT [IGNORE] INTO table (cols) VALUES (...), (...)` with `rows` rows of placeholders.
fn values_sql(
    d: Dialect,
    table: &str,
    cols: &str,
    kinds: &[P],
    rows: usize,
    ignore: bool,
) -> String {
    let mut sql = if ignore {
        d.insert_ignore(table, cols)
    } else {
        format!("INSERT INTO {table} ({cols}) VALUES ")
    };
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (i, k) in kinds.iter().enumerate() {
            n += 1;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&match k {
                P::Int | P::Text => d.param(n),
                P::Money => d.money_param(n),
                P::Time => d.ts_param(n),
            });
        }
        sql.push(')');
    }
    if ignore {
        sql.push_str(d.insert_ignore_tail());
    }
    sql
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Timelike};

    use super::*;

    const END: i64 = 1_763_683_200_000_000; // 2025-11-21T00:00:00Z

    #[test]
    fn backfill_is_deterministic_and_exact_in_count() {
        let start = END - 28 * DAY_MICROS;
        let a = Shop::new(7, 200, start, END).backfill(start, END, 10_000);
        let b = Shop::new(7, 200, start, END).backfill(start, END, 10_000);
        assert_eq!(a.len(), 10_000);
        assert!(a.iter().zip(&b).all(|(x, y)| x.at == y.at
            && x.product_id == y.product_id
            && x.quantity == y.quantity));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "time order");
        assert!(
            a.iter()
                .all(|s| s.at >= start && s.at < END && s.quantity >= 1)
        );
        let guests = a.iter().filter(|s| s.customer.is_none()).count();
        assert!(
            (100..600).contains(&guests),
            "about 3% guests, got {guests}"
        );
    }

    #[test]
    fn volume_follows_the_daily_and_weekly_curves() {
        let start = END - 28 * DAY_MICROS;
        let sales = Shop::new(1, 500, start, END).backfill(start, END, 50_000);
        let by_hour = |h: u32| {
            sales
                .iter()
                .filter(|s| {
                    chrono::DateTime::from_timestamp_micros(s.at)
                        .unwrap()
                        .hour()
                        == h
                })
                .count()
        };
        assert!(by_hour(20) > 5 * by_hour(3), "evening peak over the night");
        let weekday = |d: u32| {
            sales
                .iter()
                .filter(|s| {
                    chrono::DateTime::from_timestamp_micros(s.at)
                        .unwrap()
                        .weekday()
                        .num_days_from_monday()
                        == d
                })
                .count()
        };
        assert!(weekday(5) > weekday(1), "Saturday busier than Tuesday");
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        assert_eq!(
            values_sql(Dialect::Postgres, "t", "a, b", &[P::Int, P::Time], 2, true),
            "INSERT INTO t (a, b) VALUES ($1, $2::timestamp), ($3, $4::timestamp) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            values_sql(Dialect::MySql, "t", "a", &[P::Money], 2, true),
            "INSERT IGNORE INTO t (a) VALUES (?), (?)"
        );
    }
}
