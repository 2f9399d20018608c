//! The W&B export's framing: arbitrary bytes into the strict reader (raw and
//! with checksums fixed) never panic; the records read plus a payload sized
//! by the input's last bytes go through the writer and come back unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ranklog::fuzzing::wandb_target(data);
});
