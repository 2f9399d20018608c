//! `ranklog login`: store credentials for a tracking server.
//!
//! Asks for a user name and password (MLflow's basic-auth app), or a bearer
//! token when the user name is left empty; checks them against the server;
//! saves them in the per-user credentials file (mode 0600). With
//! `--username U --password-stdin` or `--token-stdin` it reads the secret from
//! standard input instead, for scripts. Secrets are never echoed or printed.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ranklog::sync::{store_credentials, Credentials, Target};

/// Arguments of `ranklog login`.
#[derive(clap::Args)]
pub struct Args {
    /// The tracking server [default: $RANKLOG_TRACKING_URI or $MLFLOW_TRACKING_URI]
    #[arg(long)]
    tracking_uri: Option<String>,
    /// The user name (basic auth); asked for when not given.
    #[arg(long)]
    username: Option<String>,
    /// Read the password from standard input (needs --username).
    #[arg(long, requires = "username", conflicts_with = "token_stdin")]
    password_stdin: bool,
    /// Read a bearer token from standard input.
    #[arg(long)]
    token_stdin: bool,
    /// Save without checking the credentials against the server.
    #[arg(long)]
    no_check: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let target = Target::resolve(args.tracking_uri.as_deref())?;
    let credentials = if args.token_stdin {
        Credentials::Token {
            token: read_line_stdin()?,
        }
    } else if args.password_stdin {
        Credentials::Basic {
            username: args.username.clone().unwrap_or_default(),
            password: read_line_stdin()?,
        }
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal; use --username U --password-stdin or --token-stdin");
        }
        let username = match args.username.clone() {
            Some(u) => u,
            None => prompt(&format!(
                "ranklog: user name for {} (empty to use a token): ",
                target.server
            ))?,
        };
        if username.is_empty() {
            Credentials::Token {
                token: prompt_secret("ranklog: token: ")?,
            }
        } else {
            Credentials::Basic {
                username,
                password: prompt_secret("ranklog: password: ")?,
            }
        }
    };
    if !args.no_check {
        let check = Target {
            server: target.server.clone(),
            credentials: Some(credentials.clone()),
        };
        check.check().context("the credentials were not saved")?;
    }
    let path = store_credentials(&target.server, credentials)?;
    eprintln!(
        "ranklog: credentials for {} saved in {}",
        target.server,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_line_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    let secret = line.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        bail!("standard input was empty");
    }
    Ok(secret)
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Reads a line from the terminal with echo turned off.
fn prompt_secret(text: &str) -> Result<String> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is open; `term` is a valid out-pointer.
    let saved = unsafe { libc::tcgetattr(fd, &mut term) } == 0;
    if saved {
        let mut quiet = term;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: setting attributes of our own terminal from a valid struct.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if saved {
        // SAFETY: restores the attributes read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    }
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
