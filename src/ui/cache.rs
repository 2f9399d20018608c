//! Caches of what is slow to read: run listings (read on from where the
//! last read of a log stopped) and group views (read again in the
//! background when their logs change).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::data::{error_chain, RESOLUTION};
use crate::error::Result;
use crate::group::{GroupOptions, GroupView};
use crate::record::Record;
use crate::store::{self, Meta, Reader, RunInfo, RunState};

/// One line of the runs page: the run's listing, or why it could not be read.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    /// The run id (from the directory name when nothing else is readable).
    pub id: String,
    /// The directory.
    pub dir: PathBuf,
    /// The listing, when `meta.json` and the log could be read.
    pub info: Option<RunInfo>,
    /// `meta.json`, when only it could be read.
    pub meta: Option<Meta>,
    /// What could not be read.
    pub problem: Option<String>,
}

impl RunRow {
    /// The state name, `unreadable` when nothing could be read.
    pub fn state(&self) -> &'static str {
        self.info
            .as_ref()
            .map_or("unreadable", |i| i.state.as_str())
    }

    /// The start time in milliseconds since the epoch (0 when unknown).
    pub fn start_ms(&self) -> i64 {
        self.info.as_ref().map_or(0, |i| i.meta.start_unix_ms)
    }
}

/// A value cached with the state of the files it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(u64, Option<SystemTime>)>);

fn stamp(paths: &[PathBuf]) -> Stamp {
    Stamp(
        paths
            .iter()
            .map(|p| match std::fs::metadata(p) {
                Ok(m) => (m.len(), m.modified().ok()),
                Err(_) => (u64::MAX, None),
            })
            .collect(),
    )
}

/// Caches of what is slow to read: listings of runs that have ended or
/// crashed, and group views.
#[derive(Default)]
pub(crate) struct Cache {
    infos: Mutex<HashMap<PathBuf, Listing>>,
    groups: Mutex<HashMap<String, Arc<GroupSlot>>>,
}

/// A run's listing and where the last read of its log stopped.
#[derive(Clone)]
struct Listing {
    stamp: Stamp,
    info: RunInfo,
    tail: Tail,
}

#[derive(Clone, Default)]
struct Tail {
    /// The end of the last frame read (0: nothing read yet).
    offset: u64,
    last_step: Option<u64>,
    last_t_us: i64,
    exit: Option<crate::record::Exit>,
}

/// One group's cached view, and the lock that lets one read run at a time.
#[derive(Default)]
struct GroupSlot {
    cached: Mutex<Option<CachedGroup>>,
    loading: Mutex<()>,
    refreshing: AtomicBool,
}

impl GroupSlot {
    /// Reads the view unless another thread read one newer than `older_than`
    /// while this one waited for its turn.
    fn load(
        &self,
        root: &Path,
        group: &str,
        older_than: Option<Instant>,
    ) -> Result<Arc<GroupView>> {
        let _turn = self.loading.lock();
        if let Some(c) = self.cached.lock().as_ref() {
            if older_than.is_none_or(|t| c.at > t) {
                return Ok(c.view.clone());
            }
        }
        let st = stamp(&member_logs(root, group));
        let t = Instant::now();
        let loaded = GroupView::load_with(
            root,
            group,
            GroupOptions {
                resolution: RESOLUTION,
                ..GroupOptions::default()
            },
        );
        let view = match loaded {
            Ok(v) => Arc::new(v),
            Err(e) => {
                *self.cached.lock() = None;
                return Err(e);
            }
        };
        *self.cached.lock() = Some(CachedGroup {
            stamp: st,
            view: view.clone(),
            at: Instant::now(),
            took: t.elapsed(),
        });
        Ok(view)
    }
}

struct CachedGroup {
    stamp: Stamp,
    view: Arc<GroupView>,
    at: Instant,
    took: Duration,
}

impl Cache {
    /// Lists every run directory under `root`, newest first; a run that cannot
    /// be read is listed with the reason instead of being left out.
    pub fn runs(&self, root: &Path) -> Result<Vec<RunRow>> {
        let mut rows: Vec<RunRow> = store::run_dirs(root)?
            .into_iter()
            .map(|dir| {
                let id = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(store::id_from_dir_name)
                    .unwrap_or("?")
                    .to_string();
                match self.info(&dir) {
                    Ok(info) => RunRow {
                        id: info.meta.id.clone(),
                        dir,
                        info: Some(info),
                        meta: None,
                        problem: None,
                    },
                    Err(e) => RunRow {
                        id,
                        meta: store::read_meta(&dir).ok(),
                        dir,
                        info: None,
                        problem: Some(error_chain(&e)),
                    },
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.start_ms()
                .cmp(&a.start_ms())
                .then_with(|| b.dir.cmp(&a.dir))
        });
        Ok(rows)
    }

    /// The listing of one run. Ended runs are read from `summary.json`;
    /// others from their log, going on from where the last read of it
    /// stopped, so a poll of a long running run reads only what is new.
    fn info(&self, dir: &Path) -> Result<RunInfo> {
        let log = dir.join(store::LOG_FILE);
        let st = stamp(&[
            dir.join(store::META_FILE),
            log.clone(),
            dir.join(store::SUMMARY_FILE),
        ]);
        let prev = self.infos.lock().get(dir).cloned();
        if let Some(p) = &prev {
            if p.stamp == st {
                let mut info = p.info.clone();
                if info.state == RunState::Running {
                    // A running run can turn crashed without its files changing.
                    info.state = store::detect_state(&info.meta, None, &log);
                }
                return Ok(info);
            }
        }
        if dir.join(store::SUMMARY_FILE).is_file() {
            if let Ok(info) = store::info(dir) {
                self.infos.lock().insert(
                    dir.to_path_buf(),
                    Listing {
                        stamp: st,
                        info: info.clone(),
                        tail: Tail::default(),
                    },
                );
                return Ok(info);
            }
        }
        let resume = prev.filter(|p| {
            p.stamp.0.first() == st.0.first()
                && st.0.get(1).is_some_and(|(len, _)| *len >= p.tail.offset)
        });
        let (mut info, mut tail) = match resume {
            Some(p) => (p.info, p.tail),
            None => (
                RunInfo {
                    dir: dir.to_path_buf(),
                    meta: store::read_meta(dir)?,
                    state: RunState::Running,
                    steps: 0,
                    duration_s: 0.0,
                    damage: None,
                },
                Tail::default(),
            ),
        };
        let mut reader = Reader::open_at(&log, tail.offset)?;
        for record in reader.by_ref() {
            match record {
                Record::History(row) => {
                    if tail.last_step != Some(row.step) {
                        info.steps += 1;
                        tail.last_step = Some(row.step);
                    }
                    tail.last_t_us = tail.last_t_us.max(row.t_us);
                }
                Record::Heartbeat { t_us } => tail.last_t_us = tail.last_t_us.max(t_us),
                Record::Name { name } => info.meta.name = name,
                Record::Exit(e) => {
                    tail.last_t_us = tail.last_t_us.max(e.t_us);
                    tail.exit = Some(e);
                }
                _ => {}
            }
        }
        tail.offset = reader.offset().max(store::HEADER_LEN as u64);
        info.damage = reader.damage().cloned();
        info.duration_s = tail.last_t_us as f64 / 1e6;
        info.state = store::detect_state(&info.meta, tail.exit.as_ref(), &log);
        self.infos.lock().insert(
            dir.to_path_buf(),
            Listing {
                stamp: st,
                info: info.clone(),
                tail,
            },
        );
        Ok(info)
    }

    /// The view of `group`.
    ///
    /// The first request reads it; later ones get the cached view at once.
    /// When a member's log has changed (or a member is running) and the
    /// cached view is older than twice the time its read took (at least a
    /// second), a background thread reads it again for the next request;
    /// when runs joined or left the group, this request reads it again.
    pub fn group(&self, root: &Path, group: &str) -> Result<Arc<GroupView>> {
        let slot = self
            .groups
            .lock()
            .entry(group.to_string())
            .or_default()
            .clone();
        let cached = slot
            .cached
            .lock()
            .as_ref()
            .map(|c| (c.view.clone(), c.at, c.took, c.stamp.clone()));
        let Some((view, at, took, old_stamp)) = cached else {
            return slot.load(root, group, None);
        };
        if at.elapsed() < (took * 2).max(Duration::from_secs(1)) {
            return Ok(view);
        }
        let running = view.ranks.iter().any(|r| r.state == RunState::Running);
        let now_stamp = stamp(&member_logs(root, group));
        if !running && now_stamp == old_stamp {
            if let Some(c) = slot.cached.lock().as_mut() {
                c.at = Instant::now();
            }
            return Ok(view);
        }
        if now_stamp.0.len() != old_stamp.0.len() {
            // Runs joined or left the group: a view without them misleads.
            return slot.load(root, group, Some(at));
        }
        if !slot.refreshing.swap(true, Ordering::AcqRel) {
            let (bg_slot, bg_root, bg_group) =
                (slot.clone(), root.to_path_buf(), group.to_string());
            let spawned = std::thread::Builder::new()
                .name("ranklog-ui-refresh".into())
                .spawn(move || {
                    if let Err(e) = bg_slot.load(&bg_root, &bg_group, Some(at)) {
                        tracing::debug!(group = %bg_group, error = %e, "ranklog ui: cannot read group");
                    }
                    bg_slot.refreshing.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                slot.refreshing.store(false, Ordering::Release);
                return slot.load(root, group, Some(at));
            }
        }
        Ok(view)
    }

    /// The view of `group` if it can be had within `wait`; `None` while a
    /// first read of a large group goes on (in the background: a later call
    /// gets it).
    pub fn group_within(
        &self,
        root: &Path,
        group: &str,
        wait: Duration,
    ) -> Option<Result<Arc<GroupView>>> {
        let slot = self
            .groups
            .lock()
            .entry(group.to_string())
            .or_default()
            .clone();
        if slot.cached.lock().is_some() || member_logs(root, group).is_empty() {
            return Some(self.group(root, group));
        }
        if !slot.refreshing.swap(true, Ordering::AcqRel) {
            let (bg_slot, bg_root, bg_group) =
                (slot.clone(), root.to_path_buf(), group.to_string());
            let spawned = std::thread::Builder::new()
                .name("ranklog-ui-read".into())
                .spawn(move || {
                    let _ = bg_slot.load(&bg_root, &bg_group, None);
                    bg_slot.refreshing.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                slot.refreshing.store(false, Ordering::Release);
                return Some(slot.load(root, group, None));
            }
        }
        let until = Instant::now() + wait;
        loop {
            if let Some(c) = slot.cached.lock().as_ref() {
                return Some(Ok(c.view.clone()));
            }
            if !slot.refreshing.load(Ordering::Acquire) {
                // The read ended without a view: read again here for its error.
                return Some(slot.load(root, group, None));
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads the view of every group under `root` into the cache, newest
    /// group first (run on a background thread at start).
    pub fn warm(&self, root: &Path) {
        let Ok(runs) = self.runs(root) else { return };
        let mut seen = std::collections::HashSet::new();
        for r in runs {
            let Some(g) = r.info.and_then(|i| i.meta.group) else {
                continue;
            };
            if seen.insert(g.clone()) {
                if let Err(e) = self.group(root, &g) {
                    tracing::debug!(group = %g, error = %e, "ranklog ui: cannot read group");
                }
            }
        }
    }
}

/// The logs of the runs under `root` whose `meta.json` names `group`.
pub(crate) fn member_logs(root: &Path, group: &str) -> Vec<PathBuf> {
    store::run_dirs(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| {
            store::read_meta(d)
                .map(|m| m.group.as_deref() == Some(group))
                .unwrap_or(false)
        })
        .map(|d| d.join(store::LOG_FILE))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_first_group_read_goes_on_in_the_background() -> Result<()> {
        let root = tempfile::tempdir().map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })?;
        for i in 0..2 {
            let run = crate::init(
                crate::Settings::new()
                    .dir(root.path())
                    .mode(crate::Mode::Offline)
                    .silent(true)
                    .capture_git(false)
                    .group("g")
                    .name(format!("member{i}")),
            )?;
            run.log([("x", f64::from(i))])?;
            run.finish()?;
        }
        let cache = Cache::default();
        let missing = cache.group_within(root.path(), "nope", Duration::ZERO);
        assert!(matches!(missing, Some(Err(Error::GroupNotFound { .. }))));
        let first = cache.group_within(root.path(), "g", Duration::ZERO);
        assert!(matches!(first, None | Some(Ok(_))));
        let mut tries = 0;
        let view = loop {
            if let Some(v) = cache.group_within(root.path(), "g", Duration::from_millis(50)) {
                break v?;
            }
            tries += 1;
            assert!(tries < 200, "the background read never finished");
        };
        assert_eq!(view.ranks.len(), 2);
        assert_eq!(
            view.metric("x").and_then(|m| m.last).map(|l| l.count),
            Some(2)
        );
        Ok(())
    }

    #[test]
    fn listing_a_running_run_reads_on_from_where_it_stopped() -> Result<()> {
        let root = tempfile::tempdir().map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })?;
        let run = crate::init(
            crate::Settings::new()
                .dir(root.path())
                .mode(crate::Mode::Offline)
                .silent(true)
                .capture_git(false),
        )?;
        let dir = run.dir().map(Path::to_path_buf).unwrap_or_default();
        let cache = Cache::default();
        for i in 0..100 {
            run.log([("x", f64::from(i))])?;
        }
        run.flush()?;
        let first = cache.info(&dir)?;
        assert_eq!((first.steps, first.state), (100, RunState::Running));
        let offset = cache.infos.lock().get(&dir).map_or(0, |l| l.tail.offset);
        assert!(offset > store::HEADER_LEN as u64);
        for i in 0..50 {
            run.log_at(200 + i, [("x", 1.0)])?;
            run.log_at(200 + i, [("y", 2.0)])?;
        }
        run.flush()?;
        let second = cache.info(&dir)?;
        let full = store::scan(&dir)?;
        assert_eq!(second.steps, full.steps);
        assert_eq!(second.steps, 150);
        assert!(cache.infos.lock().get(&dir).map_or(0, |l| l.tail.offset) > offset);
        run.finish()?;
        let done = cache.info(&dir)?;
        assert_eq!((done.steps, done.state), (150, RunState::Finished));
        Ok(())
    }
}
