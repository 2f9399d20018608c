//! Upload errors and online mode without a real MLflow server: fake servers
//! on 127.0.0.1 answer like a basic-auth MLflow, a web server or nothing.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ranklog::{Mode, Reinit, Settings};

use crate::util::{assert_success, only_run, ranklog, ranklog_bin, read_http_request, temp_root};

/// A server answering every request with `status` and `body`; returns its URI.
fn fake_server(status: &'static str, content_type: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let uri = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let _ = read_http_request(&stream);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    uri
}

/// A port nothing listens on.
fn dead_uri() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", l.local_addr().expect("addr"))
}

fn offline_run(root: &Path) {
    let run = ranklog::init(
        Settings::new()
            .project("errs")
            .dir(root)
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .reinit(Reinit::CreateNew),
    )
    .expect("init");
    run.log([("loss", 1.0)]).expect("log");
    run.finish().expect("finish");
}

fn sync(root: &Path, uri: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(ranklog_bin());
    cmd.args(["sync", "--all", "--retry-for", "1", "--dir"])
        .arg(root)
        .args(["--tracking-uri", uri])
        .env("RANKLOG_CONFIG_DIR", root.join(".config"))
        .env_remove("RANKLOG_TRACKING_USERNAME")
        .env_remove("RANKLOG_TRACKING_PASSWORD")
        .env_remove("RANKLOG_TRACKING_TOKEN")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("ranklog sync")
}

fn failed_with(out: &std::process::Output, needle: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stdout: {stdout}");
    assert!(stdout.contains(needle), "expected {needle:?} in: {stdout}");
}

#[test]
fn plain_text_401_is_permission_denied_with_a_hint() {
    let root = temp_root();
    offline_run(root.path());
    let uri = fake_server(
        "401 UNAUTHORIZED",
        "text/plain",
        "You are not authenticated. Please see the documentation.",
    );
    let out = sync(
        root.path(),
        &uri,
        &[
            ("RANKLOG_TRACKING_USERNAME", "alice"),
            ("RANKLOG_TRACKING_PASSWORD", "pw-never-shown-42"),
        ],
    );
    failed_with(&out, "refused access to experiment \"errs\" (HTTP 401)");
    failed_with(&out, "ranklog login");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("pw-never-shown-42"));
}

#[test]
fn plain_text_403_asks_for_edit_permission() {
    let root = temp_root();
    offline_run(root.path());
    let uri = fake_server("403 FORBIDDEN", "text/plain", "Permission denied");
    failed_with(&sync(root.path(), &uri, &[]), "EDIT permission");
}

#[test]
fn a_web_server_that_is_not_mlflow_is_named() {
    let root = temp_root();
    offline_run(root.path());
    let uri = fake_server("404 Not Found", "text/html", "<html>no such page</html>");
    failed_with(
        &sync(root.path(), &uri, &[]),
        "is not an MLflow tracking server (HTTP 404",
    );
}

#[test]
fn a_400_carries_the_servers_message() {
    let root = temp_root();
    offline_run(root.path());
    let uri = fake_server(
        "400 Bad Request",
        "application/json",
        r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad experiment name"}"#,
    );
    failed_with(
        &sync(root.path(), &uri, &[]),
        "INVALID_PARAMETER_VALUE): bad experiment name",
    );
}

#[test]
fn refused_connection_is_retried_then_reported() {
    let root = temp_root();
    offline_run(root.path());
    failed_with(
        &sync(root.path(), &dead_uri(), &[]),
        "refused the connection",
    );
}

#[test]
fn tls_to_a_plain_server_is_a_tls_failure() {
    let root = temp_root();
    offline_run(root.path());
    let uri = fake_server("200 OK", "application/json", "{}").replace("http://", "https://");
    failed_with(&sync(root.path(), &uri, &[]), "TLS handshake");
}

#[test]
fn unknown_host_is_named() {
    let root = temp_root();
    offline_run(root.path());
    failed_with(
        &sync(root.path(), "http://no-such-host.invalid:5000", &[]),
        "cannot resolve the host",
    );
}

#[test]
fn sync_without_a_server_says_how_to_name_one() {
    let root = temp_root();
    let out = Command::new(ranklog_bin())
        .args(["sync", "--all", "--dir"])
        .arg(root.path())
        .env_remove("RANKLOG_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("sync");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tracking-uri"));
}

#[test]
fn online_run_goes_on_when_the_server_is_down() {
    let root = temp_root();
    let uri = dead_uri();
    let run = ranklog::init(
        Settings::new()
            .project("down")
            .dir(root.path())
            .mode(Mode::Online)
            .tracking_uri(&uri)
            .silent(true)
            .capture_git(false)
            .upload_timeout(Duration::from_millis(300))
            .reinit(Reinit::CreateNew),
    )
    .expect("an unreachable server does not fail init");
    for step in 0..1000 {
        run.log([("loss", f64::from(step))]).expect("log");
    }
    let done = run
        .finish()
        .expect("an unreachable server does not fail finish");
    assert_eq!(done.points, 1000);
    let upload = done.upload.expect("online runs report their upload");
    assert!(!upload.complete);
    assert_eq!(upload.acked_bytes, 0);
    assert!(upload.log_bytes > 0);
    // Everything is on disk, waiting for `ranklog sync`.
    let dir = only_run(root.path());
    let out = ranklog(&[
        "sync",
        dir.to_str().expect("utf-8 path"),
        "--dry-run",
        "--tracking-uri",
        &uri,
    ]);
    assert_success(&out, "ranklog sync --dry-run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would upload") && text.contains("FINISHED"),
        "{text}"
    );
}

#[test]
fn login_stores_a_token_in_a_private_file() {
    let root = temp_root();
    let config = root.path().join("cfg");
    let mut child = Command::new(ranklog_bin())
        .args([
            "login",
            "--tracking-uri",
            "http://127.0.0.1:9/",
            "--token-stdin",
            "--no-check",
        ])
        .env("RANKLOG_CONFIG_DIR", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"tok-secret-123\n")
        .expect("write");
    let out = child.wait_with_output().expect("login");
    assert_success(&out, "ranklog login");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("tok-secret-123"));
    let file = config.join("credentials.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("http://127.0.0.1:9") && text.contains("tok-secret-123"));
}
