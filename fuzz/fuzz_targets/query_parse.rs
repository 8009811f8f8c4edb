//! `cargo fuzz run query_parse`: see `earshot_fuzz::query_parse` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot_fuzz::query_parse(data));
