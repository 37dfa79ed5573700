//! A schedule file: an error naming the file, or entries whose fire times compute.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::fuzzing::schedule(data));
