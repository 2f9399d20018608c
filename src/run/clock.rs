//! Wall-clock times as ranklog records them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (negative before it).
pub(crate) fn now_unix_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Microseconds since `start_unix_us`; negative if the clock went backwards.
pub(crate) fn since_start_us(start_unix_us: i64) -> i64 {
    now_unix_us() - start_unix_us
}

/// RFC 3339 text of a UTC time.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
