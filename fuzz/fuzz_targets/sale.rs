//! One `product_sales` message: the Confluent framing, the schema id, the Avro body, the row rules.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::fuzzing::sale(data));
