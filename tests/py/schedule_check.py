"""Outside reads for the `jobs schedule` tests, with DuckDB. Prints JSON.

  schedule_check.py runs HISTORY_DIR
      {types: {column: duckdb type}, runs: [{entry, trigger, attempt, status, exit_code,
       scheduled_for, started, ended (epoch seconds, float), duration_s, log_tail}...]}
  schedule_check.py forecasts LAKE RUN_DATE
      {rows: N}  rows of forecasts/run_date=RUN_DATE
"""
import json
import sys

import duckdb


def runs(history_dir):
    c = duckdb.connect()
    c.sql(f"CREATE VIEW r AS SELECT * FROM read_json('{history_dir}/runs.jsonl')")
    rel = c.sql("SELECT * FROM r")
    types = {name: str(t) for name, t in zip(rel.columns, rel.types)}
    rows = c.sql("""SELECT entry, trigger, attempt, status, exit_code,
                           epoch(scheduled_for), epoch(started), epoch(ended), duration_s, log_tail
                    FROM r ORDER BY started, entry, attempt""").fetchall()
    keys = ["entry", "trigger", "attempt", "status", "exit_code", "scheduled_for", "started", "ended",
            "duration_s", "log_tail"]
    return {"types": types, "runs": [dict(zip(keys, r)) for r in rows]}


def forecasts(lake, run_date):
    c = duckdb.connect()
    n = c.sql(f"SELECT count(*) FROM read_parquet('{lake}/forecasts/run_date={run_date}/*.parquet')").fetchall()[0][0]
    return {"rows": n}


def main():
    cmd = sys.argv[1]
    if cmd == "runs":
        out = runs(sys.argv[2])
    elif cmd == "forecasts":
        out = forecasts(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
