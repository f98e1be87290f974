#![no_main]
//! See `smolchat_fuzz::targets::config` for the input format and the checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smolchat_fuzz::targets::config::check(data));
