//! Adapters to the outside world, one file each: the relational database (and ingest's read
//! path over it), Kafka (and ingest's batched produce path), the HTTP schema registry (the
//! Avro encoding itself is [`avro`], from `formats`), the lake and its locks, and the retry
//! policy for their outages.

pub mod broker_health;
pub mod db;
pub mod delivery;
pub mod group;
pub mod kafka;
pub mod lake;
pub mod lock;
pub mod produce;
pub mod registry;
pub mod retry;
pub mod source;

// Avro and the local registry are pure, in `formats`; the HTTP registry is `registry`.
pub use formats::avro;
