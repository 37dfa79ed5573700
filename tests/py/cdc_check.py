"""Outside checks of `jobs cdc` and `jobs sync`, with clients that share no code with jobs.

  sinks:  every row of each source table (PyMySQL, SELECT *) against its Redis document and
          its PostgreSQL JSONB document, column by column, with Debezium's mapping computed
          here (DECIMAL -> exact string, DATETIME(0-3) -> ms, DATETIME(4-6) -> us since the
          epoch, TIMESTAMP -> ISO UTC, DATE -> days); and no document without a source row.
  topics: every message of each table topic (confluent-kafka): per partition the jobs.cdc.pos
          headers strictly increase (nothing twice), and the ops equal the row events that
          mariadb-binlog decodes from the server for the same database since the snapshot.
  read:   every value of a topic, as JSON.
  batch:  a topic copied into one record batch of a new one-partition topic, a group
          committed inside it (the restart of `jobs sync` inside the last batch).
  junk:   a new one-partition topic holding only a tombstone and an unreadable value.
  append: every message of a topic appended to another, headers and all.

Prints one JSON object.
"""

import argparse
import datetime as dt
import decimal
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict

import psycopg
import pymysql
import redis
from confluent_kafka import Consumer, TopicPartition

EPOCH = dt.datetime(1970, 1, 1)


def mysql_conn(url):
    m = re.match(r"mysql://([^:@]+)(?::([^@]*))?@([^:/]+):(\d+)/(\w+)", url)
    user, pw, host, port, db = m.groups()
    return pymysql.connect(host=host, port=int(port), user=user, password=pw or "", database=db,
                           cursorclass=pymysql.cursors.DictCursor, autocommit=True), db, (host, port, user)


def columns(conn, db, table):
    with conn.cursor() as c:
        c.execute("SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION FROM information_schema.COLUMNS "
                  "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION", (db, table))
        cols = c.fetchall()
        c.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA=%s "
                  "AND TABLE_NAME=%s AND CONSTRAINT_NAME='PRIMARY' ORDER BY ORDINAL_POSITION", (db, table))
        key = [r["COLUMN_NAME"] for r in c.fetchall()]
    return cols, key


def expected(value, data_type, precision):
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        return str(value)
    if data_type == "datetime":
        us = (value - EPOCH) // dt.timedelta(microseconds=1)
        return us if (precision or 0) > 3 else us // 1000
    if data_type == "timestamp":
        s = value.strftime("%Y-%m-%dT%H:%M:%S")
        if precision:
            s += "." + f"{value.microsecond:06d}"[:precision]
        return s + "Z"
    if data_type == "date":
        return (value - EPOCH.date()).days
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    return value


def sinks(a):
    conn, db, _ = mysql_conn(a.mysql)
    r = redis.Redis(host="127.0.0.1", port=6379)
    pg = psycopg.connect(a.pg, autocommit=True)
    out = {}
    for table in a.tables.split(","):
        cols, key = columns(conn, db, table)
        with conn.cursor() as c:
            c.execute(f"SELECT * FROM `{table}`")
            rows = c.fetchall()
        want = {}
        for row in rows:
            k = ":".join(str(row[c]) for c in sorted(key))
            want[k] = {c["COLUMN_NAME"]: expected(row[c["COLUMN_NAME"]], c["DATA_TYPE"], c["DATETIME_PRECISION"])
                       for c in cols}
        # Redis: one JSON string per row, nothing else under the table's prefix.
        prefix = f"{a.redis_prefix}{table}:"
        got_redis = {}
        for k in r.scan_iter(match=prefix + "*", count=1000):
            v = r.get(k)
            if v is not None:  # deleted between the scan and the read: sync is still running
                got_redis[k.decode()[len(prefix):]] = json.loads(v)
        with pg.cursor() as c:
            c.execute("SELECT to_regclass(%s)", (f'"{a.pg_schema}"."{table}"',))
            if c.fetchone()[0] is None:
                got_pg = {}  # not created yet: sync has written nothing of this table
            else:
                c.execute(f'SELECT id, doc FROM "{a.pg_schema}"."{table}" WHERE NOT deleted')
                got_pg = {i: d for i, d in c.fetchall()}
        # A column an ALTER TABLE added shows in a row's document at its next change (the
        # ALTER itself writes no row events, in Debezium as here): until then the source holds
        # the column's default.
        added = dict(x.split("=", 1) for x in a.added if x.startswith(table + "."))
        def same(src, doc):
            if src is None or doc is None:
                return src == doc
            for col, default in added.items():
                col = col.split(".", 1)[1]
                if col not in doc and str(src.get(col)) == default:
                    src = {k: v for k, v in src.items() if k != col}
            return src == doc
        bad = []
        for name, got in (("redis", got_redis), ("postgres", got_pg)):
            for k in sorted(set(want) | set(got)):
                if not same(want.get(k), got.get(k)):
                    bad.append({"sink": name, "key": k, "source": want.get(k), "sink_doc": got.get(k)})
        out[table] = {"source": len(want), "redis": len(got_redis), "postgres": len(got_pg),
                      "mismatches": len(bad), "first": bad[:3]}
    print(json.dumps(out, default=str))


def messages(brokers, group, topic):
    """Every message of `topic`, partition by partition in offset order, to the end."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        c.close()  # not created yet: nothing written to it so far
        return
    parts = sorted(md.partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done = set()
    try:
        while len(done) < len(parts):
            m = c.poll(5)
            if m is None:
                break
            if m.error():
                if m.error().code() == -191:  # end of a partition
                    done.add(m.partition())
                    continue
                raise RuntimeError(m.error())
            yield m
    finally:
        c.close()


def binlog_counts(a, db, start_file, start_pos):
    _, _, (host, port, user) = mysql_conn(a.mysql)
    cmd = ["mariadb-binlog", "--read-from-remote-server", f"--host={host}", f"--port={port}", f"--user={user}",
           "--base64-output=decode-rows", "--verbose", "--to-last-log", f"--start-position={start_pos}", start_file]
    # The binlog holds every test's events, and mariadb-binlog may cut a long statement's
    # text inside a multi-byte character: decode leniently (only the row events of our
    # database are counted).
    text = subprocess.run(cmd, check=True, capture_output=True, text=True, errors="replace").stdout
    counts = Counter()
    pat = re.compile(r"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]+)`\.`([^`]+)`")
    for line in text.splitlines():
        m = pat.match(line)
        if m and m.group(2) == db:
            op = {"INSERT INTO": "c", "UPDATE": "u", "DELETE FROM": "d"}[m.group(1)]
            counts[(m.group(3), op)] += 1
    return counts


def topics(a):
    _, db, _ = mysql_conn(a.mysql)
    out = {"tables": {}}
    first_change = None
    for table in a.tables.split(","):
        topic = f"{a.prefix}.{db}.{table}"
        last, dup, ops, keychanges = {}, 0, Counter(), 0
        snapshot_at = None
        for m in messages(a.brokers, f"{a.group}-{table}", topic):
            pos = dict(m.headers() or []).get("jobs.cdc.pos", b"").decode()
            if m.partition() in last and pos <= last[m.partition()]:
                dup += 1
            last[m.partition()] = pos
            if m.value() is None:
                ops["tombstone"] += 1
                continue
            v = json.loads(m.value())
            ops[v["op"]] += 1
            if pos.endswith(".2"):
                keychanges += 1
            # A snapshot cut off by a crash is taken again later: the binlog is read from
            # the last one's position.
            if v["op"] == "r":
                at = (v["source"]["file"], v["source"]["pos"])
                snapshot_at = max(snapshot_at or at, at)
            if v["op"] != "r":
                key = (v["source"]["file"], v["source"]["pos"])
                if first_change is None or key < first_change:
                    first_change = key
        out["tables"][table] = {"ops": dict(ops), "duplicates": dup, "key_changes": keychanges,
                                "snapshot_at": snapshot_at}
        if snapshot_at:
            out["snapshot_at"] = max(out.get("snapshot_at") or snapshot_at, snapshot_at)
    start = out.get("snapshot_at") or first_change
    counts = binlog_counts(a, db, start[0], start[1] if out.get("snapshot_at") else 4) if start else Counter()
    ok = True
    for table, t in out["tables"].items():
        k = t["key_changes"]
        got = {"c": t["ops"].get("c", 0) - k, "u": t["ops"].get("u", 0) + k, "d": t["ops"].get("d", 0) - k}
        want = {op: counts[(table, op)] for op in "cud"}
        t["binlog"] = want
        t["equal"] = got == want and t["duplicates"] == 0 and t["ops"].get("tombstone", 0) == t["ops"].get("d", 0)
        ok &= t["equal"]
    out["ok"] = ok
    print(json.dumps(out))


def read(a):
    """Every value of a topic, decoded as JSON (null for a tombstone)."""
    out = [json.loads(m.value()) if m.value() is not None else None
           for m in messages(a.brokers, a.group, a.topic)]
    print(json.dumps(out))


def batch(a):
    """Every message of --topic copied, headers and all, into --to (created with one
    partition) in one producer batch; then --group committed at the end minus --tail there.
    Prints the copied count, the committed offset, the high watermark and the keys of the
    messages from the committed offset on."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    msgs = list(messages(a.brokers, a.group + "-src", a.topic))
    admin = AdminClient({"bootstrap.servers": a.brokers})
    for f in admin.create_topics([NewTopic(a.to, num_partitions=1, replication_factor=1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": a.brokers, "linger.ms": 3000, "batch.num.messages": 100000,
                  "batch.size": 16 << 20, "enable.idempotence": False, "compression.type": "none"})
    for m in msgs:
        p.produce(a.to, key=m.key(), value=m.value(), headers=m.headers(), partition=0)
    left = p.flush(30)
    if left:
        raise RuntimeError(f"{left} messages not delivered to {a.to}")
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group, "enable.auto.commit": False})
    # The copy's offsets are 0..n-1. Tansu 0.6.0 reports the high watermark as the last
    # batch's base offset + 1 (1 here), which is part of what the test is about.
    low, high = c.get_watermark_offsets(TopicPartition(a.to, 0), timeout=10, cached=False)
    at = len(msgs) - a.tail
    c.commit(offsets=[TopicPartition(a.to, 0, at)], asynchronous=False)
    c.close()
    tail = [m.key().decode() for m in msgs[len(msgs) - a.tail:]]
    print(json.dumps({"copied": len(msgs), "committed": at, "high": high, "tail_keys": tail}))


def junk(a):
    """--to created with one partition, holding a tombstone and a value that is not JSON:
    nothing a sink could apply."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": a.brokers})
    for f in admin.create_topics([NewTopic(a.to, num_partitions=1, replication_factor=1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": a.brokers})
    p.produce(a.to, key=b'{"id":1}', value=None, partition=0)
    p.produce(a.to, key=b'{"id":2}', value=b"not json", partition=0)
    if p.flush(30):
        raise RuntimeError(f"undelivered messages to {a.to}")
    print(json.dumps({"produced": 2}))


def append(a):
    """Every message of --topic appended to --to (one partition), headers and all."""
    from confluent_kafka import Producer
    msgs = list(messages(a.brokers, a.group + "-src", a.topic))
    p = Producer({"bootstrap.servers": a.brokers})
    for m in msgs:
        p.produce(a.to, key=m.key(), value=m.value(), headers=m.headers(), partition=0)
    if p.flush(30):
        raise RuntimeError(f"undelivered messages to {a.to}")
    print(json.dumps({"appended": len(msgs)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["sinks", "topics", "read", "batch", "junk", "append"])
    p.add_argument("--to")
    p.add_argument("--tail", type=int, default=3)
    p.add_argument("--mysql")
    p.add_argument("--tables")
    p.add_argument("--topic")
    p.add_argument("--redis-prefix", default="")
    p.add_argument("--added", action="append", default=[], help="table.column=default of a column added mid-stream")
    p.add_argument("--pg")
    p.add_argument("--pg-schema", default="cdc")
    p.add_argument("--brokers", default="127.0.0.1:9092")
    p.add_argument("--prefix", default="cdc")
    p.add_argument("--group", default="cdc-check")
    a = p.parse_args()
    {"sinks": sinks, "topics": topics, "read": read, "batch": batch, "junk": junk, "append": append}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
