"""ALS on MovieLens-100k: `implicit` and PySpark on the split `bench_als movielens` wrote, and
the same P@10 / nDCG@10 for every contender (and for popularity). Prints a table and JSON.

  bench_als.py OUT_DIR FACTORS REG ALPHA ITERS JOBS_JSON
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


def load(path):
    a = np.loadtxt(path, dtype=np.int64, ndmin=2)
    return a[:, 0], a[:, 1]


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


def main():
    out, factors, reg, alpha, iters, jobs_json = sys.argv[1:7]
    factors, reg, alpha, iters = int(factors), float(reg), float(alpha), int(iters)
    jobs = json.loads(jobs_json)
    tu, ti = load(f"{out}/train.tsv")
    eu, ei = load(f"{out}/test.tsv")
    n_users, n_items = jobs["users"], jobs["items"]
    seen = {}
    for u, i in zip(tu, ti):
        seen.setdefault(int(u), set()).add(int(i))
    test = {}
    for u, i in zip(eu, ei):
        test.setdefault(int(u), set()).add(int(i))
    results = {}

    recs = {}
    for line in open(f"{out}/recs_jobs.tsv"):
        u, i, _ = line.split()
        recs.setdefault(int(u), []).append(int(i))
    results["jobs (models::als)"] = (jobs["fit_seconds"],) + metrics(recs, test)
    # As `jobs recommend` runs by default: settings tuned on a validation split of the
    # training part (9 fits), then one fit on all of it; time = tuning + the final fit.
    tuned = {}
    for line in open(f"{out}/recs_jobs_tuned.tsv"):
        u, i, _ = line.split()
        tuned.setdefault(int(u), []).append(int(i))
    name = f"jobs, tuned (reg {jobs['tuned_regularization']:g}, alpha {jobs['tuned_alpha']:g})"
    results[name] = (jobs["tuned_seconds"],) + metrics(tuned, test)

    # Popularity: most distinct users first, then lower id.
    counts = np.bincount(ti, minlength=n_items).astype(np.float64)
    pop = {u: top_k(counts - np.arange(n_items) * 1e-9, seen.get(u, ())) for u in range(n_users)}
    results["popularity"] = (0.0,) + metrics(pop, test)

    # implicit, given the same confidence 1 + alpha * 1 (its own alpha multiplies: set to 1).
    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    conf = sp.csr_matrix((np.full(len(tu), 1.0 + alpha, dtype=np.float32), (tu, ti)), shape=(n_users, n_items))
    # implicit's lambda is not scaled by counts: give it the same average penalty as our
    # per-purchase lambda (reg x purchases per user).
    implicit_reg = reg * len(tu) / n_users
    model = AlternatingLeastSquares(factors=factors, regularization=implicit_reg, alpha=1.0, iterations=iters,
                                    num_threads=2, random_state=42, calculate_training_loss=False)
    t = time.perf_counter()
    model.fit(conf, show_progress=False)
    fit = time.perf_counter() - t
    U, V = model.user_factors, model.item_factors
    recs = {u: top_k(V @ U[u], seen.get(u, ())) for u in range(n_users)}
    results[f"implicit {implicit.__version__} (reg {implicit_reg:.1f})"] = (fit,) + metrics(recs, test)

    # PySpark ALS, local[2], implicit preferences (its confidence is 1 + alpha * r, r = 1).
    from pyspark.sql import SparkSession
    from pyspark.ml.recommendation import ALS
    import pyspark
    spark = (SparkSession.builder.master("local[2]").appName("bench-als")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame([(int(u), int(i), 1.0) for u, i in zip(tu, ti)], ["user", "item", "rating"]).cache()
    df.count()
    # Spark scales regParam by each user's (item's) number of ratings (ALS-WR), as we do.
    spark_reg = reg
    als = ALS(rank=factors, maxIter=iters, regParam=spark_reg, implicitPrefs=True, alpha=alpha, userCol="user",
              itemCol="item", ratingCol="rating", seed=42, nonnegative=False)
    t = time.perf_counter()
    m = als.fit(df)
    uf = {r.id: np.array(r.features) for r in m.userFactors.collect()}
    fit = time.perf_counter() - t
    itf = {r.id: np.array(r.features) for r in m.itemFactors.collect()}
    V = np.zeros((n_items, factors))
    for i, f in itf.items():
        V[i] = f
    recs = {u: top_k(V @ f, seen.get(u, ())) for u, f in uf.items()}
    results[f"pyspark {pyspark.__version__} (reg {spark_reg:.3f})"] = (fit,) + metrics(recs, test)
    spark.stop()

    base = results["jobs (models::als)"][0]
    print(f"\nALS on MovieLens-100k: {n_users} users x {n_items} items, {len(tu)} train / {len(eu)} held out; "
          f"factors {factors}, reg {reg} per purchase (ALS-WR), alpha {alpha}, {iters} iterations, 2 threads")
    print(f"{'contender':<32} {'fit s':>8} {'x jobs':>8} {'P@10':>8} {'nDCG@10':>8}")
    for name, (fit, p, n) in results.items():
        ratio = f"{fit / base:.1f}" if fit else "-"
        print(f"{name:<32} {fit:>8.3f} {ratio:>8} {p:>8.4f} {n:>8.4f}")
    print(json.dumps({k: {"fit_seconds": v[0], "p_at_10": v[1], "ndcg_at_10": v[2]} for k, v in results.items()}))


if __name__ == "__main__":
    main()
