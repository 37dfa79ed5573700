//! The Avro body of a sale alone, the row rules, and the units it is shown in.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::fuzzing::row(data));
