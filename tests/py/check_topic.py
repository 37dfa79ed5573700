"""Outside check of `jobs ingest`: reads the source table with the database's own Python
driver and the topics with confluent-kafka + fastavro, and prints one JSON summary.

Usage: check_topic.py --brokers B --db-url URL --table product_sales|products --topic T
                      --dlq D --schema-id N [--group G]
"""
import argparse
import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import fastavro
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
EPOCH = dt.datetime(1970, 1, 1)
US = dt.timedelta(microseconds=1)
CENT = Decimal("0.01")

TABLES = {
    "product_sales": dict(
        id="transaction_id",
        cols=["transaction_id", "product_id", "product_name", "product_category", "brand",
              "quantity_sold", "price_per_unit", "transaction_date", "customer_id", "country",
              "card_type"],
        required=["product_id", "product_name", "product_category", "brand", "quantity_sold",
                  "price_per_unit", "transaction_date"],
        qty="quantity_sold", price="price_per_unit", ts="transaction_date",
        cursor="created_at", schema="product_sale.avsc",
    ),
    "products": dict(
        id="id",
        cols=["id", "name", "category", "brand", "price", "last_updated"],
        required=["name", "category", "brand", "price", "last_updated"],
        qty=None, price="price", ts="last_updated",
        cursor="last_updated", schema="product.avsc",
    ),
}


def micros(v):
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v.replace("Z", ""))
        except ValueError:
            return "bad"
    if v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (v - EPOCH) // US


def money(v):
    if v is None:
        return None
    d = Decimal(str(v))
    return d


def db_rows(url, table):
    spec = TABLES[table]
    cols = spec["cols"] + ([spec["cursor"]] if spec["cursor"] not in spec["cols"] else [])
    sql = f"SELECT {', '.join(cols)} FROM {table}"
    u = urlparse(url)
    if u.scheme == "sqlite":
        path = url.split("://", 1)[1].split("?")[0]
        con = sqlite3.connect(path)
    elif u.scheme in ("mysql", "mariadb"):
        import pymysql
        con = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                              password=u.password or "", database=u.path.lstrip("/"))
    else:
        import psycopg
        con = psycopg.connect(url.replace("postgresql://", "postgres://", 1).replace("postgres://", "postgresql://", 1))
    cur = con.cursor()
    cur.execute(sql)
    out = [dict(zip(cols, r)) for r in cur.fetchall()]
    con.close()
    return out


def valid(spec, r):
    """The same rules `jobs ingest` documents: required fields present, quantity a
    non-negative Avro int, price non-negative with at most 2 decimals and 12 digits."""
    for c in spec["required"]:
        if r[c] is None or (isinstance(r[c], str) and not r[c].strip()):
            return False
    if spec["qty"] and not (0 <= int(r[spec["qty"]]) <= 2**31 - 1):
        return False
    p = money(r[spec["price"]])
    if p < 0 or p != p.quantize(CENT) or p >= Decimal("10000000000"):
        return False
    return micros(r[spec["ts"]]) not in (None, "bad") and micros(r[spec["cursor"]]) not in (None, "bad")


def canonical(spec, r):
    out = []
    for c in spec["cols"]:
        v = r[c]
        if c == spec["price"]:
            v = str(money(v).quantize(CENT))
        elif c == spec["ts"]:
            v = micros(v)
        elif isinstance(v, Decimal):
            v = int(v)
        out.append(v)
    return out


def read_all(brokers, topic, group):
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.partition.eof": True,
                  "enable.auto.commit": False})
    md = AdminClient({"bootstrap.servers": brokers}).list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, -2) for p in parts])
    eof, msgs = set(), []
    while len(eof) < len(parts):
        m = c.poll(10)
        if m is None:
            raise SystemExit(f"timeout reading {topic}")
        if m.error():
            if m.error().code() == -191:
                eof.add(m.partition())
                continue
            raise SystemExit(str(m.error()))
        msgs.append(m)
    c.close()
    return msgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--db-url", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--dlq", required=True)
    ap.add_argument("--schema-id", type=int, required=True)
    ap.add_argument("--group", default="check-topic")
    a = ap.parse_args()
    spec = TABLES[a.table]
    schema = fastavro.parse_schema(json.loads((ROOT / "data/avro" / spec["schema"]).read_text()))

    rows = db_rows(a.db_url, a.table)
    expected = {r[spec["id"]]: canonical(spec, r) for r in rows if valid(spec, r)}
    invalid = sorted(r[spec["id"]] for r in rows if not valid(spec, r))

    seen, dups, bad_header, mismatched, key_parts = {}, 0, 0, [], {}
    # Where each id was first seen, and where its duplicates sit (partition, first offset,
    # duplicate's offset): recovery bugs show up as runs at the start of a scanned range.
    first_at, dup_at = {}, []
    for m in read_all(a.brokers, a.topic, a.group):
        v = m.value()
        if len(v) < 5 or v[0] != 0 or int.from_bytes(v[1:5], "big") != a.schema_id:
            bad_header += 1
            continue
        import io
        rec = fastavro.schemaless_reader(io.BytesIO(v[5:]), schema)
        r = canonical(spec, rec)
        rid = r[0]
        if rid in seen:
            dups += 1
            if len(dup_at) < 20:
                dup_at.append([rid, m.partition(), first_at[rid], m.offset()])
        else:
            first_at[rid] = m.offset()
        seen[rid] = r  # the latest message per id wins (a product's updates share a partition)
        key = m.key().decode()
        expect_key = str(rec["product_id"] if a.table == "product_sales" else rec["id"])
        if key != expect_key:
            bad_header += 1
        if key_parts.setdefault(key, m.partition()) != m.partition():
            bad_header += 1

    dlq = {}
    for m in read_all(a.brokers, a.dlq, a.group):
        headers = dict(m.headers() or [])
        if headers.get("jobs.table", b"").decode() != a.table:
            continue
        body = json.loads(m.value())
        dlq[body["row"][spec["id"]]] = body["reason"]

    # The latest message per id must equal the current row.
    mismatched = [{"db": expected[i], "topic": r} for i, r in seen.items() if i in expected and expected[i] != r]
    missing = sorted(set(expected) - set(seen))
    unexpected = sorted(set(seen) - set(expected))
    print(json.dumps({
        "db_rows": len(rows),
        "db_valid": len(expected),
        "db_invalid_ids": invalid,
        "topic_messages": len(seen) + dups,
        "duplicates": dups,
        "duplicates_at": dup_at,
        "missing": missing[:20],
        "missing_count": len(missing),
        "unexpected": unexpected[:20],
        "mismatched": mismatched[:5],
        "mismatched_count": len(mismatched),
        "bad_header_or_key": bad_header,
        "dlq_ids": sorted(dlq),
        "dlq_reasons": {str(k): v for k, v in sorted(dlq.items())},
    }, default=str))


if __name__ == "__main__":
    main()
