//! `cargo fuzz run feed_parse`: see `earshot_fuzz::feed_parse` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot_fuzz::feed_parse(data));
