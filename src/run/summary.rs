//! Values a run's summary can hold.
//!
//! Summary values are stored as JSON text. JSON has no NaN or infinities, so
//! non-finite floats are written as the bare words `NaN`, `Infinity` and
//! `-Infinity` (as Python's `json` does) and read back as those strings.

/// A value that can be set with [`crate::Run::summary`].
pub trait SummaryValue {
    /// The value as JSON text (non-finite floats as `NaN`, `Infinity`, `-Infinity`).
    fn to_json(self) -> String;
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        serde_json::Value::from(v).to_string()
    }
}

impl SummaryValue for f64 {
    fn to_json(self) -> String {
        float(self)
    }
}

impl SummaryValue for f32 {
    fn to_json(self) -> String {
        float(f64::from(self))
    }
}

macro_rules! summary_via_json {
    ($($t:ty),*) => {$(
        impl SummaryValue for $t {
            fn to_json(self) -> String {
                serde_json::Value::from(self).to_string()
            }
        }
    )*};
}

summary_via_json!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, bool, String, &str);

impl SummaryValue for serde_json::Value {
    fn to_json(self) -> String {
        self.to_string()
    }
}

/// Reads summary JSON text back; the non-finite words become strings.
pub(crate) fn parse(json: &str) -> serde_json::Value {
    match json {
        "NaN" | "Infinity" | "-Infinity" => serde_json::Value::String(json.to_string()),
        _ => serde_json::from_str(json)
            .unwrap_or_else(|_| serde_json::Value::String(json.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_survive_as_words() {
        assert_eq!(f64::NAN.to_json(), "NaN");
        assert_eq!(
            parse(&f64::NEG_INFINITY.to_json()),
            serde_json::json!("-Infinity")
        );
        assert_eq!(parse(&0.5f64.to_json()), serde_json::json!(0.5));
        assert_eq!(parse(&"hi".to_json()), serde_json::json!("hi"));
    }
}
