//! The one error type of the `jobs` library; `main` turns it into one line and an exit code.

use std::path::PathBuf;

/// Everything that can go wrong in the library. Each variant names the outside system
/// (database, Kafka, registry, file) and what we were doing, so the message alone lets an
/// operator act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (file, `JOBS_*` variable or flag) is invalid.
    #[error("configuration: {0}")]
    Config(String),

    /// A database operation failed.
    #[error("database {url}: {what}: {source}")]
    Database {
        url: String,
        what: String,
        #[source]
        source: Box<sqlx::Error>,
    },

    /// Reading a MariaDB/MySQL server as a replica (`jobs cdc`) failed.
    #[error("{url}: {what}: {source}")]
    Binlog {
        url: String,
        what: String,
        #[source]
        source: Box<mysql_async::Error>,
    },

    /// A Kafka operation failed.
    #[error("kafka {brokers}: {what}: {source}")]
    Kafka {
        brokers: String,
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// The schema registry (HTTP or the local registry file) failed or disagreed.
    #[error("schema registry: {0}")]
    Registry(String),

    /// The HTTP schema registry could not be reached or answered 5xx / 429: waiting may cure it.
    #[error("schema registry unreachable: {0}")]
    RegistryUnreachable(String),

    /// A message could not be decoded as Avro in the Confluent wire format.
    #[error("avro: {0}")]
    Avro(String),

    /// Redis failed.
    #[error("redis {url}: {what}: {source}")]
    Redis {
        url: String,
        what: String,
        #[source]
        source: redis::RedisError,
    },

    /// A document store of `jobs sync` failed (MongoDB).
    #[error("{url}: {what}: {reason}")]
    Sink {
        url: String,
        what: String,
        reason: String,
    },

    /// The lake (object store) failed.
    #[error("lake {url}: {what}: {source}")]
    Lake {
        url: String,
        what: String,
        #[source]
        source: object_store::Error,
    },

    /// Reading the lake's history with polars failed.
    #[error("lake {url}: {what}: {source}")]
    History {
        url: String,
        what: String,
        #[source]
        source: polars::error::PolarsError,
    },

    /// There is no history to learn from: nothing was published.
    #[error("{0}")]
    NoHistory(String),

    /// A model could not be fitted.
    #[error("model: {0}")]
    Model(#[from] models::Error),

    /// A schedule file or the scheduler failed; the message names the file, entry and field.
    #[error("schedule: {0}")]
    Schedule(String),

    /// A Parquet file could not be encoded.
    #[error("parquet: {0}")]
    Parquet(String),

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An invariant between our own components broke; this is a bug in `jobs`.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// A format read from outside was wrong: each `formats` variant is the variant of the same
/// name here, with the same text, so callers match and `main` classifies them as before.
impl From<formats::Error> for Error {
    fn from(e: formats::Error) -> Self {
        match e {
            formats::Error::Config(m) => Error::Config(m),
            formats::Error::Registry(m) => Error::Registry(m),
            formats::Error::Avro(m) => Error::Avro(m),
            formats::Error::Schedule(m) => Error::Schedule(m),
            formats::Error::File { path, source } => Error::File { path, source },
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whose fault an error is, for the operator: what to fix, and whether a retry helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The configuration, a schedule file or the input asked for: fix it, then rerun.
    User,
    /// An outside system (database, broker, registry, store, disk) failed or refused: a rerun
    /// once it is back resumes exactly.
    Outside,
    /// A bug in `jobs`: please report it.
    Ours,
}

impl Fault {
    /// One line for the operator.
    pub fn hint(self) -> &'static str {
        match self {
            Fault::User => "fix the configuration or input named above, then rerun",
            Fault::Outside => {
                "an outside system failed; once it is back, a rerun resumes where the last checkpoint left off"
            }
            Fault::Ours => "this is a bug in jobs; please report it with the line above",
        }
    }
}

impl Error {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config(_) | Error::Schedule(_) | Error::NoHistory(_) | Error::Model(_) => {
                Fault::User
            }
            Error::Internal(_) => Fault::Ours,
            Error::Database { .. }
            | Error::Kafka { .. }
            | Error::Binlog { .. }
            | Error::Sink { .. }
            | Error::Registry(_)
            | Error::RegistryUnreachable(_)
            | Error::Avro(_)
            | Error::Redis { .. }
            | Error::Lake { .. }
            | Error::History { .. }
            | Error::Parquet(_)
            | Error::File { .. } => Fault::Outside,
        }
    }

    /// Wraps a file error with its path.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File {
            path: path.into(),
            source,
        }
    }
}
