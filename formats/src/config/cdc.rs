//! The sections of change data capture: `[cdc]` (`jobs cdc`, binlog -> Kafka) and `[sync]`
//! (`jobs sync`, Kafka -> Redis and a document store). Re-exported by [`super`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When `jobs cdc` reads the tables as they are before it follows the binlog (Debezium's
/// `snapshot.mode` names).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// A consistent snapshot when there is no saved position, then the binlog from its
    /// position.
    Initial,
    /// Never: without a saved position, follow the binlog from the server's current head.
    Never,
    /// As `initial`, and again when the saved position is no longer on the server (its
    /// binlog file was purged).
    WhenNeeded,
}

/// `jobs cdc`: a MariaDB/MySQL binlog -> one Kafka topic per table, in Debezium's envelope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CdcConfig {
    /// The server to capture, `mysql://USER[:PASSWORD]@HOST:PORT/DB` (MariaDB or MySQL, binary
    /// log on, `binlog_format=ROW`, `binlog_row_image=FULL`); unset: `database_url`.
    pub url: Option<String>,
    /// The tables of the URL's database to capture (default: the shop's tables that `jobs
    /// init` creates). Each needs a primary key.
    pub tables: Vec<String>,
    /// The replica's server id; unique among the server's replicas.
    pub server_id: u32,
    /// `initial`, `never` or `when_needed`.
    pub snapshot: SnapshotMode,
    /// Rows read per snapshot query (keyset pages inside one consistent-snapshot transaction).
    pub snapshot_batch: usize,
    /// Topics are `<topic_prefix>.<db>.<table>`; schema changes go to
    /// `<topic_prefix>.<db>.schema_changes`.
    pub topic_prefix: String,
    /// Events the binlog reader could not map (the reason and position, JSON).
    pub dlq_topic: String,
    /// The saved binlog positions (a compacted topic, one record per capture name).
    pub state_topic: String,
    /// The name the position is saved under (default: `cdc-<host>-<port>-<db>`).
    pub name: Option<String>,
    /// Save the position at least this often while changes flow.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Ask the server for a heartbeat this often when the binlog is quiet; it keeps the
    /// connection checked and the saved position current.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Address of the Prometheus `/metrics` endpoint; empty to disable.
    pub metrics_addr: String,
}

impl Default for CdcConfig {
    fn default() -> Self {
        CdcConfig {
            url: None,
            tables: ["products", "product_sales", "inventory", "customer_data"]
                .map(String::from)
                .to_vec(),
            server_id: 5401,
            snapshot: SnapshotMode::Initial,
            snapshot_batch: 5000,
            topic_prefix: "cdc".into(),
            dlq_topic: "cdc_dlq".into(),
            state_topic: "cdc_state".into(),
            name: None,
            checkpoint_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            metrics_addr: "127.0.0.1:9465".into(),
        }
    }
}

impl CdcConfig {
    /// Values that would make the capture loop or stall.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.snapshot_batch == 0 {
            return bad("cdc.snapshot_batch must be at least 1".into());
        }
        if self.heartbeat < Duration::from_millis(100) {
            return bad(format!(
                "cdc.heartbeat must be at least 100ms, got {:?}",
                self.heartbeat
            ));
        }
        if self.tables.is_empty() {
            return bad("cdc.tables is empty: name the tables to capture".into());
        }
        Ok(())
    }
}

/// `jobs sync`: the cdc topics -> Redis and a document store, deduplicated by source
/// position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Consumer group; processes in one group split the partitions.
    pub group_id: String,
    /// The source tables whose topics are followed (default: `cdc.tables`); the topics are
    /// `<cdc.topic_prefix>.<db of cdc.url>.<table>`.
    pub tables: Vec<String>,
    /// Redis (`redis://127.0.0.1:6379`): one JSON string per row at
    /// `<redis_prefix><table>:<key>`; unset or `""`: off.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key (the documents and the `_cdc_pos:<table>` hashes).
    pub redis_prefix: String,
    /// PostgreSQL for the documents (`postgres://postgres@127.0.0.1:5432/shop`): one JSONB
    /// table per source table in `postgres_schema`; unset or `""`: off.
    pub postgres_url: Option<String>,
    /// The PostgreSQL schema of the document tables.
    pub postgres_schema: String,
    /// MongoDB (`mongodb://127.0.0.1:27017/shop`), with the `mongodb` build feature; unset:
    /// off. Compiled, not tested against a server.
    pub mongodb_url: Option<String>,
    /// Messages applied per sink write (and per offset commit).
    pub batch: usize,
    /// Address of the Prometheus `/metrics` endpoint; empty to disable.
    pub metrics_addr: String,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            group_id: "jobs-sync".into(),
            tables: Vec::new(),
            redis_url: None,
            redis_prefix: String::new(),
            postgres_url: None,
            postgres_schema: "cdc".into(),
            mongodb_url: None,
            batch: 2000,
            metrics_addr: "127.0.0.1:9466".into(),
        }
    }
}
