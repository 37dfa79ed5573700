"""The peers of `scripts/bench-als`, run on the very data `models::als` was given, side by side.

  bench_als.py movielens OUT_DIR FACTORS ITERS RUNS.jsonl
      MovieLens-100k, the anchors' protocol: one split per seed (OUT_DIR/seed-N/train.tsv with
      quantity = rating, test.tsv), P@10 and nDCG@10 with binary relevance over the held-out
      products, training products left out of the ranking, averaged over the seeds. `jobs` as
      `jobs recommend` runs by default (settings tuned on a validation split of the training
      part only), popularity, `implicit` and PySpark ALS with the anchors' settings (chosen on a
      validation split carved from training); every fit timed at FACTORS and ITERS.
  bench_als.py synthetic MATRIX USERS ITEMS FACTORS ITERS JOBS_JSON
      `implicit` on the matrix `bench als synthetic` fitted (u32 customer, u32 product pairs).

NO_SPARK=1 leaves PySpark out (it needs a JVM and ~15 s a seed).
"""
import json
import math
import os
import sys
import time

# implicit asks for a single-threaded BLAS (it parallelises itself); set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

# The anchors' settings for the peers (shared/anchors.md), chosen on validation splits.
IMPLICIT = {"regularization": 10.0, "alpha": 1.0}
SPARK = {"regParam": 1.0, "alpha": 5.0}


def load(path, cols):
    return np.loadtxt(path, ndmin=2)[:, :cols]


def metrics(recs, test, k=10):
    p = n = 0.0
    users = 0
    for u, rel in test.items():
        if not rel:
            continue
        got = recs.get(u, [])[:k]
        hits = [1.0 if i in rel else 0.0 for i in got]
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), k)))
        p += sum(hits) / k
        n += dcg / idcg
        users += 1
    return p / users, n / users


def top_k(scores, seen, k=10):
    scores = scores.copy()
    scores[list(seen)] = -np.inf
    idx = np.argpartition(-scores, k)[:k]
    return [int(i) for i in sorted(idx, key=lambda i: (-scores[i], i))]


def read_recs(path):
    recs = {}
    for line in open(path):
        u, i, _ = line.split()
        recs.setdefault(int(u), []).append(int(i))
    return recs


def fit_implicit(matrix, factors, iters, regularization, alpha):
    from implicit.cpu.als import AlternatingLeastSquares
    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha, iterations=iters,
                                    num_threads=2, random_state=42, calculate_training_loss=False)
    t = time.perf_counter()
    model.fit(matrix, show_progress=False)
    return model, time.perf_counter() - t


def one_seed(out, factors, iters, run, spark):
    tr = load(f"{out}/train.tsv", 3)
    te = load(f"{out}/test.tsv", 2)
    tu, ti, tq = tr[:, 0].astype(np.int64), tr[:, 1].astype(np.int64), tr[:, 2].astype(np.float32)
    n_users, n_items = run["users"], run["items"]
    seen, test = {}, {}
    for u, i in zip(tu, ti):
        seen.setdefault(int(u), set()).add(int(i))
    for u, i in te.astype(np.int64):
        test.setdefault(int(u), set()).add(int(i))
    res = {}
    for name in ("default", "given"):
        r = run[name]
        label = f"jobs, tuned, {r['factors']} factors"
        res[label] = (r["seconds"], None) + metrics(read_recs(f"{out}/recs_jobs_{name}.tsv"), test)
    counts = np.bincount(ti, minlength=n_items).astype(np.float64)
    pop = {u: top_k(counts - np.arange(n_items) * 1e-9, seen.get(u, ())) for u in range(n_users)}
    res["popularity"] = (0.0, None) + metrics(pop, test)

    import implicit
    matrix = sp.csr_matrix((tq, (tu, ti)), shape=(n_users, n_items))
    model, fit = fit_implicit(matrix, factors, iters, **IMPLICIT)
    U, V = model.user_factors, model.item_factors
    recs = {u: top_k(V @ U[u], seen.get(u, ())) for u in range(n_users)}
    res[f"implicit {implicit.__version__}"] = (fit, fit) + metrics(recs, test)

    if spark is not None:
        from pyspark.ml.recommendation import ALS
        df = spark.createDataFrame([(int(u), int(i), float(q)) for u, i, q in zip(tu, ti, tq)],
                                   ["user", "item", "rating"]).cache()
        df.count()
        als = ALS(rank=factors, maxIter=iters, implicitPrefs=True, userCol="user", itemCol="item",
                  ratingCol="rating", seed=42, nonnegative=False, **SPARK)
        t = time.perf_counter()
        m = als.fit(df)
        uf = {r.id: np.array(r.features) for r in m.userFactors.collect()}
        fit = time.perf_counter() - t
        V = np.zeros((n_items, factors))
        for r in m.itemFactors.collect():
            V[r.id] = np.array(r.features)
        recs = {u: top_k(V @ f, seen.get(u, ())) for u, f in uf.items()}
        res[f"pyspark {spark.version}"] = (fit, fit) + metrics(recs, test)
        df.unpersist()
    return res


def movielens(out, factors, iters, runs_path):
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    spark = None
    if os.environ.get("NO_SPARK") != "1":
        from pyspark.sql import SparkSession
        spark = (SparkSession.builder.master("local[2]").appName("bench-als")
                 .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
    per_seed = []
    for run in runs:
        res = one_seed(f"{out}/seed-{run['seed']}", factors, iters, run, spark)
        per_seed.append((run, res))
    if spark is not None:
        spark.stop()

    seeds = [r["seed"] for r, _ in per_seed]
    jobs_fit = sum(r["fit_seconds"] for r, _ in per_seed) / len(per_seed)
    print(f"\nALS on MovieLens-100k (quantity = rating), seeds {seeds} averaged: {runs[0]['users']} customers x "
          f"{runs[0]['items']} products, ~{runs[0]['train']} purchases in training; every fit timed at {factors} "
          f"factors x {iters} iterations on 2 threads")
    print(f"  jobs' fit at those settings: {jobs_fit:.3f} s")
    print(f"{'contender':<32} {'seconds':>8} {'fit x jobs':>10} {'P@10':>8} {'nDCG@10':>8}   settings")
    names = list(per_seed[0][1].keys())
    summary = {"seeds": seeds, "factors": factors, "iterations": iters, "jobs_fit_seconds": jobs_fit}
    for name in names:
        rows = [res[name] for _, res in per_seed]
        secs = sum(r[0] for r in rows) / len(rows)
        fits = [r[1] for r in rows if r[1] is not None]
        ratio = f"{(sum(fits) / len(fits)) / jobs_fit:.1f}" if fits else "-"
        p = sum(r[2] for r in rows) / len(rows)
        n = sum(r[3] for r in rows) / len(rows)
        if name.startswith("jobs"):
            key = "default" if name.endswith(f" {per_seed[0][0]['default']['factors']} factors") else "given"
            settings = ", ".join(f"reg {r[key]['regularization']:g} alpha {r[key]['alpha']:g}" for r, _ in per_seed)
            settings = f"tuning + final fit; chosen: {settings}"
        elif name.startswith("implicit"):
            settings = f"reg {IMPLICIT['regularization']:g}, alpha {IMPLICIT['alpha']:g}"
        elif name.startswith("pyspark"):
            settings = f"regParam {SPARK['regParam']:g}, alpha {SPARK['alpha']:g}"
        else:
            settings = ""
        print(f"{name:<32} {secs:>8.3f} {ratio:>10} {p:>8.4f} {n:>8.4f}   {settings}")
        summary[name] = {"seconds": secs, "p_at_10": p, "ndcg_at_10": n,
                         "per_seed": [{"p_at_10": r[2], "ndcg_at_10": r[3]} for r in rows]}
    print(json.dumps(summary))


def synthetic(matrix_path, users, items, factors, iters, jobs_json):
    jobs = json.loads(jobs_json)
    pairs = np.fromfile(matrix_path, dtype="<u4").reshape(-1, 2)
    matrix = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])),
                           shape=(users, items))
    del pairs
    import implicit
    _, fit = fit_implicit(matrix, factors, iters, **IMPLICIT)
    print(f"  implicit {implicit.__version__} on the same matrix: fit {fit:.2f} s "
          f"= {fit / jobs['fit_seconds']:.2f}x jobs' {jobs['fit_seconds']:.2f} s")
    print(json.dumps({"jobs": jobs, "implicit_fit_seconds": fit}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "movielens":
        movielens(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif mode == "synthetic":
        synthetic(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    else:
        sys.exit(__doc__)
