//! `cargo fuzz run avro_decode`: see `earshot_fuzz::avro_decode` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot_fuzz::avro_decode(data));
