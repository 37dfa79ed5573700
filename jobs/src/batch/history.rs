//! The sales history in the lake's `sales_raw`, read with polars lazy scans: the `date=`
//! partitions outside `[since, until)` are pruned by their path and never opened, and only
//! the columns a job needs are decoded. Local folders and S3 alike.

use std::collections::BTreeMap;

use polars::io::cloud::CloudOptions;
use polars::prelude::*;

use super::{Dates, InputFile, day_number};
use crate::config::Config;
use crate::io::lake::Lake;
use crate::{Error, Result};

/// The table both jobs learn from (every valid sale, late ones included).
pub const TABLE: &str = "sales_raw";

/// A product's name, brand and category, as last seen in the history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductInfo {
    pub name: String,
    pub brand: String,
    pub category: String,
}

/// Units sold and revenue of one product on one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DaySales {
    pub product_id: i64,
    /// Days since 1970-01-01.
    pub day: i64,
    pub quantity: f64,
    pub revenue: f64,
}

/// What the forecast reads: daily sales per product, sorted by product then day.
#[derive(Debug, Clone)]
pub struct DailySales {
    pub inputs: Vec<InputFile>,
    pub rows: Vec<DaySales>,
    pub products: BTreeMap<i64, ProductInfo>,
}

/// What the recommender reads: units bought per (customer, product), sorted.
#[derive(Debug, Clone)]
pub struct Purchases {
    pub inputs: Vec<InputFile>,
    pub rows: Vec<(i64, i64, f64)>,
    pub products: BTreeMap<i64, ProductInfo>,
}

fn no_history(lake: &Lake, dates: &Dates) -> Error {
    Error::NoHistory(format!(
        "no sales history under {} since {} (before {}): run `jobs stream` first",
        lake.url_of(TABLE),
        dates.since,
        dates.until
    ))
}

fn cloud_options(cfg: &Config, url: &str) -> Result<Option<CloudOptions>> {
    if !url.starts_with("s3://") {
        return Ok(None);
    }
    let s3 = &cfg.s3;
    let mut kv: Vec<(&str, String)> = Vec::new();
    if let Some(e) = &s3.endpoint {
        kv.push(("aws_endpoint_url", e.clone()));
        if e.starts_with("http://") {
            kv.push(("aws_allow_http", "true".into()));
        }
    }
    for (k, v) in [
        ("aws_region", &s3.region),
        ("aws_access_key_id", &s3.access_key_id),
        ("aws_secret_access_key", &s3.secret_access_key),
    ] {
        if let Some(v) = v {
            kv.push((k, v.clone()));
        }
    }
    CloudOptions::from_untyped_config(Some(CloudScheme::S3), kv)
        .map(Some)
        .map_err(|source| Error::History {
            url: url.into(),
            what: "S3 options".into(),
            source,
        })
}

/// Checks that some `date=` partition in range exists, then returns a lazy scan of it with
/// the hive column `date` (a string) and the source file in `_file`.
async fn scan(cfg: &Config, lake: &Lake, dates: &Dates) -> Result<LazyFrame> {
    let (since, until) = (dates.since.to_string(), dates.until.to_string());
    let any = lake.list(TABLE).await?.into_iter().any(|(path, _)| {
        path.ends_with(".parquet")
            && path
                .split('/')
                .find_map(|p| p.strip_prefix("date="))
                .is_some_and(|d| d >= since.as_str() && d < until.as_str())
    });
    if !any {
        return Err(no_history(lake, dates));
    }
    let glob = lake.url_of(&format!("{TABLE}/**/*.parquet"));
    let hive_schema: Schema = [Field::new("date".into(), DataType::String)]
        .into_iter()
        .collect();
    let args = ScanArgsParquet {
        cloud_options: cloud_options(cfg, &glob)?,
        hive_options: HiveOptions {
            enabled: Some(true),
            hive_start_idx: 0,
            schema: Some(Arc::new(hive_schema)),
            try_parse_dates: false,
        },
        include_file_paths: Some("_file".into()),
        ..Default::default()
    };
    let lf = LazyFrame::scan_parquet(PlRefPath::new(glob.as_str()), args).map_err(|source| {
        Error::History {
            url: glob.clone(),
            what: "scan".into(),
            source,
        }
    })?;
    Ok(lf.filter(
        col("date")
            .gt_eq(lit(since))
            .and(col("date").lt(lit(until))),
    ))
}

/// Runs a polars plan off the async runtime (polars drives its own IO runtime).
async fn collect(lf: LazyFrame, url: String, what: &'static str) -> Result<DataFrame> {
    tokio::task::spawn_blocking(move || {
        lf.collect().map_err(|source| Error::History {
            url,
            what: what.into(),
            source,
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("polars task: {e}")))?
}

async fn inputs(lf: &LazyFrame, url: &str) -> Result<Vec<InputFile>> {
    let df = collect(
        lf.clone()
            .group_by([col("_file")])
            .agg([len().cast(DataType::UInt64).alias("rows")])
            .sort(["_file"], Default::default()),
        url.into(),
        "count input rows",
    )
    .await?;
    let (files, rows) = (str_col(&df, "_file", url)?, u64_col(&df, "rows", url)?);
    Ok(files
        .into_iter()
        .zip(rows)
        .map(|(path, rows)| InputFile { path, rows })
        .collect())
}

async fn products(lf: &LazyFrame, url: &str) -> Result<BTreeMap<i64, ProductInfo>> {
    let df = collect(
        lf.clone()
            .sort(["transaction_date"], Default::default())
            .group_by([col("product_id")])
            .agg([
                col("product_name").last(),
                col("brand").last(),
                col("product_category").last(),
            ]),
        url.into(),
        "read product names",
    )
    .await?;
    let ids = i64_col(&df, "product_id", url)?;
    let (names, brands, cats) = (
        str_col(&df, "product_name", url)?,
        str_col(&df, "brand", url)?,
        str_col(&df, "product_category", url)?,
    );
    Ok(ids
        .into_iter()
        .zip(names.into_iter().zip(brands).zip(cats))
        .map(|(id, ((name, brand), category))| {
            (
                id,
                ProductInfo {
                    name,
                    brand,
                    category,
                },
            )
        })
        .collect())
}

/// Units and revenue per product and day in `[since, until)`.
pub async fn daily_sales(cfg: &Config, lake: &Lake, dates: &Dates) -> Result<DailySales> {
    let url = lake.url_of(TABLE);
    let lf = scan(cfg, lake, dates).await?;
    let qty = col("quantity_sold").cast(DataType::Float64);
    let daily = lf
        .clone()
        .group_by([
            col("product_id"),
            col("transaction_date").dt().date().alias("day"),
        ])
        .agg([
            qty.clone().sum().alias("quantity"),
            (qty * col("price_per_unit").cast(DataType::Float64))
                .sum()
                .alias("revenue"),
        ])
        .select([
            col("product_id"),
            col("day").cast(DataType::Int32).cast(DataType::Int64),
            col("quantity"),
            col("revenue"),
        ])
        .sort(["product_id", "day"], Default::default());
    let df = collect(daily, url.clone(), "aggregate daily sales").await?;
    let (ids, days) = (
        i64_col(&df, "product_id", &url)?,
        i64_col(&df, "day", &url)?,
    );
    let (q, r) = (
        f64_col(&df, "quantity", &url)?,
        f64_col(&df, "revenue", &url)?,
    );
    let rows: Vec<DaySales> = (0..ids.len())
        .map(|i| DaySales {
            product_id: ids[i],
            day: days[i],
            quantity: q[i],
            revenue: r[i],
        })
        .collect();
    if rows.is_empty() {
        return Err(no_history(lake, dates));
    }
    debug_assert!(rows.iter().all(|r| r.day >= day_number(dates.since)));
    Ok(DailySales {
        inputs: inputs(&lf, &url).await?,
        products: products(&lf, &url).await?,
        rows,
    })
}

/// Units bought per known customer and product in `[since, until)` (guest sales, with no
/// customer id, are left out).
pub async fn purchases(cfg: &Config, lake: &Lake, dates: &Dates) -> Result<Purchases> {
    let url = lake.url_of(TABLE);
    let lf = scan(cfg, lake, dates).await?;
    let cells = lf
        .clone()
        .filter(col("customer_id").is_not_null())
        .group_by([col("customer_id"), col("product_id")])
        .agg([col("quantity_sold")
            .cast(DataType::Float64)
            .sum()
            .alias("quantity")])
        .sort(["customer_id", "product_id"], Default::default());
    let df = collect(cells, url.clone(), "aggregate purchases").await?;
    let (c, p) = (
        i64_col(&df, "customer_id", &url)?,
        i64_col(&df, "product_id", &url)?,
    );
    let q = f64_col(&df, "quantity", &url)?;
    let rows: Vec<(i64, i64, f64)> = (0..c.len()).map(|i| (c[i], p[i], q[i])).collect();
    if rows.is_empty() {
        return Err(no_history(lake, dates));
    }
    Ok(Purchases {
        inputs: inputs(&lf, &url).await?,
        products: products(&lf, &url).await?,
        rows,
    })
}

fn column<'a>(df: &'a DataFrame, name: &str, url: &str) -> Result<&'a Column> {
    df.column(name).map_err(|source| Error::History {
        url: url.into(),
        what: format!("column {name}"),
        source,
    })
}

fn bad_type(name: &str, url: &str, source: PolarsError) -> Error {
    Error::History {
        url: url.into(),
        what: format!("column {name}"),
        source,
    }
}

fn i64_col(df: &DataFrame, name: &str, url: &str) -> Result<Vec<i64>> {
    let c = column(df, name, url)?;
    let ca = c.i64().map_err(|e| bad_type(name, url, e))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

fn u64_col(df: &DataFrame, name: &str, url: &str) -> Result<Vec<u64>> {
    let c = column(df, name, url)?;
    let ca = c.u64().map_err(|e| bad_type(name, url, e))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

fn f64_col(df: &DataFrame, name: &str, url: &str) -> Result<Vec<f64>> {
    let c = column(df, name, url)?;
    let ca = c.f64().map_err(|e| bad_type(name, url, e))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

fn str_col(df: &DataFrame, name: &str, url: &str) -> Result<Vec<String>> {
    let c = column(df, name, url)?;
    let ca = c.str().map_err(|e| bad_type(name, url, e))?;
    Ok(ca
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}
