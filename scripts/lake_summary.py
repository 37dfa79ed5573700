"""A DuckDB summary of the lake: windows per shape, top products, the latest hours.

Usage: lake_summary.py LAKE_DIR
"""
import sys

import duckdb

lake = sys.argv[1] if len(sys.argv) > 1 else "lake"
c = duckdb.connect()
w = f"read_parquet('{lake}/sales_windows/**/*.parquet', hive_partitioning=1)"
print(c.sql(f"""SELECT "window", count(*) AS window_rows, sum(total_quantity_sold) AS units,
                       sum(total_revenue) AS revenue FROM {w} GROUP BY 1 ORDER BY 1"""))
print(c.sql(f"""SELECT product_name, brand, sum(total_quantity_sold) AS units, sum(total_revenue) AS revenue
                FROM {w} WHERE "window" = '1d' GROUP BY ALL ORDER BY revenue DESC LIMIT 5"""))
print(c.sql(f"""SELECT window_start, sum(total_revenue) AS revenue FROM {w}
                WHERE "window" = '1h' GROUP BY 1 ORDER BY 1 DESC LIMIT 5"""))
