//! `jobs generate --follow`: live orders at the current time, price changes, and with
//! `--changes` stock updates and cancelled orders (the mix `jobs cdc` captures).

use std::time::Duration;

use rand::Rng;

use super::{CATALOGUE, Sale, Shop, Stats, apply_prices, insert_sales};
use crate::Result;
use crate::io::db::Db;
use crate::shutdown::Shutdown;

pub(super) async fn follow(
    db: &Db,
    shop: &mut Shop,
    (rate, changes): (f64, bool),
    start: i64,
    shutdown: &Shutdown,
    stats: &mut Stats,
) -> Result<()> {
    let tick = Duration::from_millis(200);
    let mut carry = 0.0;
    let mut since_price_change = 0u64;
    tracing::info!(message = "Inserting live orders; Ctrl-C to stop.", rate);
    while !shutdown.is_raised() {
        carry += rate * tick.as_secs_f64();
        let k = carry.floor() as u64;
        carry -= k as f64;
        let now = chrono::Utc::now().timestamp_micros();
        let sales: Vec<Sale> = (0..k).map(|_| shop.order(now, start)).collect();
        if !sales.is_empty() {
            insert_sales(db, &sales).await?;
            stats.sales += k;
            since_price_change += k;
            if changes {
                stock_and_cancellations(db, shop, &sales, stats).await?;
            }
        }
        if since_price_change >= 200 {
            since_price_change = 0;
            let p = shop.rng.random_range(0..CATALOGUE.len());
            let list = CATALOGUE[p].3;
            let factor: f64 = [0.9, 0.95, 1.0, 1.05][shop.rng.random_range(0..4)];
            let cents = ((list as f64 * factor).round() as i64) * 100;
            shop.products[p].prices.push((now, cents));
            let mut prices = shop.prices_at(now);
            prices.iter_mut().enumerate().for_each(|(i, c)| {
                if i != p {
                    *c = -1
                }
            });
            stats.price_changes += apply_prices(db, &prices).await?;
        }
        shutdown.sleep(tick).await;
    }
    Ok(())
}

/// The stock of what sold goes down; about one order in fifty is cancelled (its row deleted).
async fn stock_and_cancellations(
    db: &Db,
    shop: &mut Shop,
    sales: &[Sale],
    stats: &mut Stats,
) -> Result<()> {
    let mut sold: std::collections::BTreeMap<i64, i64> = Default::default();
    for s in sales {
        *sold.entry(s.product_id).or_default() += s.quantity;
    }
    for (product, n) in sold {
        let sql = format!(
            "UPDATE inventory SET stock_level = stock_level - {n} WHERE product_id = {product}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .map_err(db.err("update inventory"))?;
        stats.stock_updates += 1;
    }
    for _ in 0..sales.len() {
        if shop.rng.random_bool(0.02) {
            let newest: Option<i64> =
                sqlx::query_scalar("SELECT max(transaction_id) FROM product_sales")
                    .fetch_one(&db.pool)
                    .await
                    .map_err(db.err("find the newest order"))?;
            if let Some(id) = newest {
                let sql = format!("DELETE FROM product_sales WHERE transaction_id = {id}");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&db.pool)
                    .await
                    .map_err(db.err("cancel an order"))?;
                stats.cancelled += 1;
            }
        }
    }
    Ok(())
}
