//! Adapters to the outside world, one file each: the relational database (and ingest's read
//! path over it), Kafka, Avro, the lake.

pub mod avro;
pub mod db;
pub mod kafka;
pub mod lake;
pub mod source;
