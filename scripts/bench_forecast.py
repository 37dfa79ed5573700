"""PySpark LinearRegression on the feature rows `bench_forecast` wrote: one model over all
products (how a Spark job fits it), timed fit + predict, WAPE on the held-out rows.

  bench_forecast.py OUT_DIR JOBS_JSON
"""
import json
import sys
import time

from pyspark.sql import SparkSession
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression
import pyspark.sql.functions as F


def main():
    out, jobs = sys.argv[1], json.loads(sys.argv[2])
    spark = (SparkSession.builder.master("local[2]").appName("bench-forecast")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "6g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    train = spark.read.parquet(f"{out}/train.parquet")
    test = spark.read.parquet(f"{out}/test.parquet")
    feats = [c for c in train.columns if c not in ("product_id", "label")]
    asm = VectorAssembler(inputCols=feats, outputCol="features")
    train = asm.transform(train).select("features", "label").cache()
    test = asm.transform(test).select("features", "label").cache()
    train.count(), test.count()
    t = time.perf_counter()
    model = LinearRegression(featuresCol="features", labelCol="label", solver="normal").fit(train)
    pred = model.transform(test).select(F.sum(F.abs(F.col("label") - F.greatest(F.col("prediction"), F.lit(0.0)))).alias("err"),
                                        F.sum("label").alias("units")).collect()[0]
    spark_s = time.perf_counter() - t
    spark_wape = pred["err"] / pred["units"]
    spark.stop()
    ours = jobs["fit_predict_seconds"]
    print(f"\nForecast: {jobs['products']} products x {jobs['days']} days ({jobs['train_rows']} training rows, "
          f"{jobs['test_rows']} held out = each product's last 7 days), 2 threads")
    print(f"{'contender':<44} {'fit+predict s':>14} {'x jobs':>8} {'WAPE':>8}")
    print(f"{'jobs: OLS per product (linfa-linear)':<44} {ours:>14.2f} {'1.0':>8} {jobs['wape_one_step']:>8.4f}")
    print(f"{'pyspark LinearRegression, one global model':<44} {spark_s:>14.2f} {spark_s / ours:>8.1f} {spark_wape:>8.4f}")
    print(f"(jobs' recursive 7-day forecast, as published, without the true lags: WAPE {jobs['wape_recursive_7d']:.4f})")
    print(json.dumps({"jobs": jobs, "pyspark": {"seconds": spark_s, "wape": spark_wape}}))


if __name__ == "__main__":
    main()
