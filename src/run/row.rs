//! The row being built: steps, interned keys and the uncommitted row.

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::names;
use crate::record::{Record, Row};

use super::MetricValue;

/// Step bookkeeping and key interning of one run; lives behind the run's lock.
#[derive(Debug, Default)]
pub(super) struct RowState {
    keys: FxHashMap<Box<str>, u32>,
    /// The keys of the last call, in order: training loops log the same keys
    /// in the same order every step, so comparing with these skips hashing.
    recent: Vec<(Box<str>, u32)>,
    /// Step a plain `log` uses next.
    next_step: u64,
    /// Step of the last committed row.
    last_step: Option<u64>,
    /// Row accumulated by `accumulate`, not yet committed.
    pending: Option<(u64, Vec<(u32, f64)>)>,
}

impl RowState {
    /// The step the next plain `log` commits at.
    pub(super) fn step(&self) -> u64 {
        self.pending.as_ref().map_or(self.next_step, |(s, _)| *s)
    }

    /// The lowest step still allowed.
    fn floor(&self) -> Option<u64> {
        match (&self.pending, self.last_step) {
            (Some((s, _)), _) => Some(*s),
            (None, last) => last,
        }
    }

    /// Turns `(key, value)` pairs into `(id, value)`, emitting `Key` records
    /// for keys seen for the first time. Nothing is emitted for an invalid key
    /// that comes first; earlier new keys of the same call stay named.
    pub(super) fn values<I, K, V>(
        &mut self,
        metrics: I,
        emit: &mut dyn FnMut(Record),
    ) -> Result<Vec<(u32, f64)>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: MetricValue,
    {
        let iter = metrics.into_iter();
        let mut values = Vec::with_capacity(iter.size_hint().0);
        for (i, (k, v)) in iter.enumerate() {
            let key = k.as_ref();
            let id = match self.recent.get(i) {
                Some((recent, id)) if **recent == *key => *id,
                _ => {
                    let id = self.intern(key, emit)?;
                    let slot = (Box::from(key), id);
                    match self.recent.get_mut(i) {
                        Some(r) => *r = slot,
                        None => self.recent.push(slot),
                    }
                    id
                }
            };
            values.push((id, v.to_f64()));
        }
        Ok(values)
    }

    fn intern(&mut self, key: &str, emit: &mut dyn FnMut(Record)) -> Result<u32> {
        if let Some(&id) = self.keys.get(key) {
            return Ok(id);
        }
        names::check_key(key)?;
        let id = self.keys.len() as u32;
        self.keys.insert(key.into(), id);
        emit(Record::Key {
            id,
            name: key.to_string(),
        });
        Ok(id)
    }

    /// Checks that `step` does not go backwards.
    pub(super) fn check_step(&self, step: u64) -> Result<()> {
        match self.floor() {
            Some(current) if step < current => Err(Error::StepWentBackwards { step, current }),
            _ => Ok(()),
        }
    }

    /// Adds values to the uncommitted row at the current step.
    pub(super) fn accumulate(&mut self, values: Vec<(u32, f64)>) {
        let step = self.step();
        let (_, row) = self.pending.get_or_insert_with(|| (step, Vec::new()));
        merge(row, values);
    }

    /// Commits `values` at `step` (the current step when `None`), after the
    /// uncommitted row: merged into it at the same step, or committed before
    /// it at a lower step. The caller checked the step.
    pub(super) fn commit(
        &mut self,
        step: Option<u64>,
        values: Vec<(u32, f64)>,
        t_us: i64,
        emit: &mut dyn FnMut(Record),
    ) {
        let step = step.unwrap_or_else(|| self.step());
        let values = match self.pending.take() {
            Some((s, mut row)) if s == step => {
                merge(&mut row, values);
                row
            }
            Some((s, row)) => {
                emit(Record::History(Row {
                    step: s,
                    t_us,
                    values: row,
                }));
                values
            }
            None => values,
        };
        emit(Record::History(Row { step, t_us, values }));
        self.last_step = Some(step);
        self.next_step = step.saturating_add(1);
    }

    /// Commits the uncommitted row, if any.
    pub(super) fn commit_pending(&mut self, t_us: i64, emit: &mut dyn FnMut(Record)) {
        if let Some((step, values)) = self.pending.take() {
            emit(Record::History(Row { step, t_us, values }));
            self.last_step = Some(step);
            self.next_step = step.saturating_add(1);
        }
    }
}

/// Merges `new` into `row`; a key already in the row takes the new value.
fn merge(row: &mut Vec<(u32, f64)>, new: Vec<(u32, f64)>) {
    for (id, v) in new {
        match row.iter_mut().find(|(i, _)| *i == id) {
            Some(slot) => slot.1 = v,
            None => row.push((id, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(emitted: &[Record]) -> Vec<(u64, Vec<(u32, f64)>)> {
        emitted
            .iter()
            .filter_map(|r| match r {
                Record::History(row) => Some((row.step, row.values.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn log_counts_steps_from_zero_and_log_at_jumps() -> Result<()> {
        let mut s = RowState::default();
        let mut out = Vec::new();
        let mut emit = |r| out.push(r);
        let v = s.values([("a", 1.0)], &mut emit)?;
        s.commit(None, v, 0, &mut emit);
        let v = s.values([("a", 2.0)], &mut emit)?;
        s.check_step(100)?;
        s.commit(Some(100), v, 0, &mut emit);
        let v = s.values([("a", 3.0)], &mut emit)?;
        s.commit(None, v, 0, &mut emit);
        assert_eq!(
            rows(&out),
            vec![
                (0, vec![(0, 1.0)]),
                (100, vec![(0, 2.0)]),
                (101, vec![(0, 3.0)])
            ]
        );
        assert!(matches!(
            s.check_step(50),
            Err(Error::StepWentBackwards {
                step: 50,
                current: 101
            })
        ));
        assert!(s.check_step(101).is_ok());
        Ok(())
    }

    #[test]
    fn accumulated_values_join_the_next_commit() -> Result<()> {
        let mut s = RowState::default();
        let mut out = Vec::new();
        let mut emit = |r| out.push(r);
        let v = s.values([("a", 1.0)], &mut emit)?;
        s.accumulate(v);
        let v = s.values([("b", 2.0), ("a", 5.0)], &mut emit)?;
        s.accumulate(v);
        let v = s.values([("c", 3.0)], &mut emit)?;
        s.commit(None, v, 0, &mut emit);
        assert_eq!(rows(&out), vec![(0, vec![(0, 5.0), (1, 2.0), (2, 3.0)])]);
        assert_eq!(s.step(), 1);
        Ok(())
    }

    #[test]
    fn keys_are_named_once() -> Result<()> {
        let mut s = RowState::default();
        let mut out = Vec::new();
        let mut emit = |r| out.push(r);
        for _ in 0..3 {
            let v = s.values([("a", 1.0), ("b", 1.0)], &mut emit)?;
            s.commit(None, v, 0, &mut emit);
        }
        let keys = out
            .iter()
            .filter(|r| matches!(r, Record::Key { .. }))
            .count();
        assert_eq!(keys, 2);
        Ok(())
    }
}
