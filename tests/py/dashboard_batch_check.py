"""Outside answers for the dashboard's other panels: the low-stock alerts as confluent-kafka +
fastavro read them off the topic, and DuckDB's view of the newest forecast and recommendation
runs (the newest run_date= folder with a manifest.json) against the lake's 1d windows.

Usage: dashboard_batch_check.py LAKE BROKERS ALERTS_TOPIC PRODUCT CUSTOMER
Prints {alerts: {open, recoveries}, forecast: {run_date, days: {date: [actual, predicted]}},
        recommendations: {customer: [[product id, name] by rank], cold_start: [...]}}"""
import glob
import json
import os
import sys

import duckdb

from outputs_check import decode
from stream_check import read_all

lake, brokers, topic, product, customer = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
duckdb.execute("SET TimeZone = 'UTC'")

# Alerts: each product's newest message decides whether it is open; every recovery is listed.
latest, recoveries, seen = {}, [], set()
for m in sorted(read_all(brokers, topic), key=lambda m: (m.partition(), m.offset())):
    r = decode(m.value())
    key = (r["product_id"], r["stock_recorded_at"], r["kind"])
    if key in seen:
        continue
    seen.add(key)
    latest[r["product_id"]] = r
    if r["kind"] == "recovered":
        recoveries.append(r)
row = lambda r: [r["product_id"], r["updated_stock"], r["threshold"], r["event_time"].strftime("%Y-%m-%d %H:%M")]
open_ = sorted((r for r in latest.values() if r["kind"] == "low"), key=lambda r: (-r["event_time"].timestamp(), r["product_id"]))
recoveries.sort(key=lambda r: (-r["event_time"].timestamp(), r["product_id"]))


def newest(table):
    runs = sorted(os.path.dirname(p) for p in glob.glob(f"{lake}/{table}/run_date=*/manifest.json"))
    return runs[-1] if runs else None


out = {"alerts": {"open": [row(r) for r in open_], "recoveries": [row(r) for r in recoveries]}}

run = newest("forecasts")
if run:
    pred = duckdb.execute(
        f"SELECT strftime(forecast_date, '%Y-%m-%d'), predicted_quantity FROM read_parquet('{run}/*.parquet') "
        "WHERE product_id = ? ORDER BY 1", [product]).fetchall()
    actual = duckdb.execute(
        f"SELECT strftime(window_start, '%Y-%m-%d'), sum(total_quantity_sold)::BIGINT FROM "
        f"read_parquet('{lake}/sales_windows/window=1d/**/*.parquet', hive_partitioning = 1, union_by_name = 1) "
        "WHERE product_id = ? GROUP BY 1 ORDER BY 1", [product]).fetchall()
    days = {d: [a, None] for d, a in actual}
    for d, p in pred:
        days.setdefault(d, [None, None])[1] = p
    out["forecast"] = {"run_date": run.rsplit("run_date=", 1)[1], "days": days}

run = newest("recommendations")
if run:
    rel = f"read_parquet('{run}/*.parquet')"
    out["recommendations"] = {
        "customer": [list(r) for r in duckdb.execute(f"SELECT product_id, product_name FROM {rel} WHERE customer_id = ? ORDER BY rank", [customer]).fetchall()],
        "cold_start": [list(r) for r in duckdb.execute(f"SELECT product_id, product_name FROM {rel} WHERE customer_id IS NULL ORDER BY rank").fetchall()],
    }
print(json.dumps(out, default=str))
