"""Outside reads of `jobs forecast` and `jobs recommend`: confluent-kafka + fastavro over the
topics, DuckDB over the lake (history and outputs). Prints JSON.

  ml_check.py forecast LAKE BROKERS TOPIC RUN_DATE SINCE
      {kafka: [[product_id, date, quantity, model, version, run_date, low, high, period_days]...], lake: [...same...],
       manifest: {...}, history_rows: N, last_week: {product_id: units}} sorted for equality
  ml_check.py recommend LAKE BROKERS TOPIC RUN_DATE SINCE
      {kafka: {customer: [[rank, product_id, score, source]...]}, lake: {...same...},
       bought: {customer: [product_id...]}, popular: [product_id...], manifest: {...}}
  ml_check.py count BROKERS TOPIC
      {messages: N}
"""
import io
import json
import sys
from pathlib import Path

from outputs_check import decode  # noqa: E402 (tests/py is the script's folder)
from stream_check import read_all  # noqa: E402

LAKE_S3 = None


def duck(lake):
    import duckdb
    c = duckdb.connect()
    if lake.startswith("s3://"):
        c.sql("""CREATE SECRET (TYPE s3, KEY_ID 'jobs', SECRET 'jobs-secret', ENDPOINT '127.0.0.1:8333',
                 URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')""")
    return c


def history(c, lake, since, run_date):
    c.sql(f"""CREATE OR REPLACE VIEW h AS SELECT * FROM read_parquet('{lake}/sales_raw/**/*.parquet', hive_partitioning=1)
              WHERE date >= '{since}' AND date < '{run_date}'""")


def forecast(lake, brokers, topic, run_date, since):
    c = duck(lake)
    kafka = []
    for m in read_all(brokers, topic):
        r = decode(m.value())
        assert m.key().decode() == str(r["product_id"]), "key = product id"
        kafka.append([r["product_id"], str(r["forecast_date"]), r["predicted_quantity"], r["model"],
                      r["model_version"], str(r["run_date"]), r["predicted_low"], r["predicted_high"], r["period_days"]])
    lake_rows = c.sql(f"""SELECT product_id, forecast_date::VARCHAR, predicted_quantity, model, model_version, run_date::VARCHAR,
        predicted_low, predicted_high, period_days FROM read_parquet('{lake}/forecasts/*/*.parquet', hive_partitioning=1) ORDER BY ALL""").fetchall()
    manifest = json.loads(c.sql(f"SELECT content FROM read_text('{lake}/forecasts/run_date={run_date}/manifest.json')").fetchall()[0][0])
    history(c, lake, since, run_date)
    rows = c.sql("SELECT count(*) FROM h").fetchall()[0][0]
    week = c.sql(f"""SELECT product_id, sum(quantity_sold) FROM h
        WHERE transaction_date >= DATE '{run_date}' - INTERVAL 7 DAY GROUP BY ALL""").fetchall()
    return {
        "kafka": sorted(kafka),
        "lake": [list(r) for r in lake_rows],
        "manifest": manifest,
        "history_rows": rows,
        "last_week": {str(p): int(q) for p, q in week},
    }


def recommend(lake, brokers, topic, run_date, since):
    c = duck(lake)
    kafka = {}
    for m in read_all(brokers, topic):
        r = decode(m.value())
        key = "cold_start" if r["customer_id"] is None else str(r["customer_id"])
        assert m.key().decode() == key, (m.key(), key)
        kafka[key] = [[p["rank"], p["product_id"], p["score"], p["source"]] for p in r["products"]]
    lake_rows = c.sql(f"""SELECT coalesce(customer_id::VARCHAR, 'cold_start'), rank, product_id, score, source
        FROM read_parquet('{lake}/recommendations/*/*.parquet', hive_partitioning=1) ORDER BY 1, 2""").fetchall()
    lake_lists = {}
    for cust, rank, pid, score, source in lake_rows:
        lake_lists.setdefault(cust, []).append([rank, pid, score, source])
    history(c, lake, since, run_date)
    bought = {}
    for cust, pid in c.sql("SELECT DISTINCT customer_id, product_id FROM h WHERE customer_id IS NOT NULL ORDER BY ALL").fetchall():
        bought.setdefault(str(cust), []).append(pid)
    popular = [r[0] for r in c.sql("""SELECT product_id FROM h WHERE customer_id IS NOT NULL GROUP BY product_id
        ORDER BY count(DISTINCT customer_id) DESC, sum(quantity_sold) DESC, product_id""").fetchall()]
    manifest = json.loads(c.sql(f"SELECT content FROM read_text('{lake}/recommendations/run_date={run_date}/manifest.json')").fetchall()[0][0])
    return {"kafka": kafka, "lake": lake_lists, "bought": bought, "popular": popular, "manifest": manifest}


def main():
    cmd = sys.argv[1]
    if cmd == "forecast":
        out = forecast(*sys.argv[2:7])
    elif cmd == "recommend":
        out = recommend(*sys.argv[2:7])
    elif cmd == "count":
        out = {"messages": len(read_all(sys.argv[2], sys.argv[3]))}
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
