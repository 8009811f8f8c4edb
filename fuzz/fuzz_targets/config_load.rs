//! `cargo fuzz run config_load`: see `earshot_fuzz::config_load` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot_fuzz::config_load(data));
