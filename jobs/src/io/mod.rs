//! Adapters to the outside world, one file each: the relational database (and ingest's read
//! path over it), Kafka (and ingest's batched produce path), Avro, the lake.

pub mod avro;
pub mod db;
pub mod delivery;
pub mod kafka;
pub mod lake;
pub mod produce;
pub mod source;
