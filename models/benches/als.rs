//! Benchmark harness for `models::als`, run by `scripts/bench-als` as
//! `cargo bench -p models --bench als -- ...` (the library stays free of IO; this harness
//! reads and writes the benchmark's files).
//!
//! `als movielens FILE.inter OUT_DIR FACTORS ITERS SEED` reads MovieLens-100k as RecBole
//! ships it (quantity = rating), makes the seeded 80/20 split every contender uses
//! (`OUT_DIR/train.tsv`, `test.tsv`), times a fit of FACTORS x ITERS, then, as `jobs
//! recommend` runs by default, tunes the settings on a validation split of the training part
//! (`models::tune`), fits those on all of it and writes the top 10 per user (bought items
//! left out) to `OUT_DIR/recs_jobs_default.tsv` (the default factors) and
//! `recs_jobs_given.tsv` (FACTORS); prints the times and the chosen settings as JSON.
//!
//! `als synthetic USERS ITEMS NNZ FACTORS ITERS [MATRIX]` fits a random matrix with
//! popularity skew of that shape, writes it to MATRIX for the peers, and prints the fit time
//! and peak RSS as JSON.

use std::fmt::Write as _;
use std::time::Instant;

use models::als::{self, Interactions, Params};
use models::tune;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {what}"))
}

/// The anchors' protocol: MovieLens-100k as purchases with quantity = rating, a per-customer
/// random 80/20 split seeded with `SEED`, training products left out of the ranking.
fn movielens(args: &[String]) {
    let text = std::fs::read_to_string(&args[2]).expect("read the .inter file");
    let out = std::path::Path::new(&args[3]);
    std::fs::create_dir_all(out).unwrap();
    let factors: usize = arg(args, 4, "factors");
    let iterations: usize = arg(args, 5, "iterations");
    let seed: u64 = arg(args, 6, "seed");
    let mut users = std::collections::BTreeMap::new();
    let mut items = std::collections::BTreeMap::new();
    let mut raw = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split('\t');
        let (Some(u), Some(i), Some(r)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let rating: f32 = r.parse().expect("a numeric rating");
        raw.push((u.to_string(), i.to_string(), rating));
        let n = users.len();
        users.entry(u.to_string()).or_insert(n as u32);
        let n = items.len();
        items.entry(i.to_string()).or_insert(n as u32);
    }
    let triplets: Vec<(u32, u32, f32)> = raw
        .iter()
        .map(|(u, i, r)| (users[u], items[i], *r))
        .collect();
    let data = Interactions::from_triplets(users.len(), items.len(), &triplets).unwrap();
    // Every MovieLens-100k customer rated at least 20 films, so the anchors' rule (fewer than
    // 5 purchases: all kept in training) holds no one back.
    let (train, test) = als::holdout(&data, 0.2, seed);
    let mut tr = String::new();
    let mut te = String::new();
    for (u, held) in test.iter().enumerate() {
        let (cols, vals) = train.row(u);
        for (i, q) in cols.iter().zip(vals) {
            writeln!(tr, "{u}\t{i}\t{q}").unwrap();
        }
        for i in held {
            writeln!(te, "{u}\t{i}").unwrap();
        }
    }
    std::fs::write(out.join("train.tsv"), tr).unwrap();
    std::fs::write(out.join("test.tsv"), te).unwrap();
    let write_recs = |model: &als::Als, name: &str| {
        let mut recs = String::new();
        for u in 0..train.rows() {
            let list = model.recommend(u, train.row(u).0, 10, false);
            for (rank, (i, _)) in list.iter().enumerate() {
                writeln!(recs, "{u}\t{i}\t{}", rank + 1).unwrap();
            }
        }
        std::fs::write(out.join(name), recs).unwrap();
    };
    // Speed: the given factors and iterations, the default settings otherwise (the peers
    // are timed with the same factors and iterations).
    let timed = Params {
        factors,
        iterations,
        ..Params::default()
    };
    let t = Instant::now();
    let model = als::fit(&timed, &train, |_| {}).unwrap();
    let fit_seconds = t.elapsed().as_secs_f64();
    std::hint::black_box(&model);
    // Quality, as `jobs recommend` runs by default: the grid around the default settings,
    // chosen on a validation split of the training part only, then fitted on all of it;
    // with the default factors and with the given ones.
    let mut tuned_runs = Vec::new();
    for (name, f) in [("default", Params::default().factors), ("given", factors)] {
        let base = Params {
            factors: f,
            iterations,
            ..Params::default()
        };
        let t = Instant::now();
        let tuned = tune::tune(&train, base, &tune::Grid::around(&base), 10)
            .unwrap()
            .expect("MovieLens customers have products to hold out");
        let model = als::fit(&tuned.params, &train, |_| {}).unwrap();
        let seconds = t.elapsed().as_secs_f64();
        write_recs(&model, &format!("recs_jobs_{name}.tsv"));
        tuned_runs.push(format!(
            "\"{name}\": {{\"factors\": {f}, \"seconds\": {seconds:.4}, \"regularization\": {}, \"alpha\": {}}}",
            tuned.params.regularization, tuned.params.alpha
        ));
    }
    println!(
        "{{\"users\": {}, \"items\": {}, \"train\": {}, \"seed\": {seed}, \"factors\": {factors}, \"iterations\": {iterations}, \"fit_seconds\": {fit_seconds:.4}, \"threads\": {}, {}}}",
        train.rows(),
        train.cols(),
        train.nnz(),
        rayon::current_num_threads(),
        tuned_runs.join(", ")
    );
}

fn synthetic(args: &[String]) {
    let (users, items, nnz): (usize, usize, usize) = (
        arg(args, 2, "users"),
        arg(args, 3, "items"),
        arg(args, 4, "nnz"),
    );
    let params = Params {
        factors: arg(args, 5, "factors"),
        iterations: arg(args, 6, "iterations"),
        ..Params::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Item popularity ~ Zipf-like: index = items * u^2 skews towards low ids.
    let t = Instant::now();
    let triplets: Vec<(u32, u32, f32)> = (0..nnz)
        .map(|_| {
            let u = rng.random_range(0..users) as u32;
            let x: f64 = rng.random();
            let i = ((x * x) * items as f64) as u32;
            (u, i.min(items as u32 - 1), 1.0)
        })
        .collect();
    let data = Interactions::from_triplets(users, items, &triplets).unwrap();
    drop(triplets);
    let build_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let model = als::fit(&params, &data, |_| {}).unwrap();
    let fit_seconds = t.elapsed().as_secs_f64();
    std::hint::black_box(&model);
    let peak_rss = peak_rss_mib();
    // The same matrix for the peers: customer and product of every cell as little-endian u32
    // pairs (every quantity is 1).
    if let Some(path) = args.get(7) {
        let mut bytes = Vec::with_capacity(data.nnz() * 8);
        for u in 0..data.rows() {
            for &i in data.row(u).0 {
                bytes.extend_from_slice(&(u as u32).to_le_bytes());
                bytes.extend_from_slice(&i.to_le_bytes());
            }
        }
        std::fs::write(path, bytes).expect("write the matrix for the peers");
    }
    println!(
        "{{\"users\": {users}, \"items\": {items}, \"nonzero\": {}, \"factors\": {}, \"iterations\": {}, \"build_seconds\": {build_seconds:.2}, \"fit_seconds\": {fit_seconds:.2}, \"peak_rss_mib\": {:.0}, \"threads\": {}}}",
        data.nnz(),
        params.factors,
        params.iterations,
        peak_rss,
        rayon::current_num_threads()
    );
}

fn main() {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    match args.get(1).map(String::as_str) {
        Some("movielens") => movielens(&args),
        Some("synthetic") => synthetic(&args),
        _ => eprintln!(
            "usage: als movielens FILE OUT FACTORS ITERS SEED | synthetic USERS ITEMS NNZ FACTORS ITERS [MATRIX]"
        ),
    }
}
