//! `jobs`: an e-commerce company's sales analytics in one program.
//!
//! Data flows one way: a relational source (`io::db`) is read by [`ingest`] into Kafka as
//! Avro in the Confluent wire format (`io::avro`, `io::kafka`); [`export_json`] reads it back
//! out for people and tools that want JSON lines. [`generate`] fills the source with a
//! believable shop, and [`init`] creates the schema and the topics. [`stream`] turns the
//! sales into windows and business outputs in the Parquet lake (`io::lake`), which
//! [`compact`] keeps in few large files; [`batch`] trains on it; [`schedule`] runs it all.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cfg = jobs::config::Config::load(None, &jobs::config::Overrides::default())?;
//! jobs::init::run(&cfg).await?;
//! jobs::ingest::run(&cfg, jobs::ingest::RunOptions::default()).await?;
//! # Ok(()) }
//! ```

// Errors carry the outside system's own error and what we were doing; they are built on
// cold paths only, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod batch;
pub mod cdc;
pub mod compact;
pub mod dashboard;
pub mod error;
pub mod export_json;
pub mod generate;
pub mod ingest;
pub mod init;
pub mod io;
pub mod metrics;
pub mod offsets;
pub mod schedule;
pub mod shutdown;
pub mod stream;
pub mod sync;

pub use error::{Error, Fault, Result};
// The formats read from outside live in `formats` (pure, fuzzable); their old paths stay.
pub use formats::{config, records, units, validate};
