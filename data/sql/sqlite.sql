-- Source schema for SQLite, the embedded default. Created by `jobs init`; idempotent.
-- Timestamps are TEXT 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC ('T' also accepted). Ingest
-- compares them as microseconds through the expression below, which the cursor indexes
-- repeat verbatim so that SQLite can use them (jobs/src/io/db.rs holds the same text).
-- Columns are nullable on purpose: `jobs ingest` validates and dead-letters bad rows.
-- product_sales.created_at (insert time) is the ingest cursor, so back-fills are not missed.

CREATE TABLE IF NOT EXISTS products (
    id           INTEGER NOT NULL PRIMARY KEY,
    name         TEXT,
    category     TEXT,
    brand        TEXT,
    price        NUMERIC,
    last_updated TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS products_cursor ON products (
    (unixepoch(substr(last_updated, 1, 19)) * 1000000 + CAST(substr(substr(last_updated, 21) || '000000', 1, 6) AS INTEGER)),
    id
);
CREATE TRIGGER IF NOT EXISTS products_touch AFTER UPDATE ON products
    FOR EACH ROW WHEN NEW.last_updated IS OLD.last_updated
BEGIN
    UPDATE products SET last_updated = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;

CREATE TABLE IF NOT EXISTS product_sales (
    transaction_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id       INTEGER,
    product_name     TEXT,
    product_category TEXT,
    brand            TEXT,
    quantity_sold    INTEGER,
    price_per_unit   NUMERIC,
    transaction_date TEXT,
    customer_id      INTEGER,
    country          TEXT,
    card_type        TEXT,
    created_at       TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS product_sales_cursor ON product_sales (
    (unixepoch(substr(created_at, 1, 19)) * 1000000 + CAST(substr(substr(created_at, 21) || '000000', 1, 6) AS INTEGER)),
    transaction_id
);

CREATE TABLE IF NOT EXISTS inventory (
    product_id   INTEGER NOT NULL PRIMARY KEY,
    product_name TEXT,
    brand        TEXT,
    stock_level  INTEGER,
    updated_at   TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE IF NOT EXISTS customer_data (
    customer_id      INTEGER NOT NULL PRIMARY KEY,
    customer_name    TEXT,
    customer_segment TEXT
);

-- A stock change bumps inventory.updated_at (unless the update sets it).
CREATE TRIGGER IF NOT EXISTS inventory_touch AFTER UPDATE ON inventory
    FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE inventory SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE product_id = NEW.product_id;
END;
