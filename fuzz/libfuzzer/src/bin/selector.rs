#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| alp_fuzz::selector::fuzz(data));
