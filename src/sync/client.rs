//! The wire to an MLflow tracking server: one request, classified.
//!
//! Every answer becomes one of three things: a JSON body (2xx), an API error
//! the caller may expect (`RESOURCE_DOES_NOT_EXIST`, `RESOURCE_ALREADY_EXISTS`),
//! or a [`Failure`]: transient (connection errors, timeouts, 429, 5xx: retry
//! with backoff) or fatal (401/403, TLS, not MLflow, other 4xx: report).

use std::time::Duration;

use serde_json::Value;

use super::credentials::Credentials;
use crate::error::Error;

/// Time to set up a TCP (and TLS) connection (at most the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured; a server asking for more is asked
/// again after this long.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// A failed request.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth retrying: the server may come back. `error` is what to report
    /// if it never does; `retry_after` is the wait the server asked for
    /// (`Retry-After` on a 429 or 5xx answer).
    Transient {
        detail: String,
        error: Box<Error>,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help.
    Fatal(Error),
}

/// An MLflow error answer the caller may handle (`error_code` and message).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// What a request led to.
pub(crate) enum Answer {
    Ok(Value),
    Api(ApiError),
}

/// An HTTP client for one tracking server (cheap to clone).
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// The server URI without a trailing `/` and without user info.
    base: String,
    credentials: Option<Credentials>,
    /// Experiment named in permission errors.
    pub experiment: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.base)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Client {
    /// A client for `server`; user info in the URI (`http://u:p@host`) is
    /// taken out of it and used as basic-auth credentials unless others are given.
    pub(crate) fn new(
        server: &str,
        credentials: Option<Credentials>,
        request_timeout: Duration,
    ) -> Result<Client, Error> {
        let (base, from_uri) = split_user_info(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .timeout(request_timeout)
            .user_agent(concat!("ranklog/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| Error::TlsFailure {
                server: base.clone(),
                source: Box::new(e),
            })?;
        Ok(Client {
            http,
            base,
            credentials: credentials.or(from_uri),
            experiment: String::new(),
        })
    }

    /// The server URI as shown to people.
    pub(crate) fn server(&self) -> &str {
        &self.base
    }

    /// `GET /api/2.0/mlflow/<path>?<query>`.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, Failure> {
        let req = self.http.get(self.url(path)).query(query);
        self.send(path, req).await
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: Vec<u8>) -> Result<Answer, Failure> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(path, req).await
    }

    /// [`Client::post_ok`] on an owned client, for retry loops.
    pub(crate) async fn post_ok_owned(
        self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<Value, Failure> {
        self.post_ok(path, body).await
    }

    /// [`Client::post`] on an owned client, for retry loops.
    pub(crate) async fn post_owned(
        self,
        path: &'static str,
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        self.post(path, body).await
    }

    /// [`Client::get`] with one query parameter, on an owned client.
    pub(crate) async fn get_owned(
        self,
        path: &'static str,
        key: &'static str,
        value: String,
    ) -> Result<Answer, Failure> {
        self.get(path, &[(key, value.as_str())]).await
    }

    /// Like [`Client::post`], but an API error is fatal.
    pub(crate) async fn post_ok(&self, path: &str, body: Vec<u8>) -> Result<Value, Failure> {
        match self.post(path, body).await? {
            Answer::Ok(v) => Ok(v),
            Answer::Api(e) => Err(Failure::Fatal(self.rejected(path, e))),
        }
    }

    /// The error for an API answer the caller did not expect.
    pub(crate) fn rejected(&self, path: &str, e: ApiError) -> Error {
        Error::ServerRejected {
            server: self.base.clone(),
            path: api_path(path),
            status: e.status,
            code: e.code,
            message: e.message,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, api_path(path))
    }

    async fn send(&self, path: &str, req: reqwest::RequestBuilder) -> Result<Answer, Failure> {
        let req = match &self.credentials {
            Some(Credentials::Basic { username, password }) => {
                req.basic_auth(username, Some(password))
            }
            Some(Credentials::Token { token }) => req.bearer_auth(token),
            None => req,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_failure(e)),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.transport_failure(e)),
        };
        match self.classify(path, status, &bytes) {
            Err(Failure::Transient { detail, error, .. }) => Err(Failure::Transient {
                detail,
                error,
                retry_after,
            }),
            other => other,
        }
    }

    /// Turns a status and a body into an [`Answer`] or a [`Failure`].
    pub(crate) fn classify(&self, path: &str, status: u16, body: &[u8]) -> Result<Answer, Failure> {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if (200..300).contains(&status) {
            return match json {
                Some(v) => Ok(Answer::Ok(v)),
                None => Err(Failure::Fatal(self.not_mlflow(path, status))),
            };
        }
        let server = self.base.clone();
        let code = json.as_ref().and_then(|v| v.get("error_code")?.as_str());
        match status {
            401 | 403 => Err(Failure::Fatal(Error::PermissionDenied {
                server,
                experiment: self.experiment.clone(),
                status,
            })),
            429 | 500..=599 => transient(status, path, body, server),
            // A 400 may be two writers of the same rows at once (an uploader
            // killed with its request in flight, then `ranklog sync`):
            // MLflow's SQL store lets the loser's unique-key violation out as
            // a 400. Sent again, the same rows are found and accepted, so it
            // is worth retrying. An experiment created by someone else first
            // says so with its own code (its message names the same SQL
            // error), which the caller handles.
            400 if is_write_conflict(body) && code != Some("RESOURCE_ALREADY_EXISTS") => {
                transient(status, path, body, server)
            }
            _ => match code {
                Some(code) => Ok(Answer::Api(ApiError {
                    status,
                    code: code.to_string(),
                    message: json
                        .as_ref()
                        .and_then(|v| v.get("message")?.as_str())
                        .unwrap_or_default()
                        .to_string(),
                })),
                None if status == 404 || status == 405 => {
                    Err(Failure::Fatal(self.not_mlflow(path, status)))
                }
                None => Err(Failure::Fatal(Error::ServerRejected {
                    server,
                    path: api_path(path),
                    status,
                    code: "HTTP".into(),
                    message: snippet(body),
                })),
            },
        }
    }

    fn not_mlflow(&self, path: &str, status: u16) -> Error {
        Error::NotMlflow {
            server: self.base.clone(),
            path: api_path(path),
            status,
        }
    }

    fn transport_failure(&self, e: reqwest::Error) -> Failure {
        let server = self.base.clone();
        let chain = error_chain(&e);
        if chain.contains("dns error") || chain.contains("failed to lookup address") {
            let error = Error::UnknownHost { server };
            return Failure::Transient {
                detail: error.to_string(),
                error: Box::new(error),
                retry_after: None,
            };
        }
        if is_tls(&chain) {
            return Failure::Fatal(Error::TlsFailure {
                server,
                source: Box::new(e.without_url()),
            });
        }
        if refused(&e) {
            return Failure::Transient {
                detail: "connection refused".into(),
                error: Box::new(Error::ConnectionRefused { server }),
                retry_after: None,
            };
        }
        let detail = if e.is_timeout() {
            "request timed out".to_string()
        } else {
            chain
        };
        Failure::Transient {
            error: Box::new(Error::ServerUnavailable {
                server,
                detail: detail.clone(),
            }),
            detail,
            retry_after: None,
        }
    }
}

/// The experiment id in an `experiments/get-by-name` answer.
pub(crate) fn experiment_id_of_get(v: &Value) -> Option<String> {
    v["experiment"]["experiment_id"]
        .as_str()
        .map(str::to_string)
}

/// The experiment id in an `experiments/create` answer.
pub(crate) fn experiment_id_of_create(v: &Value) -> Option<String> {
    v["experiment_id"].as_str().map(str::to_string)
}

/// The id of the first run in a `runs/search` answer.
pub(crate) fn run_id_of_search(v: &Value) -> Option<String> {
    v["runs"]
        .as_array()
        .and_then(|runs| runs.first())
        .and_then(|r| r["info"]["run_id"].as_str())
        .map(str::to_string)
}

/// The run id in a `runs/create` answer.
pub(crate) fn run_id_of_create(v: &Value) -> Option<String> {
    v["run"]["info"]["run_id"].as_str().map(str::to_string)
}

/// A `Retry-After` value in seconds (the HTTP-date form is not used by
/// MLflow or the proxies in front of it, and is ignored), capped at
/// [`RETRY_AFTER_MAX`].
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(RETRY_AFTER_MAX.as_secs_f64()),
    ))
}

/// `experiments/create` → `/api/2.0/mlflow/experiments/create`.
fn api_path(path: &str) -> String {
    format!("/api/2.0/mlflow/{path}")
}

/// Splits `scheme://user:pass@host...` into the URI without user info and
/// the credentials it held.
fn split_user_info(server: &str) -> Result<(String, Option<Credentials>), Error> {
    let trimmed = server.trim().trim_end_matches('/');
    let bad = |reason: &str| Error::InvalidSetting {
        name: "tracking_uri".into(),
        value: redact_user_info(trimmed),
        reason: reason.into(),
    };
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(bad("expected http://host:port or https://host"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad(
            "only http:// and https:// tracking servers are supported",
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad("the URI has no host"));
    }
    match authority.rsplit_once('@') {
        Some((info, host)) => {
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            let creds = Credentials::Basic {
                username: percent_decode(u),
                password: percent_decode(p),
            };
            Ok((format!("{scheme}://{host}{path}"), Some(creds)))
        }
        None => Ok((trimmed.to_string(), None)),
    }
}

/// The URI as stored and compared: without user info and trailing `/`.
pub(crate) fn base_uri(server: &str) -> String {
    match split_user_info(server) {
        Ok((base, _)) => base,
        Err(_) => server.trim().trim_end_matches('/').to_string(),
    }
}

/// The URI with any user info replaced by `***`.
pub(crate) fn redact_user_info(server: &str) -> String {
    match server.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
                None => server.to_string(),
            }
        }
        None => server.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

fn is_tls(chain: &str) -> bool {
    let c = chain.to_ascii_lowercase();
    c.contains("certificate")
        || c.contains("tls")
        || c.contains("handshake")
        || c.contains("invalid peer")
        || c.contains("received corrupt message")
}

fn refused(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = s.source();
    }
    false
}

/// The start of a body, for messages: plain text servers (MLflow's auth app,
/// proxies) answer with a sentence; HTML pages are cut short.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// A failure worth retrying: the server is busy, failing, or lost a race.
fn transient(status: u16, path: &str, body: &[u8], server: String) -> Result<Answer, Failure> {
    let detail = format!("HTTP {status} on {}: {}", api_path(path), snippet(body));
    Err(Failure::Transient {
        error: Box::new(Error::ServerUnavailable {
            server,
            detail: detail.clone(),
        }),
        detail,
        retry_after: None,
    })
}

/// Whether an error body is a database unique-key violation (SQLite,
/// PostgreSQL, MySQL wording), which a concurrent writer of the same rows causes.
pub(crate) fn is_write_conflict(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    [
        "IntegrityError",
        "UNIQUE constraint failed",
        "duplicate key value",
        "Duplicate entry",
    ]
    .iter()
    .any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_moves_to_credentials_and_out_of_the_uri() {
        let (base, creds) = split_user_info("http://bob:s%40cret@host:5000/").unwrap();
        assert_eq!(base, "http://host:5000");
        assert_eq!(
            creds,
            Some(Credentials::Basic {
                username: "bob".into(),
                password: "s@cret".into()
            })
        );
        assert_eq!(
            redact_user_info("https://u:p@h/x"),
            "https://***@h/x".to_string()
        );
        assert!(split_user_info("ftp://h").is_err());
        assert!(split_user_info("localhost:5000").is_err());
    }

    /// Regression (kill-9 torture): `ranklog sync` right after an online run
    /// was killed with a log-batch in flight failed on MLflow's raw
    /// unique-key error instead of retrying.
    #[test]
    fn a_concurrent_write_conflict_is_retried() {
        let c = Client::new("http://127.0.0.1:1", None, Duration::from_secs(1)).unwrap();
        let body = br#"{"error_code":"BAD_REQUEST","message":"(sqlite3.IntegrityError) UNIQUE constraint failed: params.key, params.run_uuid"}"#;
        assert!(matches!(
            c.classify("runs/log-batch", 400, body),
            Err(Failure::Transient { .. })
        ));
        let body = br#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Changing param values is not allowed"}"#;
        assert!(matches!(
            c.classify("runs/log-batch", 400, body),
            Ok(Answer::Api(ApiError { status: 400, .. }))
        ));
    }

    /// Regression (issue #9): retrying every 400 that named a unique-key
    /// violation made an experiment that another process created first
    /// (MLflow's message quotes the SQL error) a retry until the budget ran out.
    #[test]
    fn an_experiment_created_first_elsewhere_is_an_answer_not_a_retry() {
        let c = Client::new("http://127.0.0.1:1", None, Duration::from_secs(1)).unwrap();
        let body = br#"{"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Experiment(name=x) already exists. Error: (sqlite3.IntegrityError) UNIQUE constraint failed: experiments.workspace, experiments.name"}"#;
        assert!(matches!(
            c.classify("experiments/create", 400, body),
            Ok(Answer::Api(ApiError { status: 400, ref code, .. })) if code == "RESOURCE_ALREADY_EXISTS"
        ));
    }

    #[test]
    fn answers_are_classified() {
        let c = Client::new("http://127.0.0.1:1", None, Duration::from_secs(1)).unwrap();
        assert!(matches!(
            c.classify("x", 401, b"You are not authenticated."),
            Err(Failure::Fatal(Error::PermissionDenied { status: 401, .. }))
        ));
        assert!(matches!(
            c.classify("x", 404, b"<html>nope</html>"),
            Err(Failure::Fatal(Error::NotMlflow { status: 404, .. }))
        ));
        assert!(matches!(
            c.classify(
                "x",
                404,
                br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"m"}"#
            ),
            Ok(Answer::Api(ApiError { status: 404, .. }))
        ));
        assert!(matches!(
            c.classify("x", 503, b"busy"),
            Err(Failure::Transient { .. })
        ));
        assert!(matches!(
            c.classify("x", 429, b""),
            Err(Failure::Transient { .. })
        ));
        assert!(matches!(c.classify("x", 200, b"{}"), Ok(Answer::Ok(_))));
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("86400"), Some(RETRY_AFTER_MAX));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
