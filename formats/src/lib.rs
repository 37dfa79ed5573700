//! `formats`: every format `jobs` reads from outside, parsed and checked without IO: Avro
//! records in the Confluent framing ([`avro`], [`records`]; one sale message: [`sale`]), the
//! validation of a sale and the units it is written in ([`validate`], [`units`]), window specs ([`window_spec`]), schedule
//! files ([`schedule`]) and the configuration ([`config`]).
//!
//! **Invariant**: no IO stack (no async runtime, Kafka, database, HTTP or object store). The
//! only IO is reading files named by a path: [`config::Config::load`] reads `jobs.toml` (and
//! the `JOBS_*` environment variables), [`schedule::load_file`] and [`schedule::load_dir`] read
//! the schedule files; everything else works on bytes and text given to it. The crate exists
//! so that these formats can be fuzzed and unit-tested without compiling the IO stack of
//! `jobs`, which depends on it (`jobs -> formats`) and re-exports its modules under their old
//! paths.

pub mod avro;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod records;
pub mod sale;
pub mod schedule;
pub mod units;
pub mod validate;
pub mod window_spec;

pub use error::{Error, Result};
