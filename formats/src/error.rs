//! The error type of the formats; `jobs` maps each variant to its own variant of the same
//! name and text.

use std::path::PathBuf;

/// What can be wrong with a format read from outside. The texts are the ones `jobs` prints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (file, `JOBS_*` variable or flag) is invalid.
    #[error("configuration: {0}")]
    Config(String),

    /// The local registry file disagrees with the schemas, or has no id for one.
    #[error("schema registry: {0}")]
    Registry(String),

    /// A message could not be decoded as Avro in the Confluent wire format.
    #[error("avro: {0}")]
    Avro(String),

    /// A schedule file is invalid; the message names the file, entry and field.
    #[error("schedule: {0}")]
    Schedule(String),

    /// A local file could not be read.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a file error with its path.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File {
            path: path.into(),
            source,
        }
    }
}
