//! Down-sampled series on a step grid shared by every rank and metric of a
//! group, so that memory stays bounded whatever the number of steps.
//!
//! Bucket `i` covers steps `origin + i·width .. origin + (i+1)·width`. The
//! width starts at 1 (one bucket per step) and doubles, merging neighbours,
//! whenever a step falls past the last bucket; every series of a group widens
//! together, so bucket `i` means the same steps everywhere.

/// The step grid shared by a group's series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub origin: u64,
    pub width: u64,
    pub buckets: usize,
}

impl Grid {
    pub fn new(origin: u64, buckets: usize) -> Grid {
        Grid {
            origin,
            width: 1,
            buckets: buckets.max(2),
        }
    }

    /// How many doublings are needed for `step` to fit.
    pub fn widen_for(&self, step: u64) -> u32 {
        let mut width = self.width;
        let mut n = 0;
        while step.saturating_sub(self.origin) / width >= self.buckets as u64 {
            width = width.saturating_mul(2);
            n += 1;
        }
        n
    }

    pub fn index(&self, step: u64) -> usize {
        (step.saturating_sub(self.origin) / self.width) as usize
    }

    pub fn first_step(&self, index: usize) -> u64 {
        self.origin + index as u64 * self.width
    }
}

/// One rank's values of one metric: the mean per bucket.
#[derive(Debug, Clone, Default)]
pub(crate) struct RankSeries {
    sums: Vec<(f64, u32)>,
}

impl RankSeries {
    pub fn push(&mut self, index: usize, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.sums.len() <= index {
            self.sums.resize(index + 1, (0.0, 0));
        }
        let b = &mut self.sums[index];
        b.0 += v;
        b.1 += 1;
    }

    pub fn halve(&mut self) {
        self.sums = self
            .sums
            .chunks(2)
            .map(|c| c.iter().fold((0.0, 0), |(s, n), (s2, n2)| (s + s2, n + n2)))
            .collect();
    }

    pub fn points(&self, grid: &Grid) -> Vec<(u64, f64)> {
        self.sums
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(i, (s, n))| (grid.first_step(i), s / f64::from(*n)))
            .collect()
    }
}

/// Statistics across ranks at one step, or over a bucket of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The (first) step.
    pub step: u64,
    /// Steps covered: 1 for one step; more in a down-sampled series, where
    /// `mean` and `std` are the averages of the steps' values, `min`/`max`
    /// the extremes and `count` the largest count.
    pub span: u64,
    /// Ranks that reported a (non-NaN) value.
    pub count: u32,
    /// Mean across ranks.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Population standard deviation across ranks.
    pub std: f64,
}

/// Running count, mean, variance, min and max of one metric at one step.
///
/// Values are summed as offsets from the first one (the shifted-data
/// algorithm: no division per value, and no loss of precision when the values
/// are large and close together); accumulators of different parts merge with
/// Chan et al.'s parallel update.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StepAcc {
    seen: bool,
    n: u32,
    shift: f64,
    s1: f64,
    s2: f64,
    min: f64,
    max: f64,
}

impl StepAcc {
    /// Whether no value (not even NaN) was added since the last `take`.
    pub fn is_empty(&self) -> bool {
        !self.seen
    }

    #[inline]
    pub fn add(&mut self, v: f64) {
        self.seen = true;
        if v.is_nan() {
            return;
        }
        if self.n == 0 {
            self.shift = v;
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.n += 1;
        let d = v - self.shift;
        self.s1 += d;
        self.s2 += d * d;
    }

    /// Mean and sum of squared deviations.
    fn moments(&self) -> (f64, f64) {
        let n = f64::from(self.n);
        (
            self.shift + self.s1 / n,
            (self.s2 - self.s1 * self.s1 / n).max(0.0),
        )
    }

    /// Adds the values of another accumulator (Chan et al.'s parallel update).
    pub fn merge(&mut self, o: &StepAcc) {
        if !o.seen {
            return;
        }
        self.seen = true;
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let ((ma, m2a), (mb, m2b)) = (self.moments(), o.moments());
        let (na, nb) = (f64::from(self.n), f64::from(o.n));
        let n = na + nb;
        let delta = mb - ma;
        // With the shift at the mean, s1 is 0 and s2 is the squared deviations.
        self.shift = ma + delta * nb / n;
        self.s1 = 0.0;
        self.s2 = m2a + m2b + delta * delta * na * nb / n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.n += o.n;
    }

    pub fn take(&mut self, step: u64) -> Option<StepStats> {
        let a = std::mem::take(self);
        (a.n > 0).then(|| {
            let (mean, m2) = a.moments();
            StepStats {
                step,
                span: 1,
                count: a.n,
                mean,
                min: a.min,
                max: a.max,
                std: (m2 / f64::from(a.n)).sqrt(),
            }
        })
    }
}

/// The aggregate series of one metric.
#[derive(Debug, Clone, Default)]
pub(crate) struct AggSeries {
    buckets: Vec<AggBucket>,
}

#[derive(Debug, Clone, Copy, Default)]
struct AggBucket {
    steps: u64,
    sum_mean: f64,
    sum_std: f64,
    min: f64,
    max: f64,
    count: u32,
}

impl AggBucket {
    fn merge(mut self, o: &AggBucket) -> AggBucket {
        if o.steps == 0 {
            return self;
        }
        if self.steps == 0 {
            return *o;
        }
        self.steps += o.steps;
        self.sum_mean += o.sum_mean;
        self.sum_std += o.sum_std;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.count = self.count.max(o.count);
        self
    }
}

impl AggSeries {
    pub fn push(&mut self, index: usize, s: &StepStats) {
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, AggBucket::default());
        }
        let one = AggBucket {
            steps: 1,
            sum_mean: s.mean,
            sum_std: s.std,
            min: s.min,
            max: s.max,
            count: s.count,
        };
        self.buckets[index] = self.buckets[index].merge(&one);
    }

    pub fn halve(&mut self) {
        self.buckets = self
            .buckets
            .chunks(2)
            .map(|c| c.iter().fold(AggBucket::default(), |a, b| a.merge(b)))
            .collect();
    }

    pub fn stats(&self, grid: &Grid) -> Vec<StepStats> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.steps > 0)
            .map(|(i, b)| StepStats {
                step: grid.first_step(i),
                span: grid.width,
                count: b.count,
                mean: b.sum_mean / b.steps as f64,
                min: b.min,
                max: b.max,
                std: b.sum_std / b.steps as f64,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_match_the_textbook() {
        let mut a = StepAcc::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, f64::NAN] {
            a.add(v);
        }
        let s = a.take(3).unwrap_or_else(|| panic!("no stats"));
        assert_eq!((s.count, s.mean, s.min, s.max), (8, 5.0, 2.0, 9.0));
        assert!((s.std - 2.0).abs() < 1e-12);
        assert!(a.take(4).is_none());
    }

    #[test]
    fn merged_accumulators_equal_one_accumulator() {
        let values = [3.0, -1.0, 7.5, 2.25, f64::NAN, 10.0, 0.0];
        let mut all = StepAcc::default();
        values.iter().for_each(|&v| all.add(v));
        for cut in 0..=values.len() {
            let (mut a, mut b) = (StepAcc::default(), StepAcc::default());
            values[..cut].iter().for_each(|&v| a.add(v));
            values[cut..].iter().for_each(|&v| b.add(v));
            a.merge(&b);
            let (x, y) = (a.take(0), all.clone().take(0));
            let (x, y) = (
                x.unwrap_or_else(|| panic!("empty")),
                y.unwrap_or_else(|| panic!("empty")),
            );
            assert_eq!((x.count, x.min, x.max), (y.count, y.min, y.max));
            assert!((x.mean - y.mean).abs() < 1e-12 && (x.std - y.std).abs() < 1e-12);
        }
    }

    #[test]
    fn grid_widens_to_fit() {
        let mut g = Grid::new(10, 4);
        assert_eq!(g.widen_for(13), 0);
        assert_eq!(g.widen_for(14), 1);
        assert_eq!(g.widen_for(10 + 100), 5);
        g.width = 2;
        assert_eq!(g.index(15), 2);
        assert_eq!(g.first_step(2), 14);
    }
}
