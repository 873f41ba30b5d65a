#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| alp_fuzz::path_normalize::fuzz(data));
