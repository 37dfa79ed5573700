//! Adapters to the outside world, one file each: the relational source, Kafka, Avro, the lake.

pub mod avro;
pub mod db;
pub mod kafka;
pub mod lake;
