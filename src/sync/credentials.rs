//! Credentials for a tracking server, and the per-user file `ranklog login` keeps them in.
//!
//! The file is `<config dir>/credentials.json` (see [`crate::Settings`] for
//! the config dir), created with mode 0600 in a folder with mode 0700. It maps
//! a server URI to either a user and password (HTTP basic auth, as MLflow's
//! `basic-auth` app wants) or a bearer token. Environment variables win over
//! the file. Nothing here prints a password or token: [`Credentials`]'
//! `Debug` redacts them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the credentials file in the config dir.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// How ranklog authenticates to a tracking server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Credentials {
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Token {
        /// The token.
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Token { .. } => f
                .debug_struct("Token")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    servers: BTreeMap<String, Credentials>,
}

/// The credentials file: `<config dir>/credentials.json`, if a config dir is known.
pub fn credentials_path() -> Option<PathBuf> {
    crate::settings::config_dir().map(|d| d.join(CREDENTIALS_FILE))
}

/// The credentials for `server`: from the environment, else from the file.
///
/// A token in the environment wins over a user name; a user name without a
/// password uses an empty password.
pub fn credentials_for(server: &str) -> Option<Credentials> {
    let env = crate::settings::tracking_credentials();
    if let Some(token) = env.token {
        return Some(Credentials::Token { token });
    }
    if let Some(username) = env.username {
        return Some(Credentials::Basic {
            username,
            password: env.password.unwrap_or_default(),
        });
    }
    let path = credentials_path()?;
    read_file(&path).ok()?.servers.remove(&normalize(server))
}

/// Saves the credentials for `server` in the per-user file (mode 0600) and
/// returns its path.
///
/// # Errors
///
/// [`Error::NoConfigDir`] when neither `RANKLOG_CONFIG_DIR`, `XDG_CONFIG_HOME`
/// nor `HOME` is set; [`Error::Write`] when the file cannot be written.
pub fn store_credentials(server: &str, credentials: Credentials) -> Result<PathBuf> {
    let path = credentials_path().ok_or(Error::NoConfigDir)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let mut file = read_file(&path).unwrap_or_default();
    file.servers.insert(normalize(server), credentials);
    let text = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let tmp = dir.join(format!(".{CREDENTIALS_FILE}.{}", std::process::id()));
    let write = |tmp: &Path| -> std::io::Result<()> {
        let _ = fs::remove_file(tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(tmp, &path)
    };
    write(&tmp).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        Error::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

fn read_file(path: &Path) -> Result<File> {
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::BadJson {
        path: path.to_path_buf(),
        source,
    })
}

/// The key a server is stored under: its URI without a trailing `/`.
fn normalize(server: &str) -> String {
    server.trim().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let b = Credentials::Basic {
            username: "alice".into(),
            password: "hunter2-hunter2".into(),
        };
        let t = Credentials::Token {
            token: "tok-123456".into(),
        };
        let shown = format!("{b:?} {t:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2") && !shown.contains("tok-123456"));
    }

    #[test]
    fn file_round_trips_both_kinds() {
        let mut f = File::default();
        f.servers
            .insert("http://a".into(), Credentials::Token { token: "t".into() });
        f.servers.insert(
            "http://b".into(),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        );
        let text = serde_json::to_string(&f).unwrap();
        let back: File = serde_json::from_str(&text).unwrap();
        assert_eq!(back.servers, f.servers);
    }
}
