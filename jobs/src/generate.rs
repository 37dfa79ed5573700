//! `jobs generate`: a believable electronics shop in the source database.
//!
//! A catalogue of laptops, smartphones, tablets and accessories; customers in segments and
//! countries with their card types; orders with a daily curve (evening peak), a weekly one
//! (weekends busier), per-product popularity, trend and price changes with a demand response
//! (so a forecast has signal), some guest checkouts (no customer id), and inventory.
//! Deterministic for a given `--seed` and `--until`.

use std::time::Instant;

use chrono::{Datelike, Timelike};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::config::Config;
use crate::io::db::{Db, Dialect};
use crate::shutdown::Shutdown;
use crate::units::{format_cents, format_micros};

mod live;
use live::follow;

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

/// (name, category, brand, list price in rupees), in catalogue order; ids are 1-based positions.
pub const CATALOGUE: &[(&str, &str, &str, i64)] = &[
    ("Dell Inspiron", "Laptop", "Dell", 50_000),
    ("Dell XPS 13", "Laptop", "Dell", 115_000),
    ("Apple MacBook Air M3", "Laptop", "Apple", 114_900),
    ("Apple MacBook Pro 14", "Laptop", "Apple", 169_900),
    ("Lenovo ThinkPad", "Laptop", "Lenovo", 65_000),
    ("Lenovo IdeaPad Slim 5", "Laptop", "Lenovo", 58_990),
    ("HP Pavilion 15", "Laptop", "HP", 62_499),
    ("HP Victus Gaming", "Laptop", "HP", 71_990),
    ("Asus ZenBook 14", "Laptop", "Asus", 84_990),
    ("Asus VivoBook 15", "Laptop", "Asus", 39_990),
    ("Apple iPhone 12", "Smartphone", "Apple", 80_000),
    ("Apple iPhone 15", "Smartphone", "Apple", 79_900),
    ("Samsung Galaxy S24", "Smartphone", "Samsung", 74_999),
    ("Samsung Galaxy A55", "Smartphone", "Samsung", 39_999),
    ("Google Pixel 8", "Smartphone", "Google", 75_999),
    ("OnePlus 12", "Smartphone", "OnePlus", 64_999),
    ("OnePlus Nord CE 4", "Smartphone", "OnePlus", 24_999),
    ("Xiaomi Redmi Note 13", "Smartphone", "Xiaomi", 17_999),
    ("Xiaomi 14", "Smartphone", "Xiaomi", 69_999),
    ("Apple iPad Air", "Tablet", "Apple", 59_900),
    ("Apple iPad 10th Gen", "Tablet", "Apple", 34_900),
    ("Samsung Galaxy Tab S9", "Tablet", "Samsung", 72_999),
    ("Samsung Galaxy Tab A9", "Tablet", "Samsung", 14_999),
    ("Lenovo Tab P12", "Tablet", "Lenovo", 26_999),
    ("Xiaomi Pad 6", "Tablet", "Xiaomi", 26_999),
    ("Apple AirPods Pro", "Accessory", "Apple", 24_900),
    ("Apple MagSafe Charger", "Accessory", "Apple", 4_500),
    ("Samsung Galaxy Buds2 Pro", "Accessory", "Samsung", 17_999),
    ("Sony WH-1000XM5", "Accessory", "Sony", 29_990),
    ("Sony WF-C700N", "Accessory", "Sony", 8_990),
    ("Logitech MX Master 3S", "Accessory", "Logitech", 9_995),
    ("Logitech K380 Keyboard", "Accessory", "Logitech", 2_995),
    ("Anker PowerCore 20000", "Accessory", "Anker", 3_499),
    ("Anker 65W USB-C Charger", "Accessory", "Anker", 2_999),
    ("Dell 27 Monitor S2721", "Accessory", "Dell", 17_499),
    ("HP USB-C Dock G5", "Accessory", "HP", 15_999),
];

const SEGMENTS: &[(&str, f64)] = &[("Premium", 0.2), ("Regular", 0.5), ("Budget", 0.3)];
const COUNTRIES: &[(&str, f64)] = &[
    ("India", 0.55),
    ("United States", 0.12),
    ("United Kingdom", 0.07),
    ("Germany", 0.06),
    ("United Arab Emirates", 0.06),
    ("Singapore", 0.05),
    ("Australia", 0.05),
    ("Canada", 0.04),
];
const CARDS: &[(&str, f64)] = &[
    ("Visa", 0.38),
    ("Mastercard", 0.3),
    ("RuPay", 0.17),
    ("American Express", 0.1),
    ("Discover", 0.05),
];
const FIRST: &[&str] = &[
    "Aarav", "Priya", "Rohan", "Ananya", "Vikram", "Meera", "Arjun", "Sneha", "Kabir", "Isha",
    "James", "Emma", "Liam", "Olivia", "Noah", "Sofia", "Lukas", "Mia", "Omar", "Layla", "Wei",
    "Mei", "Ethan", "Chloe",
];
const LAST: &[&str] = &[
    "Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Nair", "Singh", "Khan", "Smith", "Brown",
    "Wilson", "Taylor", "Müller", "Schmidt", "Al-Farsi", "Tan", "Lim", "Nguyen", "Martin",
    "Clarke",
];
/// Relative order volume by hour of day (UTC), evening peak.
const HOURLY: [f64; 24] = [
    0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.25, 0.45, 0.7, 0.9, 1.0, 1.05, 1.1, 1.05, 1.0, 1.0, 1.05,
    1.15, 1.3, 1.5, 1.6, 1.45, 1.0, 0.55,
];
/// Relative order volume by weekday, Monday first.
const WEEKLY: [f64; 7] = [0.9, 0.88, 0.92, 0.95, 1.08, 1.3, 1.2];
const DAY_MICROS: i64 = 86_400_000_000;
const HOUR_MICROS: i64 = 3_600_000_000;

/// A customer as the generator sees it.
struct Customer {
    id: i64,
    segment: usize,
    country: &'static str,
    card: &'static str,
}

/// One product's behaviour over time.
struct ProductModel {
    popularity: f64,
    /// Multiplicative demand trend per day.
    trend_per_day: f64,
    /// (from_micros, price in cents), ascending; the first entry is the list price.
    prices: Vec<(i64, i64)>,
}

/// The generator's state: catalogue models and customers, all derived from the seed.
pub struct Shop {
    rng: ChaCha8Rng,
    products: Vec<ProductModel>,
    customers: Vec<Customer>,
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [(&'a str, f64)]) -> (usize, &'a str) {
    let total: f64 = items.iter().map(|i| i.1).sum();
    let mut x = rng.random::<f64>() * total;
    for (i, (name, w)) in items.iter().enumerate() {
        if x < *w {
            return (i, name);
        }
        x -= w;
    }
    (items.len() - 1, items[items.len() - 1].0)
}

impl Shop {
    /// Builds the shop for `seed`, with price histories over `[start, end)`.
    pub fn new(seed: u64, customers: u32, start: i64, end: i64) -> Shop {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let days = ((end - start) / DAY_MICROS).max(1);
        let products = CATALOGUE
            .iter()
            .map(|(_, cat, _, list)| {
                let base = match *cat {
                    "Accessory" => 2.2,
                    "Smartphone" => 1.6,
                    "Laptop" => 0.8,
                    _ => 0.7,
                };
                let popularity = base * (0.3 + rng.random::<f64>() * 1.7);
                let trend_per_day = 1.0 + (rng.random::<f64>() - 0.4) * 0.012;
                let mut prices = vec![(i64::MIN, list * 100)];
                let mut day = 0;
                while day < days {
                    day += 7 + rng.random_range(0..21);
                    if day >= days {
                        break;
                    }
                    let factor: f64 = [0.85, 0.9, 0.95, 1.0, 1.05][rng.random_range(0..5)];
                    let cents = ((*list as f64 * factor).round() as i64) * 100;
                    prices.push((
                        start + day * DAY_MICROS + rng.random_range(0..DAY_MICROS),
                        cents,
                    ));
                }
                ProductModel {
                    popularity,
                    trend_per_day,
                    prices,
                }
            })
            .collect();
        let customers = (1..=i64::from(customers))
            .map(|id| {
                let (segment, _) = pick(&mut rng, SEGMENTS);
                let (_, country) = pick(&mut rng, COUNTRIES);
                let (_, card) = pick(&mut rng, CARDS);
                let country = COUNTRIES
                    .iter()
                    .find(|c| c.0 == country)
                    .map(|c| c.0)
                    .unwrap_or("India");
                let card = CARDS
                    .iter()
                    .find(|c| c.0 == card)
                    .map(|c| c.0)
                    .unwrap_or("Visa");
                Customer {
                    id,
                    segment,
                    country,
                    card,
                }
            })
            .collect();
        Shop {
            rng,
            products,
            customers,
        }
    }

    fn price_at(&self, p: usize, at: i64) -> i64 {
        let prices = &self.products[p].prices;
        prices
            .iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .map(|x| x.1)
            .unwrap_or(prices[0].1)
    }

    /// Product weights for a segment at a time: popularity x trend x price response x taste.
    fn weights(&self, segment: usize, at: i64, start: i64) -> Vec<f64> {
        let day = ((at - start) / DAY_MICROS) as f64;
        CATALOGUE
            .iter()
            .enumerate()
            .map(|(i, (_, _, _, list))| {
                let m = &self.products[i];
                let price = self.price_at(i, at) as f64 / 100.0;
                let elasticity = (price / *list as f64).powf(-2.0);
                let taste = match (SEGMENTS[segment].0, *list) {
                    ("Premium", l) if l >= 60_000 => 2.5,
                    ("Budget", l) if l <= 25_000 => 2.5,
                    ("Budget", l) if l >= 100_000 => 0.3,
                    _ => 1.0,
                };
                m.popularity * m.trend_per_day.powf(day) * elasticity * taste
            })
            .collect()
    }

    /// One order at `at`.
    fn order(&mut self, at: i64, start: i64) -> Sale {
        let guest = self.rng.random::<f64>() < 0.03;
        let c = self.rng.random_range(0..self.customers.len());
        let segment = if guest { 1 } else { self.customers[c].segment };
        let w = self.weights(segment, at, start);
        let total: f64 = w.iter().sum();
        let mut x = self.rng.random::<f64>() * total;
        let mut p = w.len() - 1;
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                p = i;
                break;
            }
            x -= wi;
        }
        let (name, category, brand, _) = CATALOGUE[p];
        let quantity = if category == "Accessory" {
            1 + (self.rng.random::<f64>().powi(3) * 4.0) as i64
        } else {
            match self.rng.random::<f64>() {
                x if x < 0.86 => 1,
                x if x < 0.97 => 2,
                _ => 3,
            }
        };
        let (customer, country, card) = if guest {
            let (_, country) = pick(&mut self.rng, COUNTRIES);
            let (_, card) = pick(&mut self.rng, CARDS);
            (None, country.to_string(), card.to_string())
        } else {
            let cu = &self.customers[c];
            let card = if self.rng.random::<f64>() < 0.8 {
                cu.card.to_string()
            } else {
                pick(&mut self.rng, CARDS).1.to_string()
            };
            (Some(cu.id), cu.country.to_string(), card)
        };
        Sale {
            product_id: p as i64 + 1,
            name,
            category,
            brand,
            quantity,
            price_cents: self.price_at(p, at),
            at,
            customer,
            country,
            card,
        }
    }

    /// Orders for `[start, end)`: `n` in total, spread by the hourly and weekly curves and
    /// the shop's growth, in time order.
    pub fn backfill(&mut self, start: i64, end: i64, n: u64) -> Vec<Sale> {
        let hours: Vec<(i64, f64)> = (0..)
            .map(|h| start - start.rem_euclid(HOUR_MICROS) + h * HOUR_MICROS)
            .take_while(|t| *t < end)
            .map(|t| {
                let dt = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default();
                let growth = 1.0 + 0.3 * ((t - start) as f64 / (end - start).max(1) as f64);
                let w = HOURLY[dt.hour() as usize]
                    * WEEKLY[dt.weekday().num_days_from_monday() as usize]
                    * growth;
                (t, w)
            })
            .collect();
        let total: f64 = hours.iter().map(|h| h.1).sum();
        let mut out = Vec::with_capacity(n as usize);
        let mut carry = 0.0;
        for (i, (t, w)) in hours.iter().enumerate() {
            carry += n as f64 * w / total;
            let mut k = carry.floor() as u64;
            if i == hours.len() - 1 {
                k = n - out.len() as u64;
            }
            carry -= k as f64;
            let lo = (*t).max(start);
            let hi = (*t + HOUR_MICROS).min(end);
            if hi <= lo {
                continue;
            }
            let mut times: Vec<i64> = (0..k).map(|_| self.rng.random_range(lo..hi)).collect();
            times.sort_unstable();
            for at in times {
                let s = self.order(at, start);
                out.push(s);
            }
        }
        out
    }

    /// The latest price of every product at `at`, in cents.
    pub fn prices_at(&self, at: i64) -> Vec<i64> {
        (0..CATALOGUE.len()).map(|p| self.price_at(p, at)).collect()
    }
}

/// One generated order line.
#[derive(Debug, Clone)]
pub struct Sale {
    pub product_id: i64,
    pub name: &'static str,
    pub category: &'static str,
    pub brand: &'static str,
    pub quantity: i64,
    pub price_cents: i64,
    pub at: i64,
    pub customer: Option<i64>,
    pub country: String,
    pub card: String,
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
