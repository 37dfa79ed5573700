//! Typed configuration, layered: built-in defaults < `jobs.toml` < `JOBS_*` variables < flags.
//!
//! Environment variables use `__` between levels: `JOBS_DATABASE_URL`, `JOBS_KAFKA__BROKERS`,
//! `JOBS_INGEST__BATCH_SIZE`. Every struct denies unknown keys, so a typo in `jobs.toml` or in
//! a `JOBS_KAFKA__*` variable is an error that names the key and where it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod cdc;
mod sections;

pub use cdc::*;
pub use sections::*;

use crate::window_spec::WindowSpec;
use crate::{Error, Result};

/// The whole configuration of every `jobs` subcommand.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Source database URL: `sqlite://jobs.db` (the embedded default, created if missing),
    /// `mysql://root@127.0.0.1:3306/shop` (MySQL and MariaDB) or
    /// `postgres://postgres@127.0.0.1:5432/shop`.
    pub database_url: String,
    /// Root of the Parquet lake: a local path, `file://`, or `s3://bucket/prefix`.
    pub lake: String,
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// Where Avro schema ids come from.
    pub schema_registry: RegistryConfig,
    /// Topic names.
    pub topics: Topics,
    /// `jobs ingest`.
    pub ingest: IngestConfig,
    /// `jobs stream`.
    pub stream: StreamConfig,
    /// `jobs forecast`.
    pub forecast: ForecastConfig,
    /// `jobs recommend`.
    pub recommend: RecommendConfig,
    /// `jobs schedule`.
    pub schedule: ScheduleConfig,
    /// S3 settings for an `s3://` lake (credentials also from the standard AWS variables).
    pub s3: S3Config,
    /// Merging the lake's small files (in `jobs stream` and `jobs compact`).
    pub compaction: CompactionConfig,
    /// `jobs dashboard`.
    pub dashboard: DashboardConfig,
    /// `jobs cdc`: the binlog -> Kafka.
    pub cdc: CdcConfig,
    /// `jobs sync`: the cdc topics -> Redis and documents.
    pub sync: SyncConfig,
}

/// S3 (or S3-compatible) settings. Unset values fall back to `AWS_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint of an S3-compatible service, e.g. `http://127.0.0.1:8333` (SeaweedFS).
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`).
    pub region: Option<String>,
    /// Access key (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
}

/// `jobs stream`: Kafka -> event-time windows -> the lake and Kafka.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Consumer group; processes in one group split the partitions.
    pub group_id: String,
    /// Windows: `1h` is tumbling, `1h/5m` is sliding (size/slide).
    pub windows: Vec<WindowSpec>,
    /// The windows whose per-product rows also go to `windowed_product_sales`, a subset of
    /// `windows`; unset: all of them. The lake's `sales_windows` always holds every window.
    /// A sliding window sends `size/slide` messages per sale of a product that sells less
    /// than once a slide (12 for `1h/5m`): a large catalogue may keep it in the lake only.
    pub kafka_windows: Option<Vec<WindowSpec>>,
    /// How far behind the newest event time an event may arrive and still count.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition with no events for this long follows the other partitions' watermark.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Write files and checkpoint at least this often, even with no new input.
    #[serde(with = "humantime_serde")]
    pub roll_interval: Duration,
    /// ... or as soon as a partition has buffered this many bytes of rows.
    pub roll_bytes: usize,
    /// Encoding of the stream's Kafka outputs: `avro` (Confluent framing) or `json`. The
    /// batch jobs have their own (`forecast.output_format`, `recommend.output_format`).
    pub output_format: OutputFormat,
    /// Address of the Prometheus `/metrics` endpoint; empty to disable.
    pub metrics_addr: String,
    /// The business outputs to compute besides the windows: `totals`, `top`, `alerts`,
    /// `segments`, `dashboard`.
    pub features: Vec<Feature>,
    /// Publish the running totals of the products that changed at most this often.
    #[serde(with = "humantime_serde")]
    pub totals_interval: Duration,
    /// The sliding window of the top-N ranking (`size/slide`).
    pub top_window: WindowSpec,
    /// How many products each ranking keeps.
    pub top_n: usize,
    /// A low-stock alert fires when `stock_level - units sold since` falls below this.
    pub low_stock_threshold: i64,
    /// Per-product thresholds, by product id (`"7" = 25`), overriding the default.
    pub low_stock_thresholds: BTreeMap<String, i64>,
    /// Reload `inventory` and `customer_data` from the database this often.
    #[serde(with = "humantime_serde")]
    pub reference_refresh: Duration,
    /// Where the reference tables (`inventory`, `customer_data`) are read; unset: the
    /// source `database_url`.
    pub reference_url: Option<String>,
    /// SQL database of the dashboard and top-N tables (MySQL/MariaDB, PostgreSQL or SQLite);
    /// unset: the source `database_url`; `""` turns the SQL outputs off.
    pub sql_url: Option<String>,
    /// Redis for the top-N sorted sets (`redis://127.0.0.1:6379`); unset or `""`: off.
    pub redis_url: Option<String>,
    /// Expiry of the Redis top-N keys.
    #[serde(with = "humantime_serde")]
    pub redis_ttl: Duration,
    /// A sale dated more than this ahead of the clock is dead-lettered: one producer with a
    /// broken clock (or a hostile one) would otherwise move its partition's watermark into
    /// the future and make every later sale late.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

/// A business output of `jobs stream`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    /// Running totals per product: `aggregated_product_sales`, `sales_totals`.
    Totals,
    /// Top-N products by quantity and revenue: `top_products` (topic, lake, SQL, Redis).
    Top,
    /// Low-stock alerts from `inventory`: `low_stock_alerts`.
    Alerts,
    /// Sales per customer segment: `customer_segment_sales`, `segment_sales`.
    Segments,
    /// Sales per country and card type: `sales_by_country`, `sales_by_card_type` (SQL, lake).
    Dashboard,
}

impl StreamConfig {
    /// Whether a business output is on.
    pub fn has(&self, f: Feature) -> bool {
        self.features.contains(&f)
    }
}

/// Encoding of the stream's Kafka outputs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Avro,
    Json,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            group_id: "jobs-stream".into(),
            windows: ["1h", "1d", "1h/5m"]
                .into_iter()
                .map(|w| WindowSpec::parse(w).expect("a default window parses"))
                .collect(),
            kafka_windows: None,
            allowed_lateness: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            roll_interval: Duration::from_secs(60),
            roll_bytes: 128 << 20,
            output_format: OutputFormat::Avro,
            metrics_addr: "127.0.0.1:9464".into(),
            features: vec![
                Feature::Totals,
                Feature::Top,
                Feature::Alerts,
                Feature::Segments,
                Feature::Dashboard,
            ],
            totals_interval: Duration::from_secs(10),
            top_window: WindowSpec::parse("1h/5m").expect("a default window parses"),
            top_n: 10,
            low_stock_threshold: 10,
            low_stock_thresholds: BTreeMap::new(),
            reference_refresh: Duration::from_secs(30),
            reference_url: None,
            sql_url: None,
            redis_url: None,
            redis_ttl: Duration::from_secs(2 * 86_400),
            max_future: Duration::from_secs(86_400),
        }
    }
}

/// Connection to Kafka (any Kafka-protocol broker: Apache Kafka, Redpanda, MSK, Tansu).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, comma-separated `host:port` list.
    pub brokers: String,
    /// Partition count for the topics that `jobs init` creates.
    pub partitions: i32,
    /// Replication factor for the topics that `jobs init` creates.
    pub replication_factor: i32,
    /// Extra librdkafka properties applied to every client (e.g. `security.protocol`,
    /// `sasl.mechanisms`); see librdkafka's CONFIGURATION.md.
    pub properties: BTreeMap<String, String>,
}

/// Schema ids for the Confluent wire format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// A Confluent-compatible schema registry (`http://host:8081`). When unset, ids come from
    /// the committed local registry `data/avro/registry.json`, compiled into the binary.
    pub url: Option<String>,
}

/// Names of the Kafka topics `jobs` reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Sales transactions (Avro `ProductSale`), keyed by product id.
    pub product_sales: String,
    /// Catalogue changes (Avro `Product`), keyed by product id.
    pub product_updates: String,
    /// Dead letters: rows and messages that could not be processed, with the reason (JSON).
    pub dlq: String,
    /// Closed windows per product (Avro `WindowedProductSales`), keyed by product id.
    pub windowed_product_sales: String,
    /// Events that arrived after their window closed (the original Avro bytes).
    pub late_sales: String,
    /// Running totals per product (Avro `ProductTotals`), upserts keyed by product id.
    pub aggregated_product_sales: String,
    /// Top-N products per sliding window and metric (Avro `TopProducts`), keyed by
    /// `<metric>|<window>|<window_start>`.
    pub top_products: String,
    /// Low-stock alerts and recoveries (Avro `LowStockAlert`), keyed by product id.
    pub low_stock_alerts: String,
    /// Sales per customer segment and product per window (Avro `CustomerSegmentSales`),
    /// keyed by segment.
    pub customer_segment_sales: String,
    /// Ingest checkpoints (cursor and output offsets per table), written after each batch is
    /// acknowledged.
    pub ingest_state: String,
    /// Demand forecasts (Avro `SalesPrediction`), one per product and day, keyed by product
    /// id.
    pub sales_predictions: String,
    /// Recommendations (Avro `ProductRecommendations`), one per customer, keyed by customer
    /// id (`cold_start` for the list for customers without history).
    pub product_recommendations: String,
}

/// `jobs ingest`: relational tables -> Kafka.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Rows per batch; a batch is checkpointed once the broker has acknowledged all of it.
    /// 30,000 measured ~15% faster than 10,000 and no slower than 60,000 (README, Benchmarks).
    pub batch_size: usize,
    /// How long to wait before polling again once every table is drained.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Name of this source in the watermark records; defaults to the database URL without
    /// credentials. Change it only to start a source afresh.
    pub source_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://jobs.db".into(),
            lake: "./lake".into(),
            kafka: KafkaConfig::default(),
            schema_registry: RegistryConfig::default(),
            topics: Topics::default(),
            ingest: IngestConfig::default(),
            stream: StreamConfig::default(),
            forecast: ForecastConfig::default(),
            recommend: RecommendConfig::default(),
            schedule: ScheduleConfig::default(),
            s3: S3Config::default(),
            compaction: CompactionConfig::default(),
            dashboard: DashboardConfig::default(),
            cdc: CdcConfig::default(),
            sync: SyncConfig::default(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            partitions: 3,
            replication_factor: 1,
            properties: BTreeMap::new(),
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            product_sales: "product_sales".into(),
            product_updates: "product_updates".into(),
            dlq: "product_sales_dlq".into(),
            ingest_state: "_jobs_ingest_state".into(),
            windowed_product_sales: "windowed_product_sales".into(),
            late_sales: "late_sales".into(),
            aggregated_product_sales: "aggregated_product_sales".into(),
            top_products: "top_products".into(),
            low_stock_alerts: "low_stock_alerts".into(),
            customer_segment_sales: "customer_segment_sales".into(),
            sales_predictions: "sales_predictions".into(),
            product_recommendations: "product_recommendations".into(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_size: 30_000,
            poll_interval: Duration::from_secs(1),
            source_name: None,
        }
    }
}

/// Values given as command-line flags; `None` leaves the lower layers in force.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lake: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<RegistryConfig>,
}

/// Kafka values given as flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KafkaOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
}

/// Top-level keys that `JOBS_*` variables may set; other `JOBS_*` variables (such as the
/// scripts' own) are not configuration and are ignored.
const ENV_KEYS: &[&str] = &[
    "schedule",
    "database_url",
    "lake",
    "kafka",
    "schema_registry",
    "topics",
    "ingest",
    "stream",
    "forecast",
    "recommend",
    "s3",
    "compaction",
    "dashboard",
    "cdc",
    "sync",
];

impl Config {
    /// Loads the layers. `file` is `--config`; without it `./jobs.toml` is read if present.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(Error::Config(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                fig = fig.merge(Toml::file_exact(path));
            }
            None => {
                let default = PathBuf::from("jobs.toml");
                if default.exists() {
                    fig = fig.merge(Toml::file_exact(default));
                }
            }
        }
        let env = Env::prefixed("JOBS_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            ENV_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
        });
        let cfg: Config = fig
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| Error::Config(one_line(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration a TOML text gives over the defaults, validated (no file, no
    /// environment): what `load` does with the file's text alone.
    pub fn from_toml(text: &str) -> Result<Config> {
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| Error::Config(one_line(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: value ranges and URL schemes.
    pub fn validate(&self) -> Result<()> {
        check_database_scheme(&self.database_url)?;
        if self.kafka.brokers.trim().is_empty() {
            return Err(Error::Config("kafka.brokers is empty".into()));
        }
        if self.kafka.partitions < 1 {
            return Err(Error::Config(format!(
                "kafka.partitions must be at least 1, got {}",
                self.kafka.partitions
            )));
        }
        if self.stream.top_n == 0 {
            return Err(Error::Config("stream.top_n must be at least 1".into()));
        }
        self.cdc.validate()?;
        if self.sync.batch == 0 {
            return Err(Error::Config("sync.batch must be at least 1".into()));
        }
        let c = &self.compaction;
        if !(c.cpu_share > 0.0 && c.cpu_share <= 1.0) {
            return Err(Error::Config(format!(
                "compaction.cpu_share must be in (0, 1], got {}",
                c.cpu_share
            )));
        }
        if c.target_file_bytes < 1 << 20 {
            return Err(Error::Config(format!(
                "compaction.target_file_bytes must be at least 1 MiB (1048576), got {}",
                c.target_file_bytes
            )));
        }
        for k in self.stream.low_stock_thresholds.keys() {
            k.parse::<i64>().map_err(|_| {
                Error::Config(format!(
                    "stream.low_stock_thresholds: key {k:?} is not a product id"
                ))
            })?;
        }
        for url in [&self.stream.sql_url, &self.stream.reference_url]
            .into_iter()
            .flatten()
            .filter(|u| !u.is_empty())
        {
            check_database_scheme(url)?;
        }
        if let Some(url) = self.stream.redis_url.as_ref().filter(|u| !u.is_empty()) {
            url::Url::parse(url)
                .map_err(|e| Error::Config(format!("stream.redis_url {url:?}: {e}")))?;
        }
        if self.stream.windows.is_empty() {
            return Err(Error::Config("stream.windows is empty".into()));
        }
        for k in self.stream.kafka_windows.iter().flatten() {
            let shape = (k.size_micros, k.slide_micros);
            if !self
                .stream
                .windows
                .iter()
                .any(|w| (w.size_micros, w.slide_micros) == shape)
            {
                return Err(Error::Config(format!(
                    "stream.kafka_windows: {k} is not one of stream.windows"
                )));
            }
        }
        if self.ingest.batch_size == 0 {
            return Err(Error::Config("ingest.batch_size must be at least 1".into()));
        }
        if let Some(url) = &self.schema_registry.url {
            url::Url::parse(url).map_err(|e| {
                Error::Config(format!("schema_registry.url {url:?} is not a URL: {e}"))
            })?;
        }
        Ok(())
    }

    /// A copy fit to print: passwords in URLs as `***`, secrets (`s3.secret_access_key`,
    /// `dashboard.token`, the Kafka properties [`is_secret_property`] names) as `<redacted>`.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.database_url = redact(&c.database_url);
        for url in [
            &mut c.stream.sql_url,
            &mut c.stream.reference_url,
            &mut c.stream.redis_url,
            &mut c.schema_registry.url,
            &mut c.cdc.url,
            &mut c.sync.redis_url,
            &mut c.sync.postgres_url,
            &mut c.sync.mongodb_url,
        ]
        .into_iter()
        .flatten()
        {
            *url = redact(url);
        }
        for secret in [&mut c.dashboard.token, &mut c.s3.secret_access_key]
            .into_iter()
            .flatten()
        {
            *secret = "<redacted>".into();
        }
        for (k, v) in c.kafka.properties.iter_mut() {
            if is_secret_property(k) {
                *v = "<redacted>".into();
            }
        }
        c
    }

    /// The name under which ingest records its watermarks for this source.
    pub fn source_name(&self) -> String {
        self.ingest
            .source_name
            .clone()
            .unwrap_or_else(|| redact(&self.database_url))
    }
}

/// Whether a Kafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.jaas.config`, `sasl.oauthbearer.client.secret`, `ssl.keystore.password`, ...).
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "jaas", ".key.pem", "ssl.key"]
        .iter()
        .any(|w| n.contains(w))
}

/// Checks that a database URL names a database `jobs` speaks: `sqlite`, `mysql` (or
/// `mariadb`) or `postgres` (or `postgresql`). `jobs::io::db::Dialect::from_url` gives the same
/// error for any other scheme.
pub fn check_database_scheme(url: &str) -> Result<()> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "mysql" | "mariadb" | "postgres" | "postgresql" | "sqlite" => Ok(()),
        _ => Err(Error::Config(format!(
            "database_url {:?}: unsupported scheme {scheme:?}; use sqlite://FILE, mysql://USER@HOST:PORT/DB or postgres://USER@HOST:PORT/DB",
            redact(url)
        ))),
    }
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => redact_text(url),
    }
}

/// The rule for a URL the parser refuses (several hosts: `mongodb://u:pw@h1,h2/db`): what lies
/// between `scheme://user:` and the last `@` before the query. A path holding an `@` is
/// over-redacted, never under.
fn redact_text(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let Some(at) = before_query.rfind('@') else {
        return url.to_string();
    };
    let Some(colon) = before_query[..at].find(':') else {
        return url.to_string();
    };
    format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..])
}

/// Every error of the chain on one line: a TOML parse error renders the offending source
/// lines under its message (found by the `config` fuzz target), and an error line must stay
/// one line.
fn one_line(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error; tests only.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_on_a_fresh_machine() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        assert!(cfg.database_url.starts_with("sqlite://"));
        assert_eq!(cfg.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(cfg.lake, "./lake");
    }

    #[test]
    fn layers_apply_in_order_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "jobs.toml",
                "database_url = \"mysql://root@127.0.0.1/shop\"\n[kafka]\nbrokers = \"file:9092\"\npartitions = 5\n",
            )?;
            jail.set_env("JOBS_KAFKA__BROKERS", "env:9092");
            jail.set_env("JOBS_STACK_DIR", "/not/config");
            let flags = Overrides {
                kafka: Some(KafkaOverrides {
                    partitions: Some(7),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let cfg = Config::load(None, &flags).unwrap();
            assert_eq!(cfg.database_url, "mysql://root@127.0.0.1/shop");
            assert_eq!(cfg.kafka.brokers, "env:9092");
            assert_eq!(cfg.kafka.partitions, 7);
            // Every top-level section takes its variables.
            jail.set_env("JOBS_COMPACTION__ENABLED", "false");
            let cfg = Config::load(None, &Overrides::default()).unwrap();
            assert!(!cfg.compaction.enabled);
            let defaults = toml::to_string(&Config::default()).unwrap();
            for line in defaults
                .lines()
                .filter(|l| l.starts_with('[') && !l.contains('.'))
            {
                let top = line.trim_matches(['[', ']']);
                assert!(ENV_KEYS.contains(&top), "no JOBS_* variables for [{top}]");
            }

            jail.create_file("bad.toml", "[ingest]\nbatch_sise = 3\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("batch_sise"), "{err}");
            assert!(err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn database_schemes_are_checked_and_passwords_redacted() {
        for url in ["sqlite://jobs.db", "mariadb://x/y", "postgresql://p@h/db"] {
            check_database_scheme(url).unwrap();
        }
        let err = check_database_scheme("oracle://u:pw@x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "configuration: database_url \"oracle://u:***@x\": unsupported scheme \"oracle\"; \
             use sqlite://FILE, mysql://USER@HOST:PORT/DB or postgres://USER@HOST:PORT/DB"
        );
        assert_eq!(
            redact("mysql://root:secret@db:3306/shop"),
            "mysql://root:***@db:3306/shop"
        );
        assert_eq!(redact("sqlite://jobs.db"), "sqlite://jobs.db");
        // A URL the parser refuses keeps no password either.
        assert_eq!(
            redact("mongodb://u:p/w@d@h1:27017,h2:27017/db?replicaSet=rs"),
            "mongodb://u:***@h1:27017,h2:27017/db?replicaSet=rs"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn the_example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/jobs.example.toml");
        // Inside a jail: other tests set JOBS_* variables, and the jail serialises them.
        figment::Jail::expect_with(|_| {
            let cfg = Config::load(Some(&path), &Overrides::default()).unwrap();
            assert_eq!(cfg, Config::default(), "the example documents the defaults");
            Ok(())
        });
    }
}
