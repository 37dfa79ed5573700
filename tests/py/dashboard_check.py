"""DuckDB's answer for the dashboard's panels over the lake's 1h windows in [FROM, TO),
optionally of one category or brand: the totals, the two top-10 lists and (without a filter)
the sales by country and by card type.

Usage: dashboard_check.py LAKE FROM TO [category|brand VALUE]"""
import glob
import json
import sys

import duckdb

lake, lo, hi = sys.argv[1], sys.argv[2], sys.argv[3]
where, args = "", [lo, hi]
if len(sys.argv) == 6:
    col = {"category": "product_category", "brand": "brand"}[sys.argv[4]]
    where, args = f" AND {col} = ?", args + [sys.argv[5]]
duckdb.execute("SET TimeZone = 'UTC'")


def q(table, select, tail="", filtered=True):
    # An empty folder is no table at all for DuckDB: say so as no rows.
    if not glob.glob(f"{lake}/{table}/window=1h/**/*.parquet", recursive=True):
        return []
    sql = (
        f"SELECT {select} FROM read_parquet('{lake}/{table}/window=1h/**/*.parquet', hive_partitioning = 1, union_by_name = 1) "
        "WHERE window_start >= ?::TIMESTAMPTZ AND window_start < ?::TIMESTAMPTZ" + (where if filtered else "") + " " + tail
    )
    return duckdb.execute(sql, args if filtered else [lo, hi]).fetchall()


sums = "coalesce(sum(total_quantity_sold), 0)::BIGINT, coalesce(sum(total_revenue) * 100, 0)::BIGINT, coalesce(sum(order_count), 0)::BIGINT"
u, r, o = q("sales_windows", sums)[0]
top = lambda order: [
    {"product_id": p, "name": n, "units": a, "revenue_cents": b}
    for p, n, a, b in q(
        "sales_windows",
        "product_id, any_value(product_name), sum(total_quantity_sold)::BIGINT AS u, (sum(total_revenue) * 100)::BIGINT AS r",
        f"GROUP BY product_id ORDER BY {order}, product_id LIMIT 10",
    )
]
bars = lambda table, label: [
    {"label": l, "revenue_cents": b, "units": a, "orders": c}
    for l, a, b, c in q(table, f"{label}, {sums}", f"GROUP BY {label} ORDER BY 3 DESC, 1", filtered=False)
]
print(json.dumps({
    "units": u, "revenue_cents": r, "orders": o,
    "top_units": top("u DESC, r DESC"),
    "top_revenue": top("r DESC, u DESC"),
    "countries": bars("sales_by_country", "country"),
    "cards": bars("sales_by_card_type", "card_type"),
}))
