//! Kafka clients (rdkafka/librdkafka), configured once from [`KafkaConfig`], and topic
//! creation. Works with any Kafka-protocol broker.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::{Error, Result};

/// The base client configuration: brokers plus the user's extra properties.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    // Fail fast with a clear error when the broker is down, instead of retrying forever.
    c.set("socket.connection.setup.timeout.ms", "10000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Wraps a Kafka error with the brokers and what we were doing.
pub fn err(cfg: &KafkaConfig, what: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let brokers = cfg.brokers.clone();
    let what = what.into();
    move |source| Error::Kafka {
        brokers,
        what,
        source,
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Topic-level configs such as `cleanup.policy=compact`.
    pub configs: Vec<(&'static str, &'static str)>,
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn create_topics(cfg: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg)
        .create()
        .map_err(err(cfg, "create admin client"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            );
            for (k, v) in &t.configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let results = tokio::time::timeout(Duration::from_secs(30), admin.create_topics(&new, &opts))
        .await
        .map_err(|_| Error::Kafka {
            brokers: cfg.brokers.clone(),
            what: "create topics".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut),
        })?
        .map_err(err(cfg, "create topics"))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(message = "Created topic.", topic = %name),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(message = "Topic exists.", topic = %name)
            }
            Err((name, code)) => {
                return Err(Error::Kafka {
                    brokers: cfg.brokers.clone(),
                    what: format!("create topic {name}"),
                    source: KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

/// Fails with a clear error unless the cluster answers a metadata request within `timeout`.
pub fn check_reachable(cfg: &KafkaConfig, timeout: Duration) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client_config(cfg)
        .create()
        .map_err(err(cfg, "create client"))?;
    c.fetch_metadata(None, timeout).map_err(err(
        cfg,
        "reach the cluster (is the broker running? try scripts/stack up)",
    ))?;
    Ok(())
}
