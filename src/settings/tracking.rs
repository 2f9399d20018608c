//! Where the tracking server is and who we are to it, from the environment.

use std::path::PathBuf;

use super::env_var;

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
