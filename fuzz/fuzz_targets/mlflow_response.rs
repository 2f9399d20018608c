//! The MLflow response parser: `[status u16 BE][endpoint u8][body]`, the
//! status folded into 100..=999 as HTTP allows.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_be_bytes([data[0], data[1]]) % 900;
    let _ = ranklog::fuzzing::mlflow::response(usize::from(data[2]), status, &data[3..]);
});
