//! `ranklog ui`: serve the local web page of runs and group views.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ranklog::ui::{Options, Server, DEFAULT_PORT};

/// Arguments of `ranklog ui`.
#[derive(clap::Args)]
pub struct Args {
    /// Root directory of the runs [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Address to listen on; anything but a loopback address needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Allow a non-loopback --host: anyone who can reach it can read every run (no authentication).
    #[arg(long)]
    allow_remote: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = crate::root(&args.dir);
    let mut options = Options::new(root.clone());
    options.host = args.host;
    options.port = args.port;
    options.allow_remote = args.allow_remote;
    let server = Server::bind(options)?;
    eprintln!(
        "ranklog: serving {} at http://{}/ (Ctrl-C to stop)",
        root.display(),
        server.local_addr()
    );
    server.run()?;
    Ok(ExitCode::SUCCESS)
}
