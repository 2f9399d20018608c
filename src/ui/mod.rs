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
mod cache;
mod chart;
mod data;
mod html;
mod pages;
mod routes;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use cache::Cache;

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

pub(crate) struct AppState {
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
        let app = routes::router(self.state);
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

#[cfg(test)]
mod tests {
    use super::*;

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
