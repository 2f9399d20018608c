//! Fuzzing entry point of the MLflow response parser (feature `fuzzing`).

use std::sync::OnceLock;
use std::time::Duration;

use super::client::{self, Answer, Client, Failure};

/// The endpoints whose answers the uploader reads, in the order the fuzz
/// input's path byte picks them.
pub const PATHS: [&str; 7] = [
    "experiments/get-by-name",
    "experiments/create",
    "runs/search",
    "runs/create",
    "runs/log-batch",
    "runs/update",
    "experiments/search",
];

/// Classifies one answer of the server as the client does, then reads what
/// the uploader reads from a JSON answer of that endpoint (and the body as a
/// `Retry-After` value). Every outcome is
/// formatted, as it would be when reported.
pub fn response(path: usize, status: u16, body: &[u8]) -> String {
    static CLIENT: OnceLock<Option<Client>> = OnceLock::new();
    let Some(c) = CLIENT
        .get_or_init(|| Client::new("http://127.0.0.1:5000", None, Duration::from_secs(60)).ok())
        .as_ref()
    else {
        return String::new();
    };
    // A Retry-After header's value, as the client reads it from a 429/503.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Some(d) = client::parse_retry_after(text) {
            assert!(d <= client::RETRY_AFTER_MAX);
        }
    }
    let path = PATHS[path % PATHS.len()];
    match c.classify(path, status, body) {
        Ok(Answer::Ok(v)) => {
            let id = match path {
                "experiments/get-by-name" => client::experiment_id_of_get(&v),
                "experiments/create" => client::experiment_id_of_create(&v),
                "runs/search" => client::run_id_of_search(&v),
                "runs/create" => client::run_id_of_create(&v),
                _ => None,
            };
            format!("ok {id:?}")
        }
        Ok(Answer::Api(e)) => {
            assert!(!(200..300).contains(&e.status));
            let shown = c.rejected(path, e).to_string();
            format!("api {shown}")
        }
        Err(Failure::Transient { detail, error, .. }) => {
            // Busy or failing servers, and a 400 quoting a unique-key
            // violation (two writers of the same rows at once).
            assert!(
                status == 429
                    || (500..600).contains(&status)
                    || (status == 400 && client::is_write_conflict(body))
            );
            format!("transient {detail} {error}")
        }
        Err(Failure::Fatal(e)) => format!("fatal {e}"),
    }
}
