//! Adapters to the outside world, one file each: the relational source, Kafka, Avro.

pub mod avro;
pub mod db;
pub mod kafka;
