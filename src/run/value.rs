//! Values a metric row can hold.

/// A number that can be logged as a metric; every metric is stored as `f64`.
///
/// Integers above 2^53 lose precision, as they would in any tracker that
/// stores metrics as doubles.
pub trait MetricValue {
    /// The value as `f64`.
    fn to_f64(self) -> f64;
}

macro_rules! metric_as {
    ($($t:ty),*) => {$(
        impl MetricValue for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

metric_as!(f64, f32, i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl MetricValue for bool {
    #[inline]
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
}

impl<T: MetricValue + Copy> MetricValue for &T {
    #[inline]
    fn to_f64(self) -> f64 {
        (*self).to_f64()
    }
}
