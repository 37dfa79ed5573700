"""Hostile input for `jobs stream`, written and checked from outside with confluent-kafka and
fastavro. Prints JSON.

  hostile.py produce BROKERS TOPIC N SEED OUT.json   N hostile messages (kinds below, in turn,
                                                     random partitions); OUT gets each one's
                                                     partition, offset and kind
  hostile.py check BROKERS DLQ OUT.json              every hostile message dead-lettered once,
                                                     with a reason of its kind

Kinds: random bytes; valid Avro truncated; unknown schema ids; 1 MB values; valid Avro with
absurd dates (year 9999, before 1970), quantities (negative, overflowing) and prices
(negative, beyond decimal(12,2)), empty names.
"""
import io
import json
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = fastavro.parse_schema(json.loads((ROOT / "data/avro/product_sale.avsc").read_text()))


def framed(record, schema_id=1):
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, SCHEMA, record)
    return buf.getvalue()


def sale(rng, **over):
    r = {
        "transaction_id": rng.randrange(10**12, 2 * 10**12),
        "product_id": rng.randrange(1, 37),
        "product_name": "Dell Inspiron 15",
        "product_category": "Laptop",
        "brand": "Dell",
        "quantity_sold": rng.randrange(1, 5),
        "price_per_unit": Decimal("499.99"),
        "transaction_date": 1_763_510_400_000_000,  # 2026-11-19
        "customer_id": None,
        "country": "India",
        "card_type": "Visa",
    }
    r.update(over)
    return r


# (kind, a function of the generator giving the value, the reason's expected words)
KINDS = [
    ("random_bytes", lambda g: bytes(g.getrandbits(8) for _ in range(g.randrange(0, 200))), ""),
    ("truncated", lambda g: (lambda b: b[: g.randrange(5, len(b) - 1)])(framed(sale(g))), ""),
    ("unknown_schema_id", lambda g: framed(sale(g), schema_id=g.choice([0, 99, 4242, 2**31])), "schema id"),
    ("future_date", lambda g: framed(sale(g, transaction_date=253_402_300_799_000_000)), "transaction_date"),
    ("before_1970", lambda g: framed(sale(g, transaction_date=-g.randrange(1, 10**15))), "before 1970"),
    ("negative_quantity", lambda g: framed(sale(g, quantity_sold=-g.randrange(1, 2**31))), "quantity_sold"),
    ("overflowing_revenue", lambda g: framed(sale(g, quantity_sold=2**31 - 1, price_per_unit=Decimal("9999999999.99"))), ""),
    ("negative_price", lambda g: framed(sale(g, price_per_unit=Decimal("-0.01"))), "price_per_unit"),
    ("empty_name", lambda g: framed(sale(g, product_name="   ")), "product_name"),
    ("one_megabyte", lambda g: b"\x00\x00\x00\x00\x01" + bytes(g.getrandbits(8) for _ in range(16)) * 62_500, ""),
]


def produce(brokers, topic, n, seed, out):
    g = random.Random(seed)
    p = Producer({"bootstrap.servers": brokers, "message.max.bytes": 2_000_000, "linger.ms": 20})
    parts = len(p.list_topics(topic, timeout=10).topics[topic].partitions)
    sent = []

    def report(err, msg, kind):
        if err is not None:
            raise RuntimeError(f"{kind}: {err}")
        sent.append({"partition": msg.partition(), "offset": msg.offset(), "kind": kind})

    for i in range(n):
        kind, make, _ = KINDS[i % len(KINDS)]
        # A few 1 MB values are enough to prove the point without filling the broker.
        if kind == "one_megabyte" and i // len(KINDS) % 50 != 0:
            kind, make, _ = KINDS[0]
        value = make(g)
        while True:
            try:
                p.produce(topic, value=value, key=str(i).encode(), partition=g.randrange(parts),
                          on_delivery=lambda err, msg, kind=kind: report(err, msg, kind))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(120)
    assert len(sent) == n, (len(sent), n)
    Path(out).write_text(json.dumps(sent))
    counts = {}
    for s in sent:
        counts[s["kind"]] = counts.get(s["kind"], 0) + 1
    print(json.dumps({"produced": len(sent), "kinds": counts}))


def check(brokers, dlq, out):
    sent = {(s["partition"], s["offset"]): s["kind"] for s in json.loads(Path(out).read_text())}
    expect = {k: words for k, _, words in KINDS}
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"hostile-check-{time.time_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.message.max.bytes": 2_000_000})
    meta = c.list_topics(dlq, timeout=10).topics[dlq]
    c.assign([TopicPartition(dlq, p, 0) for p in meta.partitions])
    eof, seen, wrong, by_reason = set(), {}, [], {}
    deadline = time.time() + 120
    while len(eof) < len(meta.partitions) and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
            continue
        h = {k: v.decode() for k, v in (m.headers() or [])}
        if h.get("jobs.stage") == "ingest":
            continue
        at = (int(h["jobs.partition"]), int(h["jobs.offset"]))
        if at not in sent:
            wrong.append(f"a dead letter of a message not sent as hostile: {at} {h.get('jobs.reason')}")
            continue
        seen[at] = seen.get(at, 0) + 1
        kind, reason = sent[at], h.get("jobs.reason", "")
        by_reason.setdefault(kind, reason)
        if not reason or expect[kind] not in reason:
            wrong.append(f"{kind} at {at}: reason {reason!r}")
        if kind == "one_megabyte" and ("jobs.truncated" not in h or len(m.value()) != 256 * 1024):
            wrong.append(f"{kind} at {at}: not truncated to 256 KiB ({len(m.value())} bytes)")
    c.close()
    missing = [f"{sent[k]} at {k}" for k in sent if k not in seen]
    twice = [f"{sent[k]} at {k}" for k, n in seen.items() if n > 1]
    print(json.dumps({"dead_lettered": len(seen), "missing": missing[:10], "n_missing": len(missing),
                      "twice": twice[:10], "wrong": wrong[:10], "n_wrong": len(wrong),
                      "example_reasons": by_reason}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "produce":
        produce(args[0], args[1], int(args[2]), int(args[3]), args[4])
    elif cmd == "check":
        check(*args)
    else:
        sys.exit(f"unknown command {cmd}")
