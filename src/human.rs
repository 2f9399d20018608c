//! Numbers written for people: sizes and durations, as the `ranklog` command,
//! the web page and the lines a run prints show them.

/// A size in bytes: `512 B`, `1.5 KiB`, `3.2 MiB`, …
///
/// ```
/// assert_eq!(ranklog::human::bytes(1536), "1.5 KiB");
/// ```
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A duration in seconds: `42.1s`, `3m05s`, `2h10m` (negative and
/// non-finite values show as `0.0s`).
///
/// ```
/// assert_eq!(ranklog::human::duration(185.0), "3m05s");
/// ```
pub fn duration(secs: f64) -> String {
    let s = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}
