//! `jobs recommend`: implicit-feedback ALS over who bought what in the lake's history; the
//! top products per customer as `product_recommendations` messages and
//! `recommendations/run_date=.../` Parquet, plus the cold-start list (customer null) for
//! everyone else. `--evaluate` holds out 20% of each customer's products instead.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use chrono::NaiveDate;
use models::als::{self, Als, Interactions, Params};
use models::metrics::{self, Ranking};
use models::tune::{self, Grid, Tuned};
use serde::Serialize;
use serde_json::json;

use super::history::{self, ProductInfo, Purchases};
use super::{Dates, Manifest, Published, day_number};
use crate::config::{Config, OutputFormat};
use crate::io::avro::{SchemaKind, Writer};
use crate::io::lake::Lake;
use crate::io::registry;
use crate::{Error, Result};

/// Flags of `jobs recommend`; `None` takes the config's value.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub run_date: Option<NaiveDate>,
    pub since: Option<NaiveDate>,
    pub top_k: Option<usize>,
    pub include_bought: bool,
    /// Hold out 20% of each customer's products and score instead of publishing.
    pub evaluate: bool,
}

/// What a run did.
pub type Outcome = super::Outcome<Summary, Evaluation>;

/// A published run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_date: NaiveDate,
    pub model_version: String,
    pub customers: usize,
    pub products: usize,
    pub purchases: usize,
    pub published: Published,
}

/// ALS against the popularity baseline on a seeded 80/20 split.
#[derive(Debug)]
pub struct Evaluation {
    pub k: usize,
    pub customers: usize,
    /// The settings ALS ran with (tuned on the training part only, if tuning is on).
    pub params: Params,
    pub tuned: bool,
    /// Where the report was written (`evaluations/recommend/run_date=.../report.json`).
    pub report: Option<String>,
    pub als: Ranking,
    pub popularity: Ranking,
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.k;
        writeln!(
            f,
            "held out 20% of each customer's products; {} customers scored",
            self.customers
        )?;
        writeln!(
            f,
            "{:<12} {:>8} {:>8} {:>8} {:>8}",
            "model",
            format!("P@{k}"),
            format!("R@{k}"),
            format!("nDCG@{k}"),
            format!("MAP@{k}")
        )?;
        writeln!(
            f,
            "als: regularization {}, alpha {}, {} factors, {} iterations ({})",
            self.params.regularization,
            self.params.alpha,
            self.params.factors,
            self.params.iterations,
            if self.tuned {
                "tuned on a validation split of the training part"
            } else {
                "as configured"
            }
        )?;
        for (name, r) in [("als", &self.als), ("popularity", &self.popularity)] {
            writeln!(
                f,
                "{name:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
                r.precision, r.recall, r.ndcg, r.map
            )?;
        }
        if let Some(r) = &self.report {
            writeln!(f, "report: {r}")?;
        }
        Ok(())
    }
}

/// The purchases as a matrix, with the ids of its rows and columns.
pub struct Matrix {
    pub customers: Vec<i64>,
    pub products: Vec<i64>,
    pub data: Interactions,
}

/// Indexes customers and products (ascending ids) and builds the matrix.
pub fn matrix(p: &Purchases) -> Result<Matrix> {
    let mut customers: Vec<i64> = p.rows.iter().map(|r| r.0).collect();
    customers.dedup();
    let mut products: Vec<i64> = p.rows.iter().map(|r| r.1).collect();
    products.sort_unstable();
    products.dedup();
    let col: BTreeMap<i64, u32> = products
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    let mut row = 0u32;
    let mut triplets = Vec::with_capacity(p.rows.len());
    for (i, r) in p.rows.iter().enumerate() {
        if i > 0 && p.rows[i - 1].0 != r.0 {
            row += 1;
        }
        if r.2 > 0.0 {
            triplets.push((row, col[&r.1], r.2 as f32));
        }
    }
    let data = Interactions::from_triplets(customers.len(), products.len(), &triplets)?;
    Ok(Matrix {
        customers,
        products,
        data,
    })
}

fn params(cfg: &Config) -> Params {
    let r = &cfg.recommend;
    Params {
        factors: r.factors,
        regularization: r.regularization,
        scale_regularization: r.scale_regularization,
        alpha: r.alpha,
        iterations: r.iterations,
        cg_steps: r.cg_steps,
        seed: r.seed,
    }
}

fn fit(p: Params, data: &Interactions) -> Result<Als> {
    let bar = super::progress(p.iterations as u64, "ALS");
    let model = als::fit(&p, data, |i| bar.set_position(i as u64))?;
    bar.finish_and_clear();
    Ok(model)
}

/// One recommended product.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub product: u32,
    pub score: f64,
    pub source: &'static str,
}

/// The ranked list of every customer (ALS, topped up from the popular list when a customer
/// already bought nearly everything) and, last, the cold-start list.
pub fn rank_all(
    m: &Matrix,
    model: &Als,
    k: usize,
    include_bought: bool,
) -> (Vec<Vec<Rec>>, Vec<Rec>) {
    let popular = als::popularity(&m.data);
    let mut buyers = vec![0usize; m.products.len()];
    for u in 0..m.data.rows() {
        for &c in m.data.row(u).0 {
            buyers[c as usize] += 1;
        }
    }
    let share = |i: u32| buyers[i as usize] as f64 / m.customers.len().max(1) as f64;
    let lists = (0..m.data.rows())
        .map(|u| {
            let bought = m.data.row(u).0;
            let mut list: Vec<Rec> = model
                .recommend(u, bought, k, include_bought)
                .into_iter()
                .map(|(product, score)| Rec {
                    product,
                    score: f64::from(score),
                    source: "als",
                })
                .collect();
            if list.len() < k {
                let mut taken: Vec<u32> = list.iter().map(|r| r.product).collect();
                if !include_bought {
                    taken.extend_from_slice(bought);
                }
                taken.sort_unstable();
                for product in als::cold_start(&popular, &taken, k - list.len()) {
                    list.push(Rec {
                        product,
                        score: share(product),
                        source: "popular",
                    });
                }
            }
            list
        })
        .collect();
    let cold = als::cold_start(&popular, &[], k)
        .into_iter()
        .map(|product| Rec {
            product,
            score: share(product),
            source: "popular",
        })
        .collect();
    (lists, cold)
}

/// Chooses the settings on a validation split of `data` when `on`; `None` if tuning is off
/// or no customer has enough products to hold one out.
fn tuned(data: &Interactions, p: Params, k: usize, on: bool) -> Result<Option<Tuned>> {
    if !on {
        return Ok(None);
    }
    let t = tune::tune(data, p, &Grid::around(&p), k)?;
    if let Some(t) = &t {
        tracing::info!(
            message = "Tuned ALS on a validation split.",
            regularization = t.params.regularization,
            alpha = t.params.alpha,
            customers = t.customers
        );
    }
    Ok(t)
}

/// Seeded 80/20 split of each customer's products: ALS (tuned on the training part only,
/// if `tune`) and popularity at `k`.
pub fn evaluate(m: &Matrix, p: Params, k: usize, tune: bool) -> Result<Evaluation> {
    let (train, test) = als::holdout(&m.data, 0.2, p.seed);
    let t = tuned(&train, p, k, tune)?;
    let p = t.as_ref().map_or(p, |t| t.params);
    let model = fit(p, &train)?;
    let popular = als::popularity(&train);
    let als_lists = model.ranked_lists(&train, k);
    let pop_lists: Vec<Vec<u32>> = (0..train.rows())
        .map(|u| als::cold_start(&popular, train.row(u).0, k))
        .collect();
    let (als_r, n) = metrics::mean_ranking(&als_lists, &test, k);
    let (pop_r, _) = metrics::mean_ranking(&pop_lists, &test, k);
    if n == 0 {
        return Err(Error::NoHistory(
            "no customer has enough purchases to hold any out (20% of a customer's products rounds to 0 below 3 products)".into(),
        ));
    }
    Ok(Evaluation {
        k,
        customers: n,
        params: p,
        tuned: t.is_some(),
        report: None,
        als: als_r,
        popularity: pop_r,
    })
}

/// Reads the history, then either publishes recommendations or evaluates.
pub async fn run(cfg: &Config, args: &RunOptions) -> Result<Outcome> {
    let started_at = super::now_rfc3339();
    let rcfg = &cfg.recommend;
    let dates = Dates::resolve(args.run_date, args.since, rcfg.history_days)?;
    let k = args.top_k.unwrap_or(rcfg.top_k);
    if k == 0 {
        return Err(Error::Config("--top-k must be at least 1".into()));
    }
    let include_bought = args.include_bought || rcfg.include_bought;
    let p = params(cfg);
    let lake = Lake::open(&cfg.lake, &cfg.s3)?;

    // 1. Read the lake.
    let purchases = history::purchases(cfg, &lake, &dates).await?;
    let m = matrix(&purchases)?;
    tracing::info!(
        message = "Read purchase history.",
        lake = %lake.url_of(history::TABLE),
        since = %dates.since,
        until = %dates.until,
        customers = m.customers.len(),
        products = m.products.len(),
        purchases = m.data.nnz()
    );
    let tune = rcfg.tune;
    if args.evaluate {
        let mut e = tokio::task::spawn_blocking(move || evaluate(&m, p, 10, tune))
            .await
            .map_err(|e| Error::Internal(format!("evaluation task: {e}")))??;
        let ranking = |r: &Ranking| json!({"precision": r.precision, "recall": r.recall, "ndcg": r.ndcg, "map": r.map});
        let report = json!({
            "job": "recommend --evaluate",
            "program": format!("jobs {}", env!("CARGO_PKG_VERSION")),
            "dates": &dates,
            "inputs": &purchases.inputs,
            "protocol": "20% of each customer's products held out (seeded); ALS (tuned on the other 80% only, if recommend.tune) and popularity ranked without the training products",
            "k": e.k,
            "customers": e.customers,
            "settings": {
                "factors": e.params.factors,
                "regularization": e.params.regularization,
                "alpha": e.params.alpha,
                "iterations": e.params.iterations,
                "seed": e.params.seed,
                "tuned": e.tuned,
            },
            "als": ranking(&e.als),
            "popularity": ranking(&e.popularity),
            "finished_at": super::now_rfc3339(),
        });
        let rel = super::write_report(&lake, "recommend", dates.run_date, &report).await?;
        e.report = Some(lake.url_of(&rel));
        return Ok(Outcome::Evaluated(e));
    }

    // 2. Fit and rank.
    let (m, model, tuning) = tokio::task::spawn_blocking(move || {
        let t = tuned(&m.data, p, k, tune)?;
        let p = t.as_ref().map_or(p, |t| t.params);
        fit(p, &m.data).map(|model| (m, model, t))
    })
    .await
    .map_err(|e| Error::Internal(format!("ALS task: {e}")))??;
    let p = tuning.as_ref().map_or(p, |t| t.params);
    let (lists, cold) = rank_all(&m, &model, k, include_bought);
    let version = model_version(&p, &purchases, &dates, k, include_bought);

    // 3. Publish: the lake, Kafka, then the manifest.
    let dir = format!("recommendations/run_date={}", dates.run_date);
    let batch = lake_batch(&m, &lists, &cold, &purchases.products, &version)?;
    let schema_id = registry::for_config(&cfg.schema_registry, &cfg.topics, None)
        .await?
        .id(SchemaKind::Recommendations)?;
    let messages = messages(
        &m,
        &lists,
        &cold,
        &purchases.products,
        &version,
        &dates,
        cfg.recommend.output_format,
        schema_id,
    );
    let mut published = super::publish_outputs(
        cfg,
        &lake,
        &dir,
        batch,
        &cfg.topics.product_recommendations,
        messages,
    )
    .await?;
    let from_als = lists.iter().flatten().filter(|r| r.source == "als").count();
    let manifest = Manifest {
        job: "recommend",
        program: format!("jobs {}", env!("CARGO_PKG_VERSION")),
        model_version: &version,
        rerun: format!(
            "jobs recommend --run-date {} --since {} --top-k {k}{}",
            dates.run_date,
            dates.since,
            if include_bought {
                " --include-bought"
            } else {
                ""
            }
        ),
        dates,
        lake: &lake.url,
        inputs: &purchases.inputs,
        features: json!({
            "matrix": "customer x product, units bought (guest sales left out)",
            "customers": m.customers.len(),
            "products": m.products.len(),
            "nonzero": m.data.nnz(),
            "confidence": "1 + alpha * units",
        }),
        hyperparameters: json!({
            "model": "implicit ALS, conjugate gradient",
            "factors": p.factors,
            "regularization": p.regularization,
            "alpha": p.alpha,
            "iterations": p.iterations,
            "cg_steps": p.cg_steps,
            "seed": p.seed,
            "top_k": k,
            "include_bought": include_bought,
            "cold_start": "most distinct buyers, then most units, then lowest product id",
            "tuning": tuning.as_ref().map(|t| json!({
                "validation": "20% of each customer's products held out of the training data",
                "score": format!("nDCG@{k}"),
                "customers": t.customers,
                "trials": t.trials.iter().map(|x| json!({
                    "regularization": x.regularization,
                    "alpha": x.alpha,
                    "ndcg": x.ndcg,
                    "precision": x.precision,
                })).collect::<Vec<_>>(),
            })),
        }),
        metrics: json!({
            "recommendations_from_als": from_als,
            "recommendations_from_popularity": lists.iter().map(Vec::len).sum::<usize>() - from_als,
        }),
        outputs: &published,
        started_at,
        finished_at: super::now_rfc3339(),
    };
    let mf = super::write_manifest(&lake, &dir, &manifest).await?;
    published.files.push(mf);
    tracing::info!(
        message = "Published recommendations.",
        model_version = %version,
        customers = m.customers.len(),
        messages = published.messages,
        dir = %lake.url_of(&dir)
    );
    Ok(Outcome::Published(Summary {
        run_date: dates.run_date,
        model_version: version,
        customers: m.customers.len(),
        products: m.products.len(),
        purchases: m.data.nnz(),
        published,
    }))
}

fn model_version(
    p: &Params,
    purchases: &Purchases,
    dates: &Dates,
    k: usize,
    include_bought: bool,
) -> String {
    let mut parts: Vec<String> = vec![
        env!("CARGO_PKG_VERSION").into(),
        format!("{p:?}"),
        dates.since.to_string(),
        dates.until.to_string(),
        format!("{k}/{include_bought}"),
    ];
    for i in &purchases.inputs {
        parts.push(format!("{}:{}", i.path, i.rows));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!(
        "als-{}-{}",
        dates.run_date.format("%Y%m%d"),
        super::fingerprint(&refs)
    )
}

/// Every list with its customer id; the cold-start list last, with no customer.
fn all_lists<'a>(
    m: &'a Matrix,
    lists: &'a [Vec<Rec>],
    cold: &'a [Rec],
) -> impl Iterator<Item = (Option<i64>, &'a [Rec])> {
    m.customers
        .iter()
        .zip(lists)
        .map(|(c, l)| (Some(*c), l.as_slice()))
        .chain(std::iter::once((None, cold)))
}

fn lake_batch(
    m: &Matrix,
    lists: &[Vec<Rec>],
    cold: &[Rec],
    products: &BTreeMap<i64, ProductInfo>,
    version: &str,
) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, true),
        Field::new("rank", DataType::Int32, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("product_name", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, false),
    ]));
    let (mut cust, mut rank, mut pid) = (
        Int64Builder::new(),
        Int32Builder::new(),
        Int64Builder::new(),
    );
    let (mut name, mut source, mut ver) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut score = Float64Builder::new();
    for (c, list) in all_lists(m, lists, cold) {
        for (i, r) in list.iter().enumerate() {
            let id = m.products[r.product as usize];
            cust.append_option(c);
            rank.append_value(i as i32 + 1);
            pid.append_value(id);
            name.append_value(products.get(&id).map(|p| p.name.as_str()).unwrap_or(""));
            score.append_value(r.score);
            source.append_value(r.source);
            ver.append_value(version);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(cust.finish()),
        Arc::new(rank.finish()),
        Arc::new(pid.finish()),
        Arc::new(name.finish()),
        Arc::new(score.finish()),
        Arc::new(source.finish()),
        Arc::new(ver.finish()),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| Error::Internal(format!("arrow batch: {e}")))
}

#[allow(clippy::too_many_arguments)]
fn messages(
    m: &Matrix,
    lists: &[Vec<Rec>],
    cold: &[Rec],
    products: &BTreeMap<i64, ProductInfo>,
    version: &str,
    dates: &Dates,
    format: OutputFormat,
    schema_id: u32,
) -> Vec<(String, Vec<u8>)> {
    let run = day_number(dates.run_date);
    let mut w = Writer::default();
    let name = |id: i64| products.get(&id).map(|p| p.name.as_str()).unwrap_or("");
    all_lists(m, lists, cold)
        .map(|(c, list)| {
            let key = c.map_or("cold_start".to_string(), |c| c.to_string());
            let value = match format {
                OutputFormat::Avro => {
                    w.start_framed(schema_id);
                    w.opt_long(c);
                    if !list.is_empty() {
                        w.array_block(list.len());
                        for (i, r) in list.iter().enumerate() {
                            let id = m.products[r.product as usize];
                            w.int32(i as i32 + 1);
                            w.long(id);
                            w.string(name(id));
                            w.double(r.score);
                            w.string(r.source);
                        }
                    }
                    w.array_block(0);
                    w.string(version);
                    w.int32(run as i32);
                    w.buf.clone()
                }
                OutputFormat::Json => serde_json::to_vec(&json!({
                    "customer_id": c,
                    "products": list.iter().enumerate().map(|(i, r)| {
                        let id = m.products[r.product as usize];
                        json!({"rank": i + 1, "product_id": id, "product_name": name(id), "score": r.score, "source": r.source})
                    }).collect::<Vec<_>>(),
                    "model_version": version,
                    "run_date": dates.run_date.to_string(),
                }))
                .expect("a JSON value always encodes"),
            };
            (key, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_als_defaults_are_the_models_defaults() {
        // `formats` writes them out rather than depend on `models`.
        assert_eq!(params(&Config::default()), Params::default());
    }

    #[test]
    fn matrix_indexes_ids_in_order() {
        let p = Purchases {
            inputs: vec![],
            rows: vec![(7, 30, 1.0), (7, 10, 2.0), (9, 30, 4.0)],
            products: BTreeMap::new(),
        };
        let m = matrix(&p).unwrap();
        assert_eq!(m.customers, vec![7, 9]);
        assert_eq!(m.products, vec![10, 30]);
        assert_eq!(m.data.row(0), (&[0u32, 1][..], &[2.0f32, 1.0][..]));
        assert_eq!(m.data.row(1), (&[1u32][..], &[4.0f32][..]));
    }

    #[test]
    fn lists_are_topped_up_from_the_popular_list() {
        // Customer 0 bought 2 of 3 products: ALS can offer only one, popularity none more.
        let p = Purchases {
            inputs: vec![],
            rows: vec![
                (1, 1, 1.0),
                (1, 2, 1.0),
                (2, 2, 1.0),
                (2, 3, 1.0),
                (3, 2, 1.0),
            ],
            products: BTreeMap::new(),
        };
        let m = matrix(&p).unwrap();
        let model = als::fit(
            &Params {
                factors: 2,
                iterations: 3,
                ..Params::default()
            },
            &m.data,
            |_| {},
        )
        .unwrap();
        let (lists, cold) = rank_all(&m, &model, 2, false);
        assert_eq!(lists[0].len(), 1, "only product 3 is left for customer 1");
        assert_eq!(m.products[lists[0][0].product as usize], 3);
        assert!(lists.iter().zip(0..).all(|(l, u)| {
            l.iter()
                .all(|r| m.data.row(u).0.binary_search(&r.product).is_err())
        }));
        // Cold start: product 2 (3 buyers) then 1 (1 buyer, 1 unit, lower id than 3).
        let ids: Vec<i64> = cold
            .iter()
            .map(|r| m.products[r.product as usize])
            .collect();
        assert_eq!(ids, vec![2, 1]);
        assert_eq!(cold[0].score, 1.0);
    }
}
