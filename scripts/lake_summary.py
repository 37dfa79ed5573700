"""A DuckDB summary of the lake: windows per shape, top products, the latest hours, running
totals, the newest top-N, segments and countries, a forecast sample and a recommendation sample.

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


def show(title, sql):
    """Prints a query's result; a table that does not exist yet is skipped."""
    try:
        print(title)
        print(c.sql(sql))
    except duckdb.IOException:
        print("  (not written yet)")


show("Running totals (sales_totals):",
     f"""SELECT product_name, total_quantity_sold, total_revenue, order_count, last_event_time
         FROM read_parquet('{lake}/sales_totals/*.parquet') ORDER BY total_revenue DESC LIMIT 5""")
show("Top 5 by revenue in the newest top-N window (top_products):",
     f"""SELECT window_start, product_name, total_quantity_sold, total_revenue
         FROM read_parquet('{lake}/top_products/**/*.parquet', hive_partitioning=1)
         WHERE metric = 'revenue' AND window_start = (SELECT max(window_start)
               FROM read_parquet('{lake}/top_products/**/*.parquet', hive_partitioning=1))
         ORDER BY total_revenue DESC, total_quantity_sold DESC, product_id LIMIT 5""")
show("Revenue per customer segment, last day (segment_sales):",
     f"""SELECT customer_segment, sum(total_quantity_sold) AS units, sum(total_revenue) AS revenue
         FROM read_parquet('{lake}/segment_sales/**/*.parquet', hive_partitioning=1)
         WHERE "window" = '1d' AND window_start = (SELECT max(window_start)
               FROM read_parquet('{lake}/segment_sales/**/*.parquet', hive_partitioning=1) WHERE "window" = '1d')
         GROUP BY 1 ORDER BY revenue DESC""")
show("Revenue per country, last day (sales_by_country):",
     f"""SELECT country, sum(total_revenue) AS revenue
         FROM read_parquet('{lake}/sales_by_country/**/*.parquet', hive_partitioning=1)
         WHERE "window" = '1d' AND window_start = (SELECT max(window_start)
               FROM read_parquet('{lake}/sales_by_country/**/*.parquet', hive_partitioning=1) WHERE "window" = '1d')
         GROUP BY 1 ORDER BY revenue DESC""")
show("Forecast sample: the newest run, next days of the five best sellers (forecasts):",
     f"""WITH f AS (SELECT * FROM read_parquet('{lake}/forecasts/*/*.parquet', hive_partitioning=1)
                  WHERE run_date = (SELECT max(run_date) FROM read_parquet('{lake}/forecasts/*/*.parquet', hive_partitioning=1))),
              best AS (SELECT product_id FROM f GROUP BY 1 ORDER BY sum(predicted_quantity) DESC LIMIT 5)
         SELECT product_name, forecast_date, round(predicted_quantity, 1) AS units, model
         FROM f SEMI JOIN best USING (product_id) ORDER BY product_name, forecast_date LIMIT 15""")
show("Recommendation sample: the newest run, three customers and the cold-start list (recommendations):",
     f"""WITH r AS (SELECT * FROM read_parquet('{lake}/recommendations/*/*.parquet', hive_partitioning=1)
                  WHERE run_date = (SELECT max(run_date) FROM read_parquet('{lake}/recommendations/*/*.parquet', hive_partitioning=1)))
         SELECT coalesce(customer_id::VARCHAR, 'cold start') AS customer, string_agg(product_name, ', ' ORDER BY rank) AS products
         FROM r WHERE customer_id IS NULL OR customer_id IN (SELECT DISTINCT customer_id FROM r WHERE customer_id IS NOT NULL ORDER BY 1 LIMIT 3)
         GROUP BY 1 ORDER BY 1""")
