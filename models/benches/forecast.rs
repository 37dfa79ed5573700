//! Benchmark harness for `models::forecast`, run by `scripts/bench-forecast` as
//! `cargo bench -p models --bench forecast -- ...` (the library stays free of IO; this
//! harness writes the benchmark's files).
//!
//! `forecast PRODUCTS DAYS OUT_DIR` makes a seeded synthetic history (weekly pattern,
//! trend, price changes with elasticity, Poisson noise), holds out each product's last 7
//! days, fits one OLS model per product on the rest and scores one-step-ahead forecasts of
//! the held-out days (features from the true history, as a feature-table model such as
//! PySpark's sees them). Writes the same training and test rows to `OUT_DIR/train.parquet`
//! and `test.parquet` for the peer, and prints the time and WAPE as JSON.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{Float64Builder, Int64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use models::features::{self, Calendar, Granularity, Series};
use models::forecast::{self, Method};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const HOLDOUT: usize = 7;
const DAY: Granularity = Granularity::Day;
/// Daily features.
const N: usize = 16;

fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    // Knuth for small means, normal approximation above.
    if mean > 30.0 {
        let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
        return (mean + z * mean.sqrt()).round().max(0.0);
    }
    let (l, mut k, mut p) = ((-mean).exp(), 0.0, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1.0;
    }
}

fn synthetic(products: usize, days: usize) -> Vec<Series> {
    (0..products)
        .map(|p| {
            let mut rng = ChaCha8Rng::seed_from_u64(p as u64);
            let level = (rng.random::<f64>() * 3.5).exp(); // 1 .. 33 units a day
            let trend = rng.random_range(-0.4..0.8) / days as f64;
            let weekly: Vec<f64> = (0..7).map(|_| rng.random_range(0.7..1.4)).collect();
            let list: f64 = rng.random_range(5.0..1500.0);
            let mut price = list;
            let mut q = Vec::with_capacity(days);
            let mut pr = Vec::with_capacity(days);
            for d in 0..days {
                if rng.random::<f64>() < 0.01 {
                    price = list * rng.random_range(0.75..1.05);
                }
                let mean = level
                    * (1.0 + trend * d as f64)
                    * weekly[features::day_of_week(d as i64)]
                    * (price / list).powf(-1.5);
                q.push(poisson(&mut rng, mean.max(0.0)));
                pr.push(price);
            }
            Series {
                first_day: 0,
                quantity: q,
                price: pr,
            }
        })
        .collect()
}

fn table(rows: &[(i64, [f64; N], f64)]) -> RecordBatch {
    let mut fields = vec![Field::new("product_id", DataType::Int64, false)];
    fields.extend(
        DAY.names()
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, false)),
    );
    fields.push(Field::new("label", DataType::Float64, false));
    let mut id = Int64Builder::with_capacity(rows.len());
    let mut cols: Vec<Float64Builder> = (0..=N)
        .map(|_| Float64Builder::with_capacity(rows.len()))
        .collect();
    for (p, x, y) in rows {
        id.append_value(*p);
        for (c, v) in cols.iter_mut().zip(x) {
            c.append_value(*v);
        }
        cols[N].append_value(*y);
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(id.finish())];
    arrays.extend(cols.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn main() {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let products: usize = args[1].parse().unwrap();
    let days: usize = args[2].parse().unwrap();
    let out = std::path::Path::new(&args[3]);
    std::fs::create_dir_all(out).unwrap();
    let all = synthetic(products, days);

    let t = Instant::now();
    let results: Vec<(f64, f64, f64)> = all
        .par_iter()
        .map(|s| {
            let cut = s.len() - HOLDOUT;
            let train = s.head(cut);
            let none = Calendar::default();
            let model = forecast::fit(&train, Method::Ols, DAY, &none).unwrap();
            // One step ahead on the true history.
            let fitted = forecast::fitted(&model, s, &none);
            let f = &fitted[fitted.len() - HOLDOUT..];
            let a = &s.quantity[cut..];
            let err: f64 = a.iter().zip(f).map(|(a, f)| (a - f).abs()).sum();
            // Recursive 7-day forecast too, as `jobs forecast` publishes it.
            let rec =
                forecast::predict(&model, &train, HOLDOUT, *train.price.last().unwrap(), &none);
            let rec_err: f64 = a.iter().zip(&rec).map(|(a, f)| (a - f).abs()).sum();
            (err, rec_err, a.iter().sum())
        })
        .collect();
    let seconds = t.elapsed().as_secs_f64();
    let (err, rec_err, units) = results
        .iter()
        .fold((0.0, 0.0, 0.0), |s, r| (s.0 + r.0, s.1 + r.1, s.2 + r.2));

    // The same rows for the peer.
    let mut train_rows = Vec::new();
    let mut test_rows = Vec::new();
    let mut x = [0.0; N];
    for (p, s) in all.iter().enumerate() {
        for t in features::WARMUP..s.len() {
            let cols = (&s.quantity[..], &s.price[..]);
            features::row(DAY, &Calendar::default(), cols, s.first_day, t, &mut x);
            let row = (p as i64, x, s.quantity[t]);
            if t < s.len() - HOLDOUT {
                train_rows.push(row);
            } else {
                test_rows.push(row);
            }
        }
    }
    for (name, rows) in [("train.parquet", &train_rows), ("test.parquet", &test_rows)] {
        let batch = table(rows);
        let file = std::fs::File::create(out.join(name)).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    println!(
        "{{\"products\": {products}, \"days\": {days}, \"train_rows\": {}, \"test_rows\": {}, \"fit_predict_seconds\": {seconds:.3}, \"wape_one_step\": {:.4}, \"wape_recursive_7d\": {:.4}, \"threads\": {}}}",
        train_rows.len(),
        test_rows.len(),
        err / units,
        rec_err / units,
        rayon::current_num_threads()
    );
}
