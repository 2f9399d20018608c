//! The local web page of `ranklog ui`: runs, one run, and group views with
//! charts, served by the binary itself.
//!
//! Like `tensorboard --logdir`, it reads the run directories under a root
//! and needs nothing else: the style and the small script are inline, the
//! charts are SVG drawn on the server, nothing is fetched from the network.
//!
//! # Pages and documents
//!
//! | path | what |
//! |---|---|
//! | `/` | every run, newest first; `?project=`, `?group=`, `?state=` filter |
//! | `/run/ID` | one run (by id, or by a unique name): meta, config, summary, a chart per metric (x: step or wall time) |
//! | `/group/G` | the ranks of group `G`: state, steps, stragglers, missing and crashed ranks, and per metric every rank's line, the mean and the min–max band |
//! | `/api/runs`, `/api/run/ID`, `/api/group/G` | the same data as JSON |
//!
//! A page asked with `?partial=1` returns only the part that changes; the
//! page's script fetches it every two seconds while something is running and
//! swaps it in place, so the reader keeps the scroll position, the filters,
//! the x axis and the highlighted rank.
//!
//! # Size and speed
//!
//! Series are down-sampled on the server to at most 240 points per line
//! (mean per bucket of steps, with the min–max band), so a page's size grows
//! with ranks × metrics, never with steps. Group views are cached: at start
//! every group is read once in the background; later requests get the cached
//! view at once, and when a member's log has changed a background thread
//! reads the group again (at most once per twice the time the last read
//! took) for the requests after it.
//!
//! # Security
//!
//! - The server binds to a loopback address unless [`Options::allow_remote`]
//!   is set, and then warns: there is no authentication.
//! - While bound to loopback, requests whose `Host` is not a loopback name
//!   are refused (a web page elsewhere cannot reach the server through DNS
//!   rebinding).
//! - Every string from a run is escaped; the script runs under a
//!   Content-Security-Policy with a fresh nonce per response, so markup that
//!   got through would still not run.
//! - Ids and names in URLs are compared with the run directories listed
//!   under the root, never joined to a path, so no request reaches outside it.
//! - A run that is corrupt or half-written shows what is readable and a
//!   notice; a run that is not readable at all is listed as `unreadable`.

mod api;
mod chart;
mod data;
mod html;
mod pages;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::{Error, Result};
use data::Cache;
use pages::RunFilter;

/// How long a group page waits for the first read of a group before it
/// answers with a page that says the logs are being read (and updates itself).
const FIRST_READ_WAIT: std::time::Duration = std::time::Duration::from_millis(700);

/// The default port of `ranklog ui`.
pub const DEFAULT_PORT: u16 = 6007;

/// Where and what [`Server`] serves.
#[derive(Debug, Clone)]
#[must_use]
pub struct Options {
    /// The root directory of the runs.
    pub root: PathBuf,
    /// The address to listen on (default `127.0.0.1`).
    pub host: IpAddr,
    /// The port (default [`DEFAULT_PORT`]; 0 picks a free one).
    pub port: u16,
    /// Whether a non-loopback `host` is allowed (default false). Anyone who
    /// can reach such an address can read every run under the root.
    pub allow_remote: bool,
}

impl Options {
    /// Serve `root` on `127.0.0.1:6007`.
    pub fn new(root: impl Into<PathBuf>) -> Options {
        Options {
            root: root.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            allow_remote: false,
        }
    }
}

/// A bound, not yet running, web server over a root of runs.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ranklog::ui::{Options, Server};
/// let mut options = Options::new(dir.path());
/// options.port = 0; // any free port
/// let server = Server::bind(options)?;
/// assert!(server.local_addr().ip().is_loopback());
/// // server.run()? would serve until Ctrl-C.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

struct AppState {
    root: PathBuf,
    loopback: bool,
    cache: Cache,
}

impl Server {
    /// Binds the listening socket.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for a non-loopback host without
    /// [`Options::allow_remote`], [`Error::Serve`] when the address cannot
    /// be bound (in use, not an address of this machine).
    pub fn bind(options: Options) -> Result<Server> {
        let loopback = options.host.is_loopback();
        if !loopback && !options.allow_remote {
            return Err(Error::InvalidSetting {
                name: "host".into(),
                value: options.host.to_string(),
                reason: "the page has no authentication, so it is served on loopback addresses (127.0.0.1, ::1) only; allow other addresses explicitly (`ranklog ui --allow-remote`) if every host that can reach it may read these runs".into(),
            });
        }
        let want = SocketAddr::new(options.host, options.port);
        let serve_err = |source| Error::Serve {
            addr: want.to_string(),
            source,
        };
        let listener = std::net::TcpListener::bind(want).map_err(serve_err)?;
        listener.set_nonblocking(true).map_err(serve_err)?;
        let addr = listener.local_addr().map_err(serve_err)?;
        if !loopback {
            crate::console::warn(&format!(
                "serving on {addr}, which is not a loopback address: anyone who can reach it can read every run under {} (there is no authentication)",
                options.root.display()
            ));
        }
        Ok(Server {
            listener,
            addr,
            state: Arc::new(AppState {
                root: options.root,
                loopback,
                cache: Cache::default(),
            }),
        })
    }

    /// The address the server listens on (with the port picked, if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until Ctrl-C or SIGTERM.
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] if the runtime cannot start or the listener fails.
    pub fn run(self) -> Result<()> {
        self.run_until(shutdown_signal())
    }

    /// Serves until `shutdown` completes.
    ///
    /// # Errors
    ///
    /// As [`Server::run`].
    pub fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let addr = self.addr.to_string();
        let serve_err = |source| Error::Serve {
            addr: addr.clone(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(16)
            .thread_name("ranklog-ui")
            .enable_all()
            .build()
            .map_err(serve_err)?;
        let state = self.state.clone();
        std::thread::Builder::new()
            .name("ranklog-ui-warm".into())
            .spawn(move || state.cache.warm(&state.root))
            .map_err(serve_err)?;
        let app = router(self.state);
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener).map_err(serve_err)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(serve_err)
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/run/{id}", get(run_page))
        .route("/group/{group}", get(group_page))
        .route("/api/runs", get(runs_json))
        .route("/api/run/{id}", get(run_json))
        .route("/api/group/{group}", get(group_json))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses non-loopback `Host` names while bound to loopback, and adds the
/// security headers to every response.
async fn guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "ranklog ui answers only requests addressed to localhost\n",
            )
                .into_response();
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Whether a `Host` header names this machine's loopback (any port).
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Default, serde::Deserialize)]
struct PageQuery {
    partial: Option<String>,
    project: Option<String>,
    group: Option<String>,
    state: Option<String>,
}

impl PageQuery {
    fn partial(&self) -> bool {
        self.partial.as_deref().is_some_and(|p| p != "0")
    }

    fn filter(&self) -> RunFilter {
        RunFilter {
            project: self.project.clone(),
            group: self.group.clone(),
            state: self.state.clone(),
        }
    }
}

/// An HTML response with a script nonce in its Content-Security-Policy.
fn html(status: StatusCode, title: &str, before: &str, live: &str, partial: bool) -> Response {
    let nonce = nonce();
    let body = if partial {
        live.to_string()
    } else {
        html::page(title, before, live, &nonce)
    };
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness the nonce is still unique per response.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&t.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// The HTTP status of an error while reading runs.
fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::RunNotFound { .. } | Error::GroupNotFound { .. } => StatusCode::NOT_FOUND,
        Error::AmbiguousRun { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Runs blocking file reads off the async workers; a panic becomes an error page.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "ranklog ui: a request failed");
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error",
            "",
            &pages::problem("error", "reading the runs failed; see the server's log"),
            false,
        )
    })
}

async fn runs_page(State(st): State<Arc<AppState>>, Query(q): Query<PageQuery>) -> Response {
    let st2 = st.clone();
    let rows = match blocking(move || st2.cache.runs(&st2.root)).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let f = q.filter();
    match rows {
        Ok(rows) => html(
            StatusCode::OK,
            "runs",
            &pages::runs_filters(&rows, &f),
            &pages::runs(&rows, &f),
            q.partial(),
        ),
        Err(e) => html(
            status_of(&e),
            "runs",
            "",
            &pages::problem("cannot list the runs", &data::error_chain(&e)),
            q.partial(),
        ),
    }
}

async fn run_page(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let found =
        match blocking(move || data::find_run(&st.root, &id).map(|dir| data::run_page(&dir))).await
        {
            Ok(r) => r,
            Err(res) => return res,
        };
    match found {
        Ok(p) => html(
            StatusCode::OK,
            &pages::run_title(&p),
            &pages::run_controls(),
            &pages::run(&p),
            q.partial(),
        ),
        Err(e) => html(
            status_of(&e),
            "run",
            "",
            &pages::problem("no such run", &data::error_chain(&e)),
            q.partial(),
        ),
    }
}

async fn group_page(
    State(st): State<Arc<AppState>>,
    UrlPath(group): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let title = format!("group {group}");
    let view = match blocking(move || {
        let view = st.cache.group_within(&st.root, &group, FIRST_READ_WAIT);
        let logs = match view {
            Some(_) => Vec::new(),
            None => data::member_logs(&st.root, &group),
        };
        (view, group, logs)
    })
    .await
    {
        Ok(r) => r,
        Err(res) => return res,
    };
    let view = match view {
        (Some(v), _, _) => v,
        (None, group, logs) => {
            return html(
                StatusCode::OK,
                &title,
                "",
                &pages::group_reading(&group, &logs),
                q.partial(),
            )
        }
    };
    match view {
        Ok(v) => html(StatusCode::OK, &title, "", &pages::group(&v), q.partial()),
        Err(e) => html(
            status_of(&e),
            &title,
            "",
            &pages::problem("no such group", &data::error_chain(&e)),
            q.partial(),
        ),
    }
}

async fn runs_json(State(st): State<Arc<AppState>>, Query(q): Query<PageQuery>) -> Response {
    let f = q.filter();
    match blocking(move || st.cache.runs(&st.root)).await {
        Ok(Ok(rows)) => json(
            StatusCode::OK,
            api::runs(rows.iter().filter(|r| f.keeps(r))),
        ),
        Ok(Err(e)) => json(
            status_of(&e),
            serde_json::json!({"error": data::error_chain(&e)}),
        ),
        Err(res) => res,
    }
}

async fn run_json(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Response {
    let found = blocking(move || data::find_run(&st.root, &id).map(|d| data::run_page(&d))).await;
    match found {
        Ok(Ok(p)) => json(StatusCode::OK, api::run(&p)),
        Ok(Err(e)) => json(
            status_of(&e),
            serde_json::json!({"error": data::error_chain(&e)}),
        ),
        Err(res) => res,
    }
}

async fn group_json(State(st): State<Arc<AppState>>, UrlPath(group): UrlPath<String>) -> Response {
    match blocking(move || st.cache.group(&st.root, &group)).await {
        Ok(Ok(v)) => json(StatusCode::OK, api::group(&v)),
        Ok(Err(e)) => json(
            status_of(&e),
            serde_json::json!({"error": data::error_chain(&e)}),
        ),
        Err(res) => res,
    }
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/api/") {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!("no such document {path}")}),
        );
    }
    html(
        StatusCode::NOT_FOUND,
        "not found",
        "",
        &pages::problem("not found", &format!("there is no page {path}")),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "127.0.0.1:6007",
            "localhost:1",
            "LOCALHOST",
            "[::1]:6007",
            "127.1.2.3",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["evil.example:6007", "", "10.0.0.1:6007", "[fe80::1]:1"] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn remote_hosts_need_permission() {
        let mut o = Options::new("/nonexistent");
        o.host = "0.0.0.0"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        o.port = 0;
        assert!(matches!(Server::bind(o), Err(Error::InvalidSetting { .. })));
    }
}
