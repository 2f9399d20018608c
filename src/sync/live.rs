//! The uploader of an online run: a thread the run owns, tailing its log live.
//!
//! The thread runs a single-threaded tokio runtime; it reads only the log
//! file, so `Run::log` is exactly as cheap as offline. When the server is
//! unreachable it warns once and retries with backoff for the whole run.
//! [`LiveUpload::finish`] gives it a deadline to catch up after the exit
//! record is written; requests still unanswered at the deadline are
//! abandoned and the thread ends, releasing the run's upload lock; what it
//! could not send stays for `ranklog sync`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use super::retry::{Control, Persistence};
use super::state::SyncState;
use super::uploader::{Unfinished, Uploader};
use super::{Target, UploadStatus};
use crate::settings::UploadTuning;
use crate::store;

/// The running upload of an online run.
pub(crate) struct LiveUpload {
    control: Arc<Control>,
    done: Receiver<(Option<String>, Option<SyncState>)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    server: String,
}

impl LiveUpload {
    /// Starts the upload thread; never fails the run: a thread that cannot
    /// start is reported at finish.
    pub(crate) fn start(dir: &Path, target: Target, tuning: UploadTuning) -> LiveUpload {
        let control = Arc::new(Control::default());
        let (tx, done) = crossbeam_channel::bounded(1);
        let server = super::client::base_uri(&target.server);
        let thread_control = control.clone();
        let thread_dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("ranklog-upload".into())
            .spawn(move || {
                lower_priority();
                let outcome = upload(&thread_dir, &target, thread_control, tuning);
                let _ = tx.send(outcome);
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "ranklog: cannot start the upload thread; upload later with `ranklog sync`");
                None
            }
        };
        LiveUpload {
            control,
            done,
            thread: Mutex::new(thread),
            dir: dir.to_path_buf(),
            server,
        }
    }

    /// Tells the uploader that the log is complete and waits up to `timeout`
    /// for it to be on the server.
    pub(crate) fn finish(&self, timeout: Duration) -> UploadStatus {
        let deadline = Instant::now() + timeout;
        self.control.finish_by(deadline);
        let log_bytes = std::fs::metadata(self.dir.join(store::LOG_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        // A request in flight may outlive the deadline a little.
        let (error, state) = match self.done.recv_deadline(deadline + Duration::from_secs(2)) {
            Ok(outcome) => {
                if let Some(t) = self.thread.lock().take() {
                    let _ = t.join();
                }
                outcome
            }
            Err(_) => (
                Some(format!(
                    "the upload did not catch up within {} s",
                    timeout.as_secs()
                )),
                SyncState::load(&self.dir).ok().flatten(),
            ),
        };
        let state = state.unwrap_or_default();
        let complete = error.is_none() && state.status.is_some();
        UploadStatus {
            server: self.server.clone(),
            experiment_id: state.experiment_id,
            remote_run_id: state.remote_run_id,
            acked_bytes: state.acked_offset,
            log_bytes,
            complete,
            error,
        }
    }
}

/// Uploading is background work: let training threads have the CPU first.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on our own thread
        // id only changes this thread's nice value.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
        };
        if rc != 0 {
            tracing::debug!("ranklog: could not lower the upload thread's priority");
        }
    }
}

fn upload(
    dir: &Path,
    target: &Target,
    control: Arc<Control>,
    tuning: UploadTuning,
) -> (Option<String>, Option<SyncState>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return (Some(format!("cannot start the upload runtime: {e}")), None),
    };
    let mut up = match Uploader::open_with(dir, target, control, Persistence::Live, tuning) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "ranklog: cannot upload this run live; upload it later with `ranklog sync`");
            return (Some(e.to_string()), None);
        }
    };
    let result = rt.block_on(up.upload(Unfinished::Leave, true, &mut |_| {}));
    let state = Some(up.state().clone());
    match result {
        Ok(()) => (None, state),
        Err(e) => {
            tracing::warn!(error = %e, "ranklog: upload stopped; the run goes on locally, upload the rest with `ranklog sync`");
            (Some(e.to_string()), state)
        }
    }
}
