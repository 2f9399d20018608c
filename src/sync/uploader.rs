//! The uploader: tails a run log from its acknowledged offset and ships it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::batch;
use super::client::{self, Answer, Client, Failure};
use super::mapping::{self, Item, Mapper, RemoteStatus};
use super::retry::{Control, Persistence, Retry};
use super::state::{SyncState, UploadLock};
use super::{SyncReport, Target};
use crate::error::{Error, Result};
use crate::record::{Record, Start};
use crate::settings::UploadTuning;
use crate::store::{self, Meta, Reader, HEADER_LEN};

/// Items kept ready beyond one batch; the log is the backlog, not memory.
const QUEUE_TARGET: usize = batch::MAX_ENTITIES * 2;
/// Batches of metrics sent at once (MLflow's server runs 4 workers by default).
pub(crate) const IN_FLIGHT: usize = 4;
/// A batch being sent (or `None`: nothing to send), the offset it
/// acknowledges, and its metric count.
type InFlight = (
    Option<tokio::task::JoinHandle<Result<()>>>,
    Option<u64>,
    u64,
);
/// How often a caught-up live uploader looks for new data.
const POLL: Duration = Duration::from_millis(200);

/// How a run is ended on the server when its log has no exit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfinished {
    /// The writer is gone: the remote run is set to KILLED.
    Kill,
    /// The writer is alive (or may be): the remote run stays RUNNING.
    Leave,
}

/// Uploads one run directory to one tracking server; see the [module docs](super).
pub struct Uploader {
    dir: PathBuf,
    log: PathBuf,
    retry: Retry,
    state: SyncState,
    start: Start,
    meta: Option<Meta>,
    mapper: Mapper,
    queue: VecDeque<Item>,
    reader: Option<Reader>,
    read_pos: u64,
    at_end: bool,
    points: u64,
    _lock: UploadLock,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("dir", &self.dir)
            .field("client", &self.retry.client)
            .field("state", &self.state)
            .finish()
    }
}

impl Uploader {
    /// Opens a run directory for upload to `target`: takes the upload lock,
    /// reads `sync.json` and replays the already-acknowledged part of the
    /// log (without sending it) to rebuild key ids and params.
    ///
    /// # Errors
    ///
    /// [`Error::SyncInProgress`] if another process uploads this run,
    /// [`Error::Read`]/[`Error::NotARunLog`] if the log cannot be read, and
    /// the URI errors of [`Target`].
    pub fn open(dir: &Path, target: &Target) -> Result<Uploader> {
        Uploader::open_with(
            dir,
            target,
            Arc::new(Control::default()),
            Persistence::GiveUpAfter(Duration::from_secs(60)),
            crate::settings::upload_tuning_from_env()?,
        )
    }

    pub(crate) fn open_with(
        dir: &Path,
        target: &Target,
        control: Arc<Control>,
        persistence: Persistence,
        tuning: UploadTuning,
    ) -> Result<Uploader> {
        let lock = UploadLock::try_acquire(dir)?;
        let mut client = Client::new(
            &target.server,
            target.credentials.clone(),
            tuning.request_timeout,
        )?;
        let state = match SyncState::load(dir)? {
            Some(s) if s.server == client.server() => s,
            _ => SyncState {
                server: client.server().to_string(),
                ..SyncState::default()
            },
        };
        let log = dir.join(store::LOG_FILE);
        let mut reader = Reader::open(&log)?;
        let start = match reader.next() {
            Some(Record::Start(s)) => *s,
            _ => {
                return Err(Error::NotARunLog {
                    path: log,
                    reason: "it does not begin with a start record".into(),
                })
            }
        };
        client.experiment = start.project.clone();
        let meta = std::fs::read(dir.join(store::META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
        let mut mapper = Mapper::new(&start);
        // Replay what the server already has, to know keys and params.
        let acked = state.acked_offset.max(HEADER_LEN as u64);
        while reader.offset() < acked {
            match reader.next() {
                Some(r) => mapper.apply(r, &mut |_| {}),
                None => break,
            }
        }
        let read_pos = reader.offset();
        Ok(Uploader {
            dir: dir.to_path_buf(),
            log,
            retry: Retry {
                client,
                control,
                persistence,
                tuning,
            },
            state,
            start,
            meta,
            mapper,
            queue: VecDeque::new(),
            reader: Some(reader),
            read_pos,
            at_end: false,
            points: 0,
            _lock: lock,
        })
    }

    /// How long [`Uploader::run`] keeps retrying a server that is down
    /// (connection errors, timeouts, 429, 5xx) before giving up (default 60 s).
    /// One request may take `RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS` (60 s); the
    /// wait between retries is set by `RANKLOG_UPLOAD_BACKOFF_MIN_MS` and
    /// `RANKLOG_UPLOAD_BACKOFF_MAX_MS` (see [`crate::Settings::upload_backoff`]).
    #[must_use]
    pub fn retry_for(mut self, limit: Duration) -> Uploader {
        self.retry.persistence = Persistence::GiveUpAfter(limit);
        self
    }

    /// The upload state as last acknowledged.
    pub fn state(&self) -> &SyncState {
        &self.state
    }

    /// Uploads everything in the log, then ends the remote run: with the
    /// log's exit status, or `KILLED` if `kill_unfinished` and the log has no
    /// exit record. Calls `progress(acked_bytes)` after each batch.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`], [`Error::ServerRejected`],
    /// [`Error::NotMlflow`], [`Error::TlsFailure`] at once;
    /// [`Error::ConnectionRefused`], [`Error::UnknownHost`] or
    /// [`Error::ServerUnavailable`] once retries gave up. What was
    /// acknowledged before stays acknowledged.
    pub fn run(
        mut self,
        kill_unfinished: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<SyncReport> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Write {
                path: self.dir.clone(),
                source,
            })?;
        let unfinished = if kill_unfinished {
            Unfinished::Kill
        } else {
            Unfinished::Leave
        };
        let result = rt.block_on(self.upload(unfinished, false, progress));
        result.map(|()| self.report())
    }

    /// What has been done so far.
    pub(crate) fn report(&self) -> SyncReport {
        SyncReport {
            server: self.state.server.clone(),
            experiment_id: self.state.experiment_id.clone(),
            remote_run_id: self.state.remote_run_id.clone(),
            acked_bytes: self.state.acked_offset,
            log_bytes: std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0),
            points: self.points,
            status: self.state.status.clone(),
        }
    }

    /// The upload loop. `live`: keep tailing until the control says finish.
    ///
    /// Batches of metrics only go out up to [`IN_FLIGHT`] at a time (metrics
    /// are a set on the server, so their order does not matter); a batch with
    /// params or tags waits for every earlier batch, so the last value of a
    /// tag is the one that stays. Offsets are acknowledged in log order.
    pub(crate) async fn upload(
        &mut self,
        unfinished: Unfinished,
        live: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        self.ensure_remote().await?;
        let mut inflight = VecDeque::new();
        let result = self.pump(&mut inflight, unfinished, live, progress).await;
        for (task, _, _) in inflight {
            if let Some(t) = task {
                t.abort();
            }
        }
        result
    }

    async fn pump(
        &mut self,
        inflight: &mut VecDeque<InFlight>,
        unfinished: Unfinished,
        live: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let run_id = self.state.remote_run_id.clone().unwrap_or_default();
        loop {
            self.fill()?;
            let mut batch = batch::cut(&mut self.queue);
            if batch.is_empty() {
                inflight.push_back((None, batch.ack, 0));
            } else if batch.only_metrics() {
                while inflight.len() >= IN_FLIGHT {
                    self.complete_front(inflight, progress).await?;
                }
                let body = batch.body(&run_id);
                let retry = self.retry.clone();
                let task = tokio::spawn(async move {
                    retry
                        .run(|c| c.post_ok_owned("runs/log-batch", body.clone()))
                        .await
                        .map(drop)
                });
                inflight.push_back((Some(task), batch.ack, batch.metrics() as u64));
            } else {
                while !inflight.is_empty() {
                    self.complete_front(inflight, progress).await?;
                }
                let body = batch.body(&run_id);
                self.retry
                    .run(|c| c.post_ok_owned("runs/log-batch", body.clone()))
                    .await?;
                inflight.push_back((None, batch.ack, batch.metrics() as u64));
            }
            // Acknowledge what is already done, without waiting.
            while inflight
                .front()
                .is_some_and(|(t, _, _)| t.as_ref().is_none_or(|t| t.is_finished()))
            {
                self.complete_front(inflight, progress).await?;
            }
            if !self.queue.is_empty() || !self.at_end {
                continue;
            }
            // Caught up with the log.
            while !inflight.is_empty() {
                self.complete_front(inflight, progress).await?;
            }
            if self.state.status.is_some() {
                return Ok(());
            }
            if let Some((status, end_ms)) = self.mapper.exit {
                return self.end_remote(status, end_ms).await;
            }
            if !live {
                if unfinished == Unfinished::Kill {
                    let end = self.mapper.epoch_ms(self.mapper.last_t_us);
                    return self.end_remote(RemoteStatus::Killed, end).await;
                }
                return Ok(());
            }
            let control = &self.retry.control;
            if control.finishing() && control.expired() {
                return Ok(());
            }
            let _ = tokio::time::timeout(POLL, control.notify.notified()).await;
        }
    }

    /// Waits for the oldest batch and saves its offset.
    async fn complete_front(
        &mut self,
        inflight: &mut VecDeque<InFlight>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let Some((task, ack, points)) = inflight.pop_front() else {
            return Ok(());
        };
        if let Some(task) = task {
            match task.await {
                Ok(result) => result?,
                Err(e) => {
                    return Err(Error::ServerUnavailable {
                        server: self.retry.client.server().to_string(),
                        detail: format!("upload task ended: {e}"),
                    })
                }
            }
        }
        self.points += points;
        if let Some(ack) = ack {
            if ack > self.state.acked_offset {
                self.state.acked_offset = ack;
                self.state.save(&self.dir)?;
                progress(ack);
            }
        }
        Ok(())
    }

    /// Reads records into the queue until it holds enough or the log ends.
    fn fill(&mut self) -> Result<()> {
        self.at_end = false;
        while self.queue.len() < QUEUE_TARGET {
            if self.reader.is_none() {
                self.reader = Some(Reader::open_at(&self.log, self.read_pos)?);
            }
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            match reader.next() {
                Some(record) => {
                    let queue = &mut self.queue;
                    self.mapper.apply(record, &mut |i| queue.push_back(i));
                    let at = reader.offset();
                    if at > self.read_pos {
                        self.read_pos = at;
                        self.queue.push_back(Item::Checkpoint(at));
                    }
                }
                None => {
                    self.read_pos = reader.offset();
                    self.reader = None;
                    self.at_end = true;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Finds or creates the experiment and the remote run.
    async fn ensure_remote(&mut self) -> Result<()> {
        if self.state.remote_run_id.is_some() {
            return Ok(());
        }
        let experiment_id = match self.state.experiment_id.clone() {
            Some(id) => id,
            None => self.experiment_id().await?,
        };
        self.state.experiment_id = Some(experiment_id.clone());
        // A crash between creating the run and saving its id must not make a
        // second run: look for it by its ranklog id first.
        let filter = format!(
            "tags.`ranklog.run_id` = '{}'",
            self.start.id.replace('\'', "")
        );
        let body = json!({
            "experiment_ids": [experiment_id],
            "filter": filter,
            "max_results": 10,
        })
        .to_string()
        .into_bytes();
        let search = body;
        let tags: Vec<Value> =
            mapping::start_tags(&self.start, self.meta.as_ref().and_then(|m| m.rank))
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
        let create = json!({
            "experiment_id": experiment_id,
            "run_name": self.start.name,
            "start_time": self.start.start_unix_us.div_euclid(1000),
            "tags": tags,
        })
        .to_string()
        .into_bytes();
        // `runs/create` is the one request the server does not apply once:
        // sent again after a lost answer (a timeout, a 500 after the run was
        // written, a dropped connection) it makes a second run. So every
        // attempt looks the run up first, and creates it only if absent.
        let run_id = self
            .retry
            .run(|c| find_or_create_run(c, search.clone(), create.clone()))
            .await?;
        self.state.remote_run_id = Some(run_id);
        self.state.save(&self.dir)
    }

    /// The id of the project's experiment, created if needed; safe when many
    /// ranks create it at once.
    async fn experiment_id(&mut self) -> Result<String> {
        let name = self.start.project.clone();
        for _ in 0..3 {
            let n = name.clone();
            let got = self
                .retry
                .run(move |c| c.get_owned("experiments/get-by-name", "experiment_name", n.clone()))
                .await?;
            match got {
                Answer::Ok(v) => {
                    if let Some(id) = client::experiment_id_of_get(&v) {
                        return Ok(id);
                    }
                }
                Answer::Api(e) if e.code == "RESOURCE_DOES_NOT_EXIST" => {}
                Answer::Api(e) => {
                    return Err(self.retry.client.rejected("experiments/get-by-name", e));
                }
            }
            let body = json!({ "name": name }).to_string().into_bytes();
            let created = self
                .retry
                .run(|c| c.post_owned("experiments/create", body.clone()))
                .await?;
            match created {
                Answer::Ok(v) => {
                    if let Some(id) = client::experiment_id_of_create(&v) {
                        return Ok(id);
                    }
                }
                // Another rank created it first: get it again.
                Answer::Api(e) if e.code == "RESOURCE_ALREADY_EXISTS" => {}
                Answer::Api(e) => return Err(self.retry.client.rejected("experiments/create", e)),
            }
        }
        Err(Error::ServerRejected {
            server: self.retry.client.server().to_string(),
            path: "/api/2.0/mlflow/experiments/create".into(),
            status: 400,
            code: "RESOURCE_ALREADY_EXISTS".into(),
            message: format!(
                "experiment {name:?} exists but cannot be read by name; it may be deleted (restore or purge it)"
            ),
        })
    }

    async fn end_remote(&mut self, status: RemoteStatus, end_ms: i64) -> Result<()> {
        let mut body = json!({
            "run_id": self.state.remote_run_id,
            "status": status.as_str(),
            "end_time": end_ms,
        });
        if let Some(name) = &self.mapper.name {
            body["run_name"] = json!(name);
        }
        let body = body.to_string().into_bytes();
        self.retry
            .run(|c| c.post_ok_owned("runs/update", body.clone()))
            .await?;
        self.state.status = Some(status.as_str().to_string());
        self.state.save(&self.dir)
    }
}

/// The remote run tagged with the ranklog id in `search`, else a new one
/// made with `create`.
async fn find_or_create_run(
    c: Client,
    search: Vec<u8>,
    create: Vec<u8>,
) -> std::result::Result<String, Failure> {
    let found = c.post_ok("runs/search", search).await?;
    if let Some(id) = client::run_id_of_search(&found) {
        return Ok(id);
    }
    let created = c.post_ok("runs/create", create).await?;
    client::run_id_of_create(&created).ok_or_else(|| {
        Failure::Fatal(Error::NotMlflow {
            server: c.server().to_string(),
            path: "/api/2.0/mlflow/runs/create".into(),
            status: 200,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use parking_lot::Mutex;

    use super::*;

    /// What the fake server does with a request.
    enum Act {
        /// Answer with a status, a JSON body and maybe `Retry-After`.
        Answer(u16, String, Option<u32>),
        /// Close the connection without an answer.
        Drop,
        /// Never answer.
        Hang,
    }

    /// Requests the fake server saw: path and arrival time.
    type Seen = Arc<Mutex<Vec<(String, Instant)>>>;

    /// A tiny HTTP/1.1 server on 127.0.0.1 answering with `handler(path, n)`,
    /// `n` counting the requests to that path from 1.
    fn fake(handler: impl Fn(&str, usize) -> Act + Send + Sync + 'static) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let handler = Arc::new(handler);
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (h, s) = (handler.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &*h, &s));
            }
        });
        (uri, seen)
    }

    fn serve(mut conn: TcpStream, handler: &dyn Fn(&str, usize) -> Act, seen: &Seen) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            let target = head.split(' ').nth(1).unwrap_or_default().to_string();
            let path = target
                .split('?')
                .next()
                .unwrap_or_default()
                .trim_start_matches("/api/2.0/mlflow/")
                .to_string();
            buf.drain(..end + 4 + len);
            let n = {
                let mut s = seen.lock();
                s.push((path.clone(), Instant::now()));
                s.iter().filter(|(p, _)| *p == path).count()
            };
            match handler(&path, n) {
                Act::Answer(status, body, after) => {
                    let after = after
                        .map(|s| format!("Retry-After: {s}\r\n"))
                        .unwrap_or_default();
                    let msg = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{after}\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(msg.as_bytes()).is_err() {
                        return;
                    }
                }
                Act::Drop => return,
                Act::Hang => {
                    std::thread::sleep(Duration::from_secs(600));
                    return;
                }
            }
        }
    }

    /// Answers of a server that works, with `created` runs found by search.
    fn normal(path: &str, created: &AtomicUsize) -> Act {
        let ok = |body: &str| Act::Answer(200, body.to_string(), None);
        match path {
            "experiments/get-by-name" => ok(r#"{"experiment":{"experiment_id":"1"}}"#),
            "runs/search" if created.load(Ordering::SeqCst) > 0 => {
                ok(r#"{"runs":[{"info":{"run_id":"r1"}}]}"#)
            }
            "runs/search" => ok("{}"),
            "runs/create" => {
                created.fetch_add(1, Ordering::SeqCst);
                ok(r#"{"run":{"info":{"run_id":"r1"}}}"#)
            }
            _ => ok("{}"),
        }
    }

    /// A finished offline run with `steps` steps.
    fn offline_run(root: &Path, steps: u64) -> PathBuf {
        let run = crate::init(
            crate::Settings::new()
                .dir(root)
                .mode(crate::Mode::Offline)
                .silent(true)
                .capture_git(false),
        )
        .unwrap();
        for s in 0..steps {
            run.log([("loss", s as f64)]).unwrap();
        }
        run.summary("best", 1.0).unwrap();
        run.finish().unwrap().dir.unwrap()
    }

    fn tuning(request_timeout: Duration) -> UploadTuning {
        UploadTuning {
            request_timeout,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
        }
    }

    fn sync(dir: &Path, uri: &str, tuning: UploadTuning) -> Result<SyncReport> {
        Uploader::open_with(
            dir,
            &Target::new(uri),
            Arc::new(Control::default()),
            Persistence::GiveUpAfter(Duration::from_secs(30)),
            tuning,
        )?
        .run(true, &mut |_| {})
    }

    #[test]
    fn a_run_created_whose_answer_was_lost_is_not_created_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = offline_run(root.path(), 10);
        let created = Arc::new(AtomicUsize::new(0));
        let c = created.clone();
        // The server creates the run, then the connection drops.
        let (uri, seen) = fake(move |path, n| {
            let act = normal(path, &c);
            if path == "runs/create" && n == 1 {
                Act::Drop
            } else {
                act
            }
        });
        let report = sync(&dir, &uri, tuning(Duration::from_secs(10))).unwrap();
        assert_eq!(report.remote_run_id.as_deref(), Some("r1"));
        assert_eq!(report.status.as_deref(), Some("FINISHED"));
        assert_eq!(created.load(Ordering::SeqCst), 1, "{:?}", seen.lock());
    }

    #[test]
    fn retry_after_is_honoured() {
        let root = tempfile::tempdir().unwrap();
        let dir = offline_run(root.path(), 10);
        let created = Arc::new(AtomicUsize::new(0));
        let c = created.clone();
        let (uri, seen) = fake(move |path, n| {
            if path == "runs/log-batch" && n == 1 {
                Act::Answer(429, "{}".into(), Some(1))
            } else {
                normal(path, &c)
            }
        });
        sync(&dir, &uri, tuning(Duration::from_secs(10))).unwrap();
        let seen = seen.lock();
        let batches: Vec<Instant> = seen
            .iter()
            .filter(|(p, _)| p == "runs/log-batch")
            .map(|(_, t)| *t)
            .collect();
        assert!(batches.len() >= 2, "{seen:?}");
        // The backoff alone would retry after 10 ms.
        assert!(
            batches[1] - batches[0] >= Duration::from_secs(1),
            "retried after {:?}",
            batches[1] - batches[0]
        );
    }

    #[test]
    fn a_live_upload_stops_at_its_deadline_with_a_request_unanswered() {
        let root = tempfile::tempdir().unwrap();
        let dir = offline_run(root.path(), 10);
        let created = Arc::new(AtomicUsize::new(0));
        let c = created.clone();
        let (uri, _seen) = fake(move |path, _| {
            if path == "runs/log-batch" {
                Act::Hang
            } else {
                normal(path, &c)
            }
        });
        let control = Arc::new(Control::default());
        // The client would wait 10 min for the answer.
        let mut up = Uploader::open_with(
            &dir,
            &Target::new(&uri),
            control.clone(),
            Persistence::Live,
            tuning(Duration::from_secs(600)),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = rt.block_on(up.upload(Unfinished::Leave, true, &mut |_| {}));
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        std::thread::sleep(Duration::from_millis(300));
        control.finish_by(Instant::now() + Duration::from_millis(200));
        // Without the deadline on requests this would take 10 minutes.
        let result = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the upload ended at its deadline");
        let err = result.unwrap_err();
        assert!(err.contains("deadline"), "{err}");
    }
}
