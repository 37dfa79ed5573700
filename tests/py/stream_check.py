"""Outside checks for `jobs stream`: DuckDB over the lake, confluent-kafka + fastavro over
the topics, and a producer of crafted (good and bad) messages. Prints JSON.

  stream_check.py seed-windows LAKE                  1h windows as [name, qty, revenue]
  stream_check.py compare-groupby LAKE               sales_windows vs DuckDB's own GROUP BY
  stream_check.py lake-rows LAKE                     every row of every table, sorted, for equality
  stream_check.py topic BROKERS TOPIC GROUP          decoded window messages of one stream group
  stream_check.py headers BROKERS TOPIC              messages with their jobs.* headers
  stream_check.py produce BROKERS TOPIC SPEC.json    crafted messages, each {kind, ...}
"""
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def duck():
    import duckdb
    return duckdb.connect()


def seed_windows(lake):
    rows = duck().sql(f"""
        SELECT product_name, total_quantity_sold, total_revenue::VARCHAR, order_count
        FROM read_parquet('{lake}/sales_windows/**/*.parquet', hive_partitioning=1)
        WHERE "window" = '1h' ORDER BY product_name, window_start""").fetchall()
    print(json.dumps([list(r) for r in rows]))


def s3_seed_windows(prefix):
    """The 1h windows under s3://lake/PREFIX on the local SeaweedFS, read with pyarrow."""
    import pyarrow.fs as fs
    import pyarrow.parquet as pq
    s3 = fs.S3FileSystem(access_key="jobs", secret_key="jobs-secret", endpoint_override="http://127.0.0.1:8333",
                         scheme="http", region="us-east-1")
    files = [f.path for f in s3.get_file_info(fs.FileSelector(f"lake/{prefix}/sales_windows", recursive=True))
             if f.path.endswith(".parquet")]
    rows = []
    for f in files:
        t = pq.read_table(f, filesystem=s3).to_pylist()
        rows += [[r["product_name"], r["total_quantity_sold"], str(r["total_revenue"]), r["order_count"]]
                 for r in t if r["window_spec"] == "1h"]
    print(json.dumps(sorted(rows)))


SPECS = {"1h": (3600, 3600), "1d": (86400, 86400), "1h_every_5m": (3600, 300)}


def compare_groupby(lake):
    c = duck()
    c.sql(f"""CREATE VIEW raw AS SELECT * FROM read_parquet('{lake}/sales_raw/**/*.parquet', hive_partitioning=1)""")
    try:
        c.sql(f"""CREATE VIEW late AS SELECT kafka_partition, kafka_offset FROM read_parquet('{lake}/late_sales/**/*.parquet', hive_partitioning=1)""")
    except Exception:
        c.sql("CREATE VIEW late AS SELECT 0::INT AS kafka_partition, -1::BIGINT AS kafka_offset WHERE false")
    c.sql(f"""CREATE VIEW win AS SELECT * FROM read_parquet('{lake}/sales_windows/**/*.parquet', hive_partitioning=1)""")
    c.sql("""CREATE VIEW ontime AS SELECT r.* FROM raw r ANTI JOIN late l USING (kafka_partition, kafka_offset)""")
    out = {}
    for name, (size, slide) in SPECS.items():
        n = size // slide
        expected = f"""
            SELECT to_timestamp(ws)::TIMESTAMP AS window_start, product_id,
                   sum(quantity_sold)::BIGINT AS q, sum(quantity_sold * price_per_unit)::DECIMAL(18,2) AS rev, count(*)::BIGINT AS n
            FROM (SELECT *, (floor(epoch(transaction_date) / {slide}) * {slide} - k * {slide})::BIGINT AS ws
                  FROM ontime, range(0, {n}) t(k))
            GROUP BY ALL"""
        actual = f"""SELECT window_start, product_id, total_quantity_sold AS q, total_revenue AS rev, order_count AS n
                     FROM win WHERE "window" = '{name}'"""
        missing = c.sql(f"SELECT count(*) FROM (({expected}) EXCEPT ALL ({actual}))").fetchall()[0][0]
        extra = c.sql(f"SELECT count(*) FROM (({actual}) EXCEPT ALL ({expected}))").fetchall()[0][0]
        rows = c.sql(f"SELECT count(*) FROM ({actual})").fetchall()[0][0]
        out[name] = {"rows": rows, "missing": missing, "extra": extra}
    out["raw"] = c.sql("SELECT count(*) FROM raw").fetchall()[0][0]
    out["late"] = c.sql("SELECT count(*) FROM late").fetchall()[0][0]
    out["raw_duplicates"] = c.sql("SELECT count(*) - count(DISTINCT (kafka_partition, kafka_offset)) FROM raw").fetchall()[0][0]
    print(json.dumps(out))


def lake_rows(lake):
    c = duck()
    out = {}
    for table, cols in [("sales_windows", '"window", window_start, product_id, total_quantity_sold, total_revenue::VARCHAR, order_count'),
                        ("sales_raw", "kafka_partition, kafka_offset, transaction_id"),
                        ("late_sales", "kafka_partition, kafka_offset, transaction_id, watermark::VARCHAR")]:
        try:
            rows = c.sql(f"SELECT {cols} FROM read_parquet('{lake}/{table}/**/*.parquet', hive_partitioning=1) ORDER BY ALL").fetchall()
        except Exception:
            rows = []
        out[table] = [[str(v) for v in r] for r in rows]
    print(json.dumps(out))


def read_all(brokers, topic):
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient
    parts = list(AdminClient({"bootstrap.servers": brokers}).list_topics(topic, timeout=10).topics[topic].partitions)
    c = Consumer({"bootstrap.servers": brokers, "group.id": "stream-check", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, -2) for p in parts])
    eof, msgs = set(), []
    while len(eof) < len(parts):
        m = c.poll(10)
        if m is None:
            raise SystemExit(f"timeout reading {topic}")
        if m.error():
            # Only the end of a partition ends it: any other event (a request timed out under
            # load, a connection dropped) taken for an end would cut a partition short.
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            elif m.error().fatal():
                raise SystemExit(f"reading {topic}: {m.error()}")
            else:
                print(f"reading {topic}: {m.error()} (transient, reading on)", file=sys.stderr)
            continue
        msgs.append(m)
    c.close()
    return msgs


def topic(brokers, name, group):
    import fastavro
    schema = fastavro.parse_schema(json.loads((ROOT / "data/avro/product_sales_window.avsc").read_text()))
    out = []
    for m in read_all(brokers, name):
        h = {k: v.decode() for k, v in (m.headers() or [])}
        if h.get("jobs.group") != group:
            continue
        v = m.value()
        assert v[0] == 0 and int.from_bytes(v[1:5], "big") == 3, "Confluent header"
        r = fastavro.schemaless_reader(io.BytesIO(v[5:]), schema)
        out.append([h["jobs.idempotency_key"], r["window"], str(r["window_start"]), r["product_id"],
                    r["product_name"], r["total_quantity_sold"], str(r["total_revenue"]), r["order_count"], m.key().decode()])
    out.sort()
    print(json.dumps(out))


def headers(brokers, name):
    out = []
    for m in read_all(brokers, name):
        out.append({k: v.decode(errors="replace") for k, v in (m.headers() or [])})
    print(json.dumps(out))


def produce(brokers, name, spec_file):
    import fastavro
    from confluent_kafka import Producer
    schema = fastavro.parse_schema(json.loads((ROOT / "data/avro/product_sale.avsc").read_text()))
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "partitioner": "murmur2_random"})
    for s in json.loads(Path(spec_file).read_text()):
        kind = s.pop("kind")
        key = str(s.get("product_id", 1)).encode()
        if kind == "bytes":
            value = bytes.fromhex(s["hex"])
        else:
            rec = {"customer_id": None, "country": None, "card_type": None, **s}
            rec["price_per_unit"] = Decimal(rec["price_per_unit"])
            import datetime as dt
            rec["transaction_date"] = dt.datetime.fromisoformat(rec["transaction_date"]).replace(tzinfo=dt.timezone.utc)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, rec)
            body = buf.getvalue()
            schema_id = s.get("schema_id", 1)
            if kind == "truncated":
                body = body[: len(body) // 2]
            value = b"\x00" + schema_id.to_bytes(4, "big") + body
            rec.pop("schema_id", None)
        p.produce(name, key=key, value=value)
    p.flush(30)
    print(json.dumps({"ok": True}))


def trickle(brokers, name, product_id, start_iso, count, every_ms):
    """COUNT sales of PRODUCT_ID, one every EVERY_MS of wall time, event times one minute apart
    from START_ISO: an active partition."""
    import datetime as dt
    import time
    import fastavro
    from confluent_kafka import Producer
    schema = fastavro.parse_schema(json.loads((ROOT / "data/avro/product_sale.avsc").read_text()))
    p = Producer({"bootstrap.servers": brokers, "partitioner": "murmur2_random", "linger.ms": 0})
    t0 = dt.datetime.fromisoformat(start_iso).replace(tzinfo=dt.timezone.utc)
    for i in range(int(count)):
        rec = {"transaction_id": 100000 + i, "product_id": int(product_id), "product_name": f"Product {product_id}",
               "product_category": "Laptop", "brand": "Dell", "quantity_sold": 1, "price_per_unit": Decimal("1.00"),
               "transaction_date": t0 + dt.timedelta(minutes=i), "customer_id": None, "country": None, "card_type": None}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, rec)
        p.produce(name, key=str(product_id).encode(), value=b"\x00\x00\x00\x00\x01" + buf.getvalue())
        p.flush(10)
        time.sleep(int(every_ms) / 1000)
    print(json.dumps({"ok": True}))


def windows_at(lake, start):
    """Products with a 1h window starting at START (e.g. '2026-11-20 10:00:00')."""
    try:
        rows = duck().sql(f"""SELECT product_id FROM read_parquet('{lake}/sales_windows/**/*.parquet', hive_partitioning=1)
                             WHERE "window" = '1h' AND window_start = TIMESTAMP '{start}' ORDER BY 1""").fetchall()
    except Exception:
        rows = []
    print(json.dumps([r[0] for r in rows]))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"seed-windows": seed_windows, "s3-seed-windows": s3_seed_windows, "compare-groupby": compare_groupby, "lake-rows": lake_rows,
     "topic": topic, "headers": headers, "produce": produce, "trickle": trickle, "windows-at": windows_at}[cmd](*args)
