//! Process-wide bookkeeping: the active runs (for reinit policies), the panic
//! hook that marks runs failed, and the fork guard.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};

use parking_lot::Mutex;

use super::Inner;

static ACTIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());
static HOOKS: Once = Once::new();
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the panic hook and the fork handler, once per process.
pub(super) fn install_hooks() {
    HOOKS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            let msg = match info.location() {
                Some(l) => format!("panicked at {}:{}: {msg}", l.file(), l.line()),
                None => format!("panicked: {msg}"),
            };
            // try_with: the hook may run while thread-locals are torn down.
            let _ = LAST_PANIC.try_with(|p| *p.borrow_mut() = Some(msg));
            previous(info);
        }));
        // SAFETY: the child handler only does an atomic increment, which is
        // async-signal-safe as pthread_atfork handlers must be.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The fork generation of this process: it changes in a forked child.
#[inline]
pub(super) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// The message of the panic this thread is unwinding from, if any.
pub(super) fn panic_message() -> Option<String> {
    if !std::thread::panicking() {
        return None;
    }
    LAST_PANIC
        .try_with(|p| p.borrow().clone())
        .ok()
        .flatten()
        .or_else(|| Some("panicked".to_string()))
}

/// Records a new active run.
pub(super) fn register(run: &Arc<Inner>) {
    let mut active = ACTIVE.lock();
    active.retain(|w| w.strong_count() > 0);
    active.push(Arc::downgrade(run));
}

/// The active runs, oldest first, that have not finished.
pub(super) fn active() -> Vec<Arc<Inner>> {
    let mut active = ACTIVE.lock();
    active.retain(|w| w.strong_count() > 0);
    active
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|r| !r.is_finished())
        .collect()
}
