"""Outside reads of the business outputs of `jobs stream`: DuckDB over the lake, confluent-kafka
+ fastavro over the topics, the SQL tables (PyMySQL / psycopg / sqlite3) and Redis. Prints JSON.

  outputs_check.py all LAKE BROKERS TOPIC_PREFIX GROUP SQL_URL REDIS_URL
      {lake: {...}, topics: {...}, sql: {...}, redis: {...}}; every part sorted, for equality
      and exact expectations. REDIS_URL may be "-" (not used).
  outputs_check.py json-topic BROKERS TOPIC GROUP
      the JSON values of one stream output topic written by GROUP, in offset order per partition
"""
import io
import json
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

from stream_check import read_all  # noqa: E402 (tests/py is the script's folder)

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = {e["id"]: e["file"] for e in json.loads((ROOT / "data/avro/registry.json").read_text())["schemas"]}


def s(v):
    if isinstance(v, Decimal) and v.as_tuple().exponent < 0:
        return f"{v:.2f}"
    return str(v)


def lake_part(lake):
    import duckdb
    c = duckdb.connect()
    q = {
        "sales_totals": "SELECT product_id, product_name, total_quantity_sold, total_revenue, order_count, last_event_time FROM t",
        "segment_sales": """SELECT "window", window_start, customer_segment, product_id, total_quantity_sold, total_revenue, order_count FROM t""",
        "sales_by_country": """SELECT "window", window_start, country, sum(total_quantity_sold), sum(total_revenue), sum(order_count) FROM t GROUP BY ALL""",
        "sales_by_card_type": """SELECT "window", window_start, card_type, sum(total_quantity_sold), sum(total_revenue), sum(order_count) FROM t GROUP BY ALL""",
        # The global top N: the best of the union of the partitions' lists.
        "top_products": """SELECT metric, "window", window_start, rank, product_id, total_quantity_sold, total_revenue FROM (
              SELECT *, row_number() OVER (PARTITION BY metric, "window", window_start ORDER BY
                 CASE WHEN metric = 'quantity' THEN total_quantity_sold ELSE 0 END DESC,
                 total_revenue DESC, total_quantity_sold DESC, product_id) AS rank FROM t)""",
    }
    out = {}
    for table, sql in q.items():
        try:
            c.sql(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet('{lake}/{table}/**/*.parquet', hive_partitioning=1)")
            rows = c.sql(sql + " ORDER BY ALL").fetchall()
        except duckdb.IOException:
            rows = []
        out[table] = [[s(v) for v in r] for r in rows]
    return out


def decode(v):
    import fastavro
    assert v[0] == 0, "Confluent magic byte"
    sid = int.from_bytes(v[1:5], "big")
    schema = fastavro.parse_schema(json.loads((ROOT / "data/avro" / REGISTRY[sid]).read_text()))
    return fastavro.schemaless_reader(io.BytesIO(v[5:]), schema)


def topics_part(brokers, prefix, group):
    out = {}
    for name in ["totals", "top", "segments", "alerts"]:
        rows = []
        for m in read_all(brokers, f"{prefix}_{name}"):
            h = {k: v.decode() for k, v in (m.headers() or [])}
            if h.get("jobs.group") != group:
                continue
            r = decode(m.value())
            rows.append((m.partition(), m.offset(), h["jobs.idempotency_key"], m.key().decode(), r))
        rows.sort(key=lambda r: (r[0], r[1]))
        keys = [r[2] for r in rows]
        out[f"{name}_duplicates"] = len(keys) - len(set(keys))
        if name == "totals":
            # Compacted view: the newest per product; and each product's orders only grow.
            last, regress = {}, 0
            for _, _, _, k, r in rows:
                if k in last and r["order_count"] <= last[k]["order_count"]:
                    regress += 1
                last[k] = r
            out["totals"] = sorted([[r["product_id"], r["product_name"], r["total_quantity_sold"], s(r["total_revenue"]),
                                     r["order_count"]] for r in last.values()])
            out["totals_regressions"] = regress
        elif name == "top":
            merged = {}
            for _, _, _, k, r in rows:
                merged.setdefault((r["metric"], r["window"], s(r["window_start"])), []).extend(r["products"])
            lists = []
            for (metric, w, start), ps in sorted(merged.items()):
                if metric == "quantity":
                    ps.sort(key=lambda p: (-p["total_quantity_sold"], -p["total_revenue"], p["product_id"]))
                else:
                    ps.sort(key=lambda p: (-p["total_revenue"], -p["total_quantity_sold"], p["product_id"]))
                lists.append([metric, w, start, [[p["product_id"], p["total_quantity_sold"], s(p["total_revenue"])] for p in ps]])
            out["top"] = lists
        elif name == "segments":
            out["segments"] = sorted([[r["window"], s(r["window_start"]), r["customer_segment"], r["product_id"],
                                       r["total_quantity_sold"], s(r["total_revenue"]), r["order_count"], k] for *_, k, r in rows])
        else:
            out["alerts"] = [[r["kind"], r["product_id"], r["stock_level"], r["units_sold_since"], r["updated_stock"],
                              r["threshold"], s(r["event_time"])] for *_, r in rows]
    return out


def connect(url):
    u = urlparse(url)
    if u.scheme == "sqlite":
        return sqlite3.connect(url.split("://", 1)[1].split("?")[0])
    if u.scheme in ("mysql", "mariadb"):
        import pymysql
        return pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                               password=u.password or "", database=u.path.lstrip("/"))
    import psycopg
    return psycopg.connect(url.replace("postgresql://", "postgres://", 1).replace("postgres://", "postgresql://", 1))


def sql_part(url):
    con = connect(url)
    cur = con.cursor()
    out = {}
    for name, sql in {
        "sales_by_country": "SELECT window_spec, window_start, country, total_quantity_sold, total_revenue, order_count FROM sales_by_country",
        "sales_by_card_type": "SELECT window_spec, window_start, card_type, total_quantity_sold, total_revenue, order_count FROM sales_by_card_type",
        "top_products": "SELECT metric, window_spec, window_start, product_id, total_quantity_sold, total_revenue, order_count FROM top_products",
    }.items():
        try:
            cur.execute(sql)
            rows = cur.fetchall()
        except Exception as e:  # the tables exist once `jobs stream` ran with SQL outputs on
            con.rollback()
            rows = [["error", str(e)]]
        norm = []
        for r in rows:
            vals = []
            for v in r:
                if isinstance(v, float):
                    v = Decimal(str(v))
                if hasattr(v, "isoformat"):
                    v = v.isoformat(sep=" ")
                vals.append(s(v))
            # SQLite keeps timestamps as text with 6 decimals; the others drop zeros.
            vals = [v[:19] if len(v) >= 19 and v[4] == "-" and v[10] == " " else v for v in vals]
            norm.append(vals)
        out[name] = sorted(norm)
    con.close()
    return out


def redis_part(url, group):
    if url == "-":
        return {}
    import socket
    u = urlparse(url)

    def cmd(sock, *args):
        msg = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
        sock.sendall(msg.encode())
        return parse(sock.makefile("rb"))

    def parse(f):
        line = f.readline().decode().rstrip("\r\n")
        t, rest = line[0], line[1:]
        if t in "+-":
            return rest
        if t == ":":
            return int(rest)
        if t == "$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2].decode()
        if t == "*":
            return [parse(f) for _ in range(int(rest))]
        raise ValueError(line)

    out = {}
    with socket.create_connection((u.hostname, u.port or 6379)) as sock:
        keys = sorted(cmd(sock, "KEYS", f"jobs:{group}:top:*"))
        for k in keys:
            short = k[len(f"jobs:{group}:"):]
            if k.endswith(":windows"):
                out[short] = cmd(sock, "ZRANGE", k, 0, -1)
            else:
                vals = cmd(sock, "ZRANGE", k, 0, -1, "REV", "WITHSCORES")
                out[short] = [[vals[i], vals[i + 1]] for i in range(0, len(vals), 2)]
        out["ttl_ok"] = all(cmd(sock, "TTL", k) > 0 for k in keys)
    return out


def all_(lake, brokers, prefix, group, sql_url, redis_url):
    print(json.dumps({"lake": lake_part(lake), "topics": topics_part(brokers, prefix, group),
                      "sql": sql_part(sql_url), "redis": redis_part(redis_url, group)}))


def json_topic(brokers, topic, group):
    rows = []
    for m in read_all(brokers, topic):
        h = {k: v.decode() for k, v in (m.headers() or [])}
        if h.get("jobs.group") == group:
            # Decimal numbers kept as their text: "1500.00" shows the money is exact.
            rows.append((m.partition(), m.offset(), json.loads(m.value(), parse_float=str)))
    print(json.dumps([r[2] for r in sorted(rows, key=lambda r: (r[0], r[1]))]))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"all": all_, "json-topic": json_topic}[cmd](*args)
