//! A `jobs.toml`: a one-line error or a configuration that prints no password.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::fuzzing::config(data));
