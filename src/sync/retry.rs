//! Retrying requests to the tracking server: backoff with jitter, the
//! server's `Retry-After`, and the deadline a live run's `finish` sets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::client::{Client, Failure};
use crate::error::{Error, Result};
use crate::settings::UploadTuning;

/// Signals from the run that owns a live uploader.
pub(crate) struct Control {
    /// The log is complete (its exit record is written): upload the rest, then stop.
    finishing: AtomicBool,
    /// Give up at this time (set with `finishing`).
    stop_at: Mutex<Option<Instant>>,
    /// Wakes a sleeping uploader.
    pub notify: Notify,
    /// The deadline again, watched by every request and retry wait, so that
    /// none outlives it.
    deadline: watch::Sender<Option<Instant>>,
    /// Whether the "server unreachable" warning was given.
    warned: AtomicBool,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            finishing: AtomicBool::new(false),
            stop_at: Mutex::new(None),
            notify: Notify::new(),
            deadline: watch::channel(None).0,
            warned: AtomicBool::new(false),
        }
    }
}

impl Control {
    pub(crate) fn finish_by(&self, deadline: Instant) {
        *self.stop_at.lock() = Some(deadline);
        self.finishing.store(true, Ordering::SeqCst);
        self.deadline.send_replace(Some(deadline));
        self.notify.notify_one();
    }

    pub(super) fn finishing(&self) -> bool {
        self.finishing.load(Ordering::SeqCst)
    }

    pub(super) fn expired(&self) -> bool {
        self.stop_at.lock().is_some_and(|t| Instant::now() >= t)
    }
}

/// How hard to retry.
#[derive(Clone, Copy)]
pub(crate) enum Persistence {
    /// `ranklog sync`: give up after this long without progress.
    GiveUpAfter(Duration),
    /// A live run: until the run's [`Control`] says stop; warn once.
    Live,
}

/// Retries a request on transient failures, with backoff; cheap to clone
/// into concurrent batch tasks.
#[derive(Clone)]
pub(crate) struct Retry {
    pub(super) client: Client,
    pub(super) control: Arc<Control>,
    pub(super) persistence: Persistence,
    pub(super) tuning: UploadTuning,
}

impl Retry {
    /// Runs `call` until it succeeds, fails for good, or retries run out.
    ///
    /// A live upload never outlives the deadline its run's `finish` sets:
    /// a request still in flight then is abandoned (it may or may not have
    /// been applied; the next upload sends the same data again).
    pub(super) async fn run<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut delay = self.tuning.backoff_min;
        let mut deadline = self.control.deadline.subscribe();
        let live = matches!(self.persistence, Persistence::Live);
        let mut last: Option<Box<Error>> = None;
        loop {
            let attempt = call(self.client.clone());
            let outcome = if live {
                match until_deadline(&mut deadline, attempt).await {
                    Some(outcome) => outcome,
                    None => return Err(last.map_or_else(|| self.deadline_error(), |e| *e)),
                }
            } else {
                attempt.await
            };
            match outcome {
                Ok(v) => {
                    if self.control.warned.swap(false, Ordering::SeqCst) {
                        tracing::info!(server = %self.client.server(), "ranklog: tracking server reachable again; uploading");
                    }
                    return Ok(v);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient {
                    detail,
                    error,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| jitter(delay));
                    match self.persistence {
                        Persistence::GiveUpAfter(limit) => {
                            if started.elapsed() + wait > limit {
                                return Err(*error);
                            }
                            tracing::debug!(%detail, ?wait, "ranklog: retrying upload");
                            tokio::time::sleep(wait).await;
                        }
                        Persistence::Live => {
                            if self.control.finishing() && self.control.expired() {
                                return Err(*error);
                            }
                            if !self.control.warned.swap(true, Ordering::SeqCst) {
                                tracing::warn!(
                                    server = %self.client.server(),
                                    %detail,
                                    "ranklog: cannot reach the tracking server; the run goes on locally and the upload is retried"
                                );
                            }
                            tracing::debug!(%detail, ?wait, "ranklog: retrying upload");
                            // The run's finish cuts a backoff short (try
                            // now), never a wait the server asked for; the
                            // deadline cuts both.
                            pause(&mut deadline, wait, retry_after.is_none()).await;
                            if self.control.expired() {
                                return Err(*error);
                            }
                            last = Some(error);
                        }
                    }
                    delay = (delay * 2).min(self.tuning.backoff_max);
                }
            }
        }
    }

    fn deadline_error(&self) -> Error {
        Error::ServerUnavailable {
            server: self.client.server().to_string(),
            detail: "the upload deadline passed with a request unanswered".into(),
        }
    }
}

/// `fut`, unless the deadline watched by `deadline` passes first (`None`).
async fn until_deadline<F: std::future::Future>(
    deadline: &mut watch::Receiver<Option<Instant>>,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        let at = *deadline.borrow_and_update();
        tokio::select! {
            out = &mut fut => return Some(out),
            () = sleep_until(at) => return None,
            changed = deadline.changed() => {
                if changed.is_err() {
                    return Some(fut.await);
                }
            }
        }
    }
}

/// Waits `wait`, less if the deadline comes first; `early`: also stop
/// waiting when the deadline is set (the run is finishing).
async fn pause(deadline: &mut watch::Receiver<Option<Instant>>, wait: Duration, early: bool) {
    let end = Instant::now() + wait;
    loop {
        let at = match *deadline.borrow_and_update() {
            Some(d) => end.min(d),
            None => end,
        };
        tokio::select! {
            () = sleep_until(Some(at)) => return,
            changed = deadline.changed() => {
                if changed.is_err() {
                    sleep_until(Some(end)).await;
                    return;
                }
                if early {
                    return;
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// `d` give or take a quarter, so that 64 ranks do not retry in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b)
    } else {
        0x8000
    };
    let f = 0.75 + 0.5 * (f64::from(r) / f64::from(u16::MAX));
    d.mul_f64(f)
}
