#![no_main]

// The body lives in the library so tests/fuzz_corpus.rs replays the corpus through it on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tether::fuzz_harness::pod_response(data));
