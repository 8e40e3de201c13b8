#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::evidence_bundle(data));
