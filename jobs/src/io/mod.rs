//! Adapters to the outside world, one file each: the relational database (and ingest's read
//! path over it), Kafka (and ingest's batched produce path), Avro, the lake and its
//! locks, and the retry policy for their outages.

pub mod avro;
pub mod broker_health;
pub mod db;
pub mod delivery;
pub mod group;
pub mod kafka;
pub mod lake;
pub mod lock;
pub mod produce;
pub mod retry;
pub mod source;
