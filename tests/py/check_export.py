"""Outside check of `jobs export-json`: the JSON-lines files equal the topic, decoded with
confluent-kafka + fastavro, partition by partition and in offset order.

Usage: check_export.py --brokers B --topic T --dir D
"""
import argparse
import io
import json
from decimal import Decimal
from pathlib import Path

import fastavro
from confluent_kafka.admin import AdminClient

from stream_check import read_all  # tests/py is the script's folder

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    schema = fastavro.parse_schema(json.loads((ROOT / "data/avro/product.avsc").read_text()))
    parts = list(AdminClient({"bootstrap.servers": a.brokers}).list_topics(a.topic, timeout=10).topics[a.topic].partitions)
    want = {p: [] for p in parts}
    for m in read_all(a.brokers, a.topic):
        r = fastavro.schemaless_reader(io.BytesIO(m.value()[5:]), schema)
        want[m.partition()].append({
            "id": r["id"], "name": r["name"], "category": r["category"], "brand": r["brand"],
            "price": str(r["price"]), "last_updated": r["last_updated"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        })
    got = {}
    for p in parts:
        f = Path(a.dir) / f"{a.topic}-{p}.jsonl"
        lines = f.read_text().splitlines() if f.exists() else []
        got[p] = []
        for line in lines:
            o = json.loads(line, parse_float=Decimal)
            o["price"] = str(o["price"])
            got[p].append(o)
    diffs = [p for p in parts if got[p] != want[p]]
    print(json.dumps({
        "topic": sum(len(v) for v in want.values()),
        "files": sum(len(v) for v in got.values()),
        "differing_partitions": diffs,
        "example": (want[diffs[0]][:1], got[diffs[0]][:1]) if diffs else None,
    }))


if __name__ == "__main__":
    main()
