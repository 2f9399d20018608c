//! The run-log reader over arbitrary bytes: read raw, then with every frame's
//! checksum fixed so mutations reach the record decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ranklog::fuzzing::rlog_target(data);
});
