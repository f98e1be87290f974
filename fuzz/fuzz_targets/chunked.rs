#![no_main]
//! See `smolchat_fuzz::targets::chunked` for the input format and the checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smolchat_fuzz::targets::chunked::check(data));
