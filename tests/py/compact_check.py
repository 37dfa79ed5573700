"""Outside checks for compaction: DuckDB (local lakes) or pyarrow (S3) over every table of
the lake. Prints JSON.

  compact_check.py digest LAKE            per table: rows, a multiset digest, files, folders
  compact_check.py digest-s3 PREFIX       the same for s3://lake/PREFIX on the local SeaweedFS
  compact_check.py bound LAKE MAX         fails unless every date folder holds at most MAX files
                                          (prints files per table per day, and a scan's time)
  compact_check.py reader LAKE STOP OUT   reads sales_windows and sales_raw in a loop until the
                                          file STOP exists; writes each answer to OUT (JSON)
"""
import json
import os
import sys
import time
from collections import defaultdict

TABLES = ["sales_windows", "sales_raw", "late_sales", "segment_sales", "sales_by_country",
          "sales_by_card_type", "top_products"]


def duck():
    import duckdb
    return duckdb.connect()


def table_digest(con, source):
    """Rows and the sum of every row's hash: a row seen twice, or missed, changes it."""
    n, d = con.sql(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR FROM {source} t").fetchall()[0]
    return {"rows": n, "digest": d}


def files_of(paths):
    folders = defaultdict(int)
    for p in paths:
        folders[p.rsplit("/", 1)[0]] += 1
    return {"files": len(paths), "folders": len(folders), "max_files_per_folder": max(folders.values(), default=0)}


def digest(lake):
    con, out = duck(), {}
    for t in TABLES:
        paths = []
        for root, _, names in os.walk(f"{lake}/{t}"):
            paths += [f"{root}/{n}" for n in names if n.endswith(".parquet") and not n.startswith(".")]
        if not paths:
            continue
        out[t] = table_digest(con, f"read_parquet('{lake}/{t}/**/*.parquet', hive_partitioning = 1)")
        out[t].update(files_of(paths))
    print(json.dumps(out, sort_keys=True))


def digest_s3(prefix):
    import pyarrow as pa
    import pyarrow.fs as fs
    import pyarrow.parquet as pq
    s3 = fs.S3FileSystem(access_key="jobs", secret_key="jobs-secret", endpoint_override="http://127.0.0.1:8333",
                         scheme="http", region="us-east-1")
    con, out = duck(), {}
    for t in TABLES:
        try:
            infos = s3.get_file_info(fs.FileSelector(f"lake/{prefix}/{t}", recursive=True))
        except FileNotFoundError:
            continue
        paths = sorted(f.path for f in infos if f.path.endswith(".parquet"))
        if not paths:
            continue
        tables = [pq.read_table(p, filesystem=s3) for p in paths]
        con.register("files", pa.concat_tables(tables))
        out[t] = table_digest(con, "files")
        con.unregister("files")
        out[t].update(files_of(paths))
    print(json.dumps(out, sort_keys=True))


def bound(lake, most):
    most, out, worst = int(most), {}, []
    for t in TABLES:
        folders = defaultdict(int)
        for root, _, names in os.walk(f"{lake}/{t}"):
            n = sum(1 for x in names if x.endswith(".parquet") and not x.startswith("."))
            if n:
                folders[root] += n
        if not folders:
            continue
        days = defaultdict(int)
        for f, n in folders.items():
            days[f.split("date=")[1][:10] if "date=" in f else "-"] += n
            if n > most:
                worst.append((f, n))
        out[t] = {"files": sum(folders.values()), "max_per_folder": max(folders.values()),
                  "max_per_day": max(days.values()), "days": len(days)}
    t0 = time.time()
    duck().sql(f"SELECT count(*), sum(total_revenue) FROM read_parquet('{lake}/sales_windows/**/*.parquet', hive_partitioning = 1)").fetchall()
    out["sales_windows_scan_s"] = round(time.time() - t0, 3)
    print(json.dumps(out, sort_keys=True))
    if worst:
        sys.exit(f"folders over {most} files: {worst[:5]}")


def reader(lake, stop, out_path):
    """A reader globbing while compaction runs: every answer it gets, and every error."""
    con, answers, errors = duck(), [], []
    while not os.path.exists(stop):
        for t in ["sales_windows", "sales_raw"]:
            try:
                a = table_digest(con, f"read_parquet('{lake}/{t}/**/*.parquet', hive_partitioning = 1)")
                answers.append({"table": t, **a, "at": time.time()})
            except Exception as e:  # noqa: BLE001 (reported, not hidden)
                errors.append({"table": t, "error": str(e).splitlines()[0][:300], "at": time.time()})
    with open(out_path, "w") as f:
        json.dump({"answers": answers, "errors": errors}, f)
    print(json.dumps({"answers": len(answers), "errors": len(errors)}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"digest": digest, "digest-s3": digest_s3, "bound": bound, "reader": reader}[cmd](*args)
