-- Source schema for MySQL / MariaDB. Created by `jobs init`; every statement is idempotent.
-- Timestamps are DATETIME(6) in UTC. Columns that a messy real-world source may leave NULL
-- are nullable on purpose: `jobs ingest` validates each row and dead-letters the bad ones.
-- product_sales.created_at (insert time, UTC) is the ingest cursor: it catches rows inserted
-- late with an old transaction_date (back-fills), which a cursor on transaction_date would miss.

CREATE TABLE IF NOT EXISTS products (
    id           BIGINT       NOT NULL PRIMARY KEY,
    name         VARCHAR(255),
    category     VARCHAR(64),
    brand        VARCHAR(64),
    price        DECIMAL(12,2),
    last_updated DATETIME(6)  DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    KEY products_cursor (last_updated, id)
);

CREATE TABLE IF NOT EXISTS product_sales (
    transaction_id   BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    product_id       BIGINT,
    product_name     VARCHAR(255),
    product_category VARCHAR(64),
    brand            VARCHAR(64),
    quantity_sold    BIGINT,
    price_per_unit   DECIMAL(12,2),
    transaction_date DATETIME(6),
    customer_id      BIGINT,
    country          VARCHAR(64),
    card_type        VARCHAR(32),
    created_at       DATETIME(6)  DEFAULT (UTC_TIMESTAMP(6)),
    KEY product_sales_cursor (created_at, transaction_id)
);

CREATE TABLE IF NOT EXISTS inventory (
    product_id   BIGINT       NOT NULL PRIMARY KEY,
    product_name VARCHAR(255),
    brand        VARCHAR(64),
    stock_level  BIGINT,
    updated_at   DATETIME(6)  DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
);

CREATE TABLE IF NOT EXISTS customer_data (
    customer_id      BIGINT       NOT NULL PRIMARY KEY,
    customer_name    VARCHAR(255),
    customer_segment VARCHAR(64)
);
