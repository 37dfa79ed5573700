"""Helpers of scripts/bench-cdc (the project venv's PyMySQL and redis).

  load        CHANGES row changes on <db>.products: 60% inserts, 30% updates, 10% deletes,
              10,000 rows per transaction (INSERT ... SELECT from MariaDB's sequence engine)
  wait        until jobs cdc's metrics count CHANGES messages of ops c, u, d and its saved
              (acknowledged) position is the binlog's head
  wait-redis  until jobs sync has caught up (the products documents equal the live rows' count)
  latency     RATE inserts per second for SECS seconds, one per transaction; the time from COMMIT
              returning to the SET of its document in Redis (keyspace notifications)
"""

import argparse
import json
import re
import threading
import time
import urllib.request

import pymysql
import redis


def conn(db):
    return pymysql.connect(host="127.0.0.1", port=3307, user="root", database=db, autocommit=True)


def load(a):
    c = conn(a.db).cursor()
    ins, upd = a.changes * 6 // 10, a.changes * 3 // 10
    dele = a.changes - ins - upd
    step = 10_000
    for lo in range(0, ins, step):
        n = min(step, ins - lo)
        c.execute(f"INSERT INTO products (id, name, category, brand, price, last_updated) "
                  f"SELECT {lo} + seq, CONCAT('product ', {lo} + seq), 'Home', 'Brand', (seq % 1000) + 0.99, "
                  f"'2026-12-03 10:00:00.000001' FROM seq_1_to_{n}")
    for lo in range(0, upd, step):
        n = min(step, upd - lo)
        start = lo % max(ins - n, 1)
        c.execute(f"UPDATE products SET price = price + 1, name = CONCAT(name, '+') "
                  f"WHERE id > {start} AND id <= {start + n}")
    for lo in range(0, dele, step):
        n = min(step, dele - lo)
        c.execute(f"DELETE FROM products WHERE id > {ins - lo - n} AND id <= {ins - lo}")


def wait(a):
    """Until every change is counted and the saved position (checkpointed after the broker
    acknowledged everything before it) has reached the binlog's head."""
    c = conn(a.db).cursor()
    c.execute("SHOW MASTER STATUS")
    file, pos = c.fetchone()[:2]
    head = (int(file.rsplit(".", 1)[1]), int(pos))
    deadline = time.time() + 3600
    while time.time() < deadline:
        try:
            text = urllib.request.urlopen(a.metrics, timeout=2).read().decode()
            n = sum(int(v) for op, v in re.findall(r'jobs_cdc_messages_total\{table="[^"]+",op="([cud])"\} (\d+)', text))
            saved = dict(re.findall(r'jobs_cdc_saved_position\{part="(\w+)"\} (\d+)', text))
            if n >= a.changes and saved and (int(saved["file"]), int(saved["pos"])) >= head:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("jobs cdc did not finish")


def wait_redis(a):
    """Until jobs sync has drained its backlog: Redis holds as many documents as the table has
    rows and has run no command for 2 s."""
    c = conn(a.db).cursor()
    c.execute("SELECT count(*) FROM products")
    want = c.fetchone()[0]
    r = redis.Redis(host="127.0.0.1", port=6379)
    while sum(1 for _ in r.scan_iter(match=f"{a.prefix}products:*", count=10_000)) < want:
        time.sleep(0.5)
    last = None
    while True:
        n = r.info("stats")["total_commands_processed"]
        if last is not None and n - last < 10:
            return
        last = n
        time.sleep(2)


def latency(a):
    r = redis.Redis(host="127.0.0.1", port=6379)
    r.config_set("notify-keyspace-events", "K$")
    p = r.pubsub()
    p.psubscribe(f"__keyspace@0__:{a.prefix}products:*")
    seen = {}
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            m = p.get_message(timeout=0.1)
            if m and m["type"] == "pmessage" and m["data"] == b"set":
                key = m["channel"].decode().rsplit(":", 1)[1]
                seen.setdefault(int(key), time.monotonic())

    t = threading.Thread(target=listen)
    t.start()
    time.sleep(0.5)
    c = conn(a.db).cursor()
    committed = {}
    base = 50_000_000
    n = a.rate * a.secs
    start = time.monotonic()
    for i in range(n):
        due = start + i / a.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        c.execute("INSERT INTO products (id, name, price) VALUES (%s, 'latency', 1.00)", (base + i,))
        committed[base + i] = time.monotonic()
    deadline = time.monotonic() + 30
    while len(seen) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    t.join()
    lat = sorted((seen[k] - v) * 1000 for k, v in committed.items() if k in seen)
    # No change seen at all (sync down, notifications off) still prints, with nulls.
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] if lat else None
    print(json.dumps({"rate": a.rate, "secs": a.secs, "n": n, "missing": n - len(lat),
                      "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["load", "wait", "wait-redis", "latency"])
    p.add_argument("--db")
    p.add_argument("--changes", type=int)
    p.add_argument("--metrics")
    p.add_argument("--prefix")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--secs", type=int, default=20)
    a = p.parse_args()
    {"load": load, "wait": wait, "wait-redis": wait_redis, "latency": latency}[a.mode](a)


if __name__ == "__main__":
    main()
