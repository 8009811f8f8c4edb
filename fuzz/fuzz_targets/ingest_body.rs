//! `cargo fuzz run ingest_body`: see `earshot_fuzz::ingest_body` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot_fuzz::ingest_body(data));
