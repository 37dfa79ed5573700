//! The reference tables the stream joins with: `inventory` (low-stock alerts) and
//! `customer_data` (segments), read from the database at start and every
//! `stream.reference_refresh`.
//!
//! Bad rows never stop the job: an inventory row for an unknown product or a NULL stock level
//! or time gives one log line per refresh; a missing table or an unreachable database one
//! line when reading starts failing and one when it works again ([`Health`]); each counts in
//! `jobs_stream_reference_problems_total{kind=...}`. The previous good snapshot stays in use
//! when a table cannot be read at all.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;

use super::stock::StockRecord;
use crate::io::db::Db;
use crate::metrics::StreamMetrics;

/// One read of the reference tables.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// customer id -> segment.
    pub segments: HashMap<i64, Arc<str>>,
    /// product id -> its inventory row, for known products with a stock level.
    pub inventory: HashMap<i64, StockRecord>,
}

/// Whether the reference tables could be read at the last refresh: logs the changes only.
#[derive(Debug, Default)]
pub struct Health {
    failing: bool,
}

impl Health {
    /// One refresh's failures (empty: every table was read).
    pub fn report(&mut self, failures: &[String]) {
        match (self.failing, failures.is_empty()) {
            (false, false) => tracing::warn!(
                message = "Cannot read the reference tables; segments of customers not read before count as unknown and stock levels stay as last read. Retrying at every refresh.",
                errors = %failures.join("; ")
            ),
            (true, true) => tracing::info!(message = "Reference tables readable again."),
            _ => {}
        }
        self.failing = !failures.is_empty();
    }
}

/// Reads the reference tables, keeping the parts of `previous` that could not be read (and
/// saying why in the returned failures).
pub async fn load(
    db: &Db,
    previous: &Snapshot,
    want_segments: bool,
    want_inventory: bool,
    metrics: &StreamMetrics,
) -> (Snapshot, Vec<String>) {
    let mut snap = previous.clone();
    let mut failures = Vec::new();
    let d = db.dialect;
    if want_segments {
        let sql = format!(
            "SELECT {}, {} FROM customer_data",
            d.int("customer_id"),
            d.text("customer_segment")
        );
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db.pool)
            .await
        {
            Ok(rows) => {
                let mut m = HashMap::with_capacity(rows.len());
                let mut nulls = 0u64;
                let mut interned: HashMap<String, Arc<str>> = HashMap::new();
                for r in rows {
                    let id: Option<i64> = r.try_get(0).ok().flatten();
                    let seg: Option<String> = r.try_get(1).ok().flatten();
                    match (id, seg.filter(|s| !s.trim().is_empty())) {
                        (Some(id), Some(seg)) => {
                            let a = interned
                                .entry(seg.clone())
                                .or_insert_with(|| Arc::from(seg.as_str()))
                                .clone();
                            m.insert(id, a);
                        }
                        _ => nulls += 1,
                    }
                }
                if nulls > 0 {
                    tracing::warn!(message = "customer_data rows without a segment count as segment unknown.", rows = nulls, database = %db.name);
                    metrics.reference_problem("customer_without_segment", nulls);
                }
                snap.segments = m;
            }
            Err(e) => {
                failures.push(format!("customer_data in {}: {e}", db.name));
                metrics.reference_problem("customer_data_unreadable", 1);
            }
        }
    }
    if want_inventory {
        let sql = format!(
            "SELECT {}, {}, {}, {} FROM inventory i LEFT JOIN products p ON p.id = i.product_id",
            d.int("i.product_id"),
            d.int("i.stock_level"),
            d.micros("i.updated_at"),
            d.int("p.id"),
        );
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db.pool)
            .await
        {
            Ok(rows) => {
                let mut m = HashMap::with_capacity(rows.len());
                let (mut unknown, mut null_stock, mut null_time) = (0u64, 0u64, 0u64);
                let mut examples: Vec<String> = Vec::new();
                for r in rows {
                    let id: Option<i64> = r.try_get(0).ok().flatten();
                    let level: Option<i64> = r.try_get(1).ok().flatten();
                    let at: Option<i64> = r.try_get(2).ok().flatten();
                    let known: Option<i64> = r.try_get(3).ok().flatten();
                    let Some(id) = id else { continue };
                    if known.is_none() {
                        unknown += 1;
                        if examples.len() < 5 {
                            examples.push(format!("{id}: not in products"));
                        }
                        continue;
                    }
                    let Some(level) = level else {
                        null_stock += 1;
                        if examples.len() < 5 {
                            examples.push(format!("{id}: stock_level is NULL"));
                        }
                        continue;
                    };
                    let Some(at) = at else {
                        null_time += 1;
                        if examples.len() < 5 {
                            examples.push(format!("{id}: updated_at is NULL"));
                        }
                        continue;
                    };
                    m.insert(
                        id,
                        StockRecord {
                            stock_level: level,
                            recorded_at: at,
                        },
                    );
                }
                if unknown + null_stock + null_time > 0 {
                    tracing::warn!(
                        message = "Skipped inventory rows.",
                        unknown_product = unknown,
                        null_stock_level = null_stock,
                        null_updated_at = null_time,
                        examples = %examples.join("; "),
                        database = %db.name
                    );
                    metrics.reference_problem("inventory_unknown_product", unknown);
                    metrics.reference_problem("inventory_null_stock_level", null_stock);
                    metrics.reference_problem("inventory_null_updated_at", null_time);
                }
                snap.inventory = m;
            }
            Err(e) => {
                failures.push(format!("inventory in {}: {e}", db.name));
                metrics.reference_problem("inventory_unreadable", 1);
            }
        }
    }
    (snap, failures)
}
