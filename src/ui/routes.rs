//! The HTTP side: routes, the guard that checks `Host` and adds security
//! headers, and the handlers that read runs off the async workers.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::pages::{self, RunFilter};
use super::{api, cache, data, html, AppState};
use crate::error::Error;

/// How long a group page waits for the first read of a group before it
/// answers with a page that says the logs are being read (and updates itself).
const FIRST_READ_WAIT: std::time::Duration = std::time::Duration::from_millis(700);

pub(super) fn router(state: Arc<AppState>) -> Router {
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
            None => cache::member_logs(&st.root, &group),
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
}
