"""DuckDB's answer for the dashboard's hourly panel: units, revenue (cents) and orders of the
1h windows in [FROM, TO), optionally of one category or brand.

Usage: dashboard_check.py LAKE FROM TO [category|brand VALUE]"""
import json
import sys

import duckdb

lake, lo, hi = sys.argv[1], sys.argv[2], sys.argv[3]
where, args = "", [lo, hi]
if len(sys.argv) == 6:
    col = {"category": "product_category", "brand": "brand"}[sys.argv[4]]
    where, args = f" AND {col} = ?", args + [sys.argv[5]]
duckdb.execute("SET TimeZone = 'UTC'")
rows = duckdb.execute(
    "SELECT coalesce(sum(total_quantity_sold), 0)::BIGINT, coalesce(sum(total_revenue) * 100, 0)::BIGINT, "
    "coalesce(sum(order_count), 0)::BIGINT "
    f"FROM read_parquet('{lake}/sales_windows/window=1h/**/*.parquet', hive_partitioning = 1) "
    "WHERE window_start >= ?::TIMESTAMPTZ AND window_start < ?::TIMESTAMPTZ" + where,
    args,
).fetchall()
u, r, o = rows[0]
print(json.dumps({"units": u, "revenue_cents": r, "orders": o}))
