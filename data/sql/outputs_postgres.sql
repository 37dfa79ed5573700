-- Output tables of `jobs stream` (seed 003's dashboard tables, seed 002's top products),
-- created by `jobs stream` in the database of `stream.sql_url`; every statement is idempotent.
-- Rows are upserted on their window key, so a replay after a crash rewrites the same values.
-- Timestamps are UTC. A country's or card type's sales come from every source partition:
-- the tables hold one row per source partition and the views sum them.

CREATE TABLE IF NOT EXISTS stream_sales_by_country (
    window_spec         VARCHAR(64) NOT NULL,
    window_start        TIMESTAMP(6) NOT NULL,
    window_end          TIMESTAMP(6) NOT NULL,
    country             VARCHAR(64) NOT NULL,
    source_partition    INTEGER NOT NULL,
    total_quantity_sold BIGINT NOT NULL,
    total_revenue       NUMERIC(18,2) NOT NULL,
    order_count         BIGINT NOT NULL,
    PRIMARY KEY (window_spec, window_start, country, source_partition)
);

CREATE TABLE IF NOT EXISTS stream_sales_by_card_type (
    window_spec         VARCHAR(64) NOT NULL,
    window_start        TIMESTAMP(6) NOT NULL,
    window_end          TIMESTAMP(6) NOT NULL,
    card_type           VARCHAR(64) NOT NULL,
    source_partition    INTEGER NOT NULL,
    total_quantity_sold BIGINT NOT NULL,
    total_revenue       NUMERIC(18,2) NOT NULL,
    order_count         BIGINT NOT NULL,
    PRIMARY KEY (window_spec, window_start, card_type, source_partition)
);

CREATE OR REPLACE VIEW sales_by_country AS
SELECT window_spec, window_start, window_end, country,
       CAST(SUM(total_quantity_sold) AS BIGINT) AS total_quantity_sold,
       SUM(total_revenue) AS total_revenue,
       CAST(SUM(order_count) AS BIGINT) AS order_count
FROM stream_sales_by_country
GROUP BY window_spec, window_start, window_end, country;

CREATE OR REPLACE VIEW sales_by_card_type AS
SELECT window_spec, window_start, window_end, card_type,
       CAST(SUM(total_quantity_sold) AS BIGINT) AS total_quantity_sold,
       SUM(total_revenue) AS total_revenue,
       CAST(SUM(order_count) AS BIGINT) AS order_count
FROM stream_sales_by_card_type
GROUP BY window_spec, window_start, window_end, card_type;

-- Each source partition's top N of each closed sliding window, by metric. A product lives in
-- one partition, so the global top N is:
--   SELECT * FROM top_products WHERE metric = 'quantity' AND window_start = ?
--   ORDER BY total_quantity_sold DESC, total_revenue DESC, product_id LIMIT 10
-- (by revenue: total_revenue DESC, total_quantity_sold DESC, product_id).
CREATE TABLE IF NOT EXISTS top_products (
    metric              VARCHAR(64) NOT NULL,
    window_spec         VARCHAR(64) NOT NULL,
    window_start        TIMESTAMP(6) NOT NULL,
    window_end          TIMESTAMP(6) NOT NULL,
    product_id          BIGINT NOT NULL,
    product_name        VARCHAR(255) NOT NULL,
    brand               VARCHAR(64) NOT NULL,
    product_category    VARCHAR(64) NOT NULL,
    total_quantity_sold BIGINT NOT NULL,
    total_revenue       NUMERIC(18,2) NOT NULL,
    order_count         BIGINT NOT NULL,
    source_partition    INTEGER NOT NULL,
    PRIMARY KEY (metric, window_spec, window_start, product_id)
);
