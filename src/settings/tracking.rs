//! Where the tracking server is and who we are to it, from the environment.

use std::path::PathBuf;
use std::time::Duration;

use super::{env_var, parse_env};
use crate::error::{Error, Result};

/// The tracking server from the environment: `RANKLOG_TRACKING_URI`, else
/// `MLFLOW_TRACKING_URI`.
pub(crate) fn tracking_uri_from_env() -> Option<String> {
    env_var("RANKLOG_TRACKING_URI").or_else(|| env_var("MLFLOW_TRACKING_URI"))
}

/// Credentials for a tracking server named by environment variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for EnvCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Reads `RANKLOG_TRACKING_USERNAME`/`_PASSWORD`/`_TOKEN`, each falling back
/// to its `MLFLOW_TRACKING_*` name.
pub(crate) fn tracking_credentials_with(env: &dyn Fn(&str) -> Option<String>) -> EnvCredentials {
    let pick = |what: &str| {
        env(&format!("RANKLOG_TRACKING_{what}")).or_else(|| env(&format!("MLFLOW_TRACKING_{what}")))
    };
    EnvCredentials {
        username: pick("USERNAME"),
        password: pick("PASSWORD"),
        token: pick("TOKEN"),
    }
}

/// [`tracking_credentials_with`] over the process environment.
pub(crate) fn tracking_credentials() -> EnvCredentials {
    tracking_credentials_with(&env_var)
}

/// The per-user folder of ranklog's own files (credentials):
/// `RANKLOG_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ranklog`, else `~/.config/ranklog`.
pub(crate) fn config_dir() -> Option<PathBuf> {
    env_var("RANKLOG_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| env_var("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("ranklog")))
        .or_else(|| env_var("HOME").map(|h| PathBuf::from(h).join(".config").join("ranklog")))
}

/// How the uploader talks to a tracking server: how long one request may
/// take and how long it waits between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadTuning {
    /// Time for one whole request before it is given up and retried.
    pub request_timeout: Duration,
    /// First wait between retries; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between retries (a server's `Retry-After` may ask for more).
    pub backoff_max: Duration,
}

impl Default for UploadTuning {
    fn default() -> UploadTuning {
        UploadTuning {
            request_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The upload tuning from values set in code, else `RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS`,
/// `RANKLOG_UPLOAD_BACKOFF_MIN_MS` and `RANKLOG_UPLOAD_BACKOFF_MAX_MS`, else defaults.
pub(crate) fn upload_tuning_with(
    env: &dyn Fn(&str) -> Option<String>,
    request_timeout: Option<Duration>,
    backoff: Option<(Duration, Duration)>,
) -> Result<UploadTuning> {
    let d = UploadTuning::default();
    let ms = |name: &str| -> Result<Option<Duration>> {
        env(name)
            .map(|v| {
                let n = parse_env(name, &v)?;
                if n == 0 {
                    return Err(Error::InvalidSetting {
                        name: name.into(),
                        value: v.clone(),
                        reason: "expected a number of milliseconds above 0".into(),
                    });
                }
                Ok(Duration::from_millis(n))
            })
            .transpose()
    };
    let request_timeout = match request_timeout {
        Some(t) => t,
        None => ms("RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS")?.unwrap_or(d.request_timeout),
    };
    let (backoff_min, backoff_max) = match backoff {
        Some(b) => b,
        None => (
            ms("RANKLOG_UPLOAD_BACKOFF_MIN_MS")?.unwrap_or(d.backoff_min),
            ms("RANKLOG_UPLOAD_BACKOFF_MAX_MS")?.unwrap_or(d.backoff_max),
        ),
    };
    let floor = Duration::from_millis(1);
    let backoff_min = backoff_min.max(floor);
    Ok(UploadTuning {
        request_timeout: request_timeout.max(floor),
        backoff_min,
        backoff_max: backoff_max.max(backoff_min),
    })
}

/// [`upload_tuning_with`] over the process environment, nothing set in code.
pub(crate) fn upload_tuning_from_env() -> Result<UploadTuning> {
    upload_tuning_with(&env_var, None, None)
}
