//! The `ranklog` command: list, inspect, launch and sync runs.

mod export;
mod group;
mod launch;
mod login;
mod plot;
mod runs;
mod show;
mod sync;
mod table;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Track distributed training runs: list, inspect, launch and sync them.
#[derive(Parser)]
#[command(name = "ranklog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List runs, newest first.
    Runs(runs::Args),
    /// Show one run: meta, config, summary, git and its metrics.
    Show(show::Args),
    /// Show the runs of one group side by side: ranks, aggregates, stragglers.
    Group(group::Args),
    /// Start N ranks of a command on this host (torchrun variables + group).
    Launch(launch::Args),
    /// Export runs to another tracker's offline format (W&B).
    Export(export::Args),
    /// Upload runs to an MLflow tracking server, resuming where the last upload stopped.
    Sync(sync::Args),
    /// Save credentials for a tracking server (mode 0600).
    Login(login::Args),
    /// Serve a local web page of the runs and group views (like tensorboard --logdir).
    Ui(ui::Args),
}

/// The root directory: `--dir`, else `RANKLOG_DIR`, else `./ranklog`.
pub(crate) fn root(dir: &Option<PathBuf>) -> PathBuf {
    match dir {
        Some(d) => d.clone(),
        None => ranklog::Settings::new().root(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Runs(args) => runs::run(args),
        Command::Show(args) => show::run(args),
        Command::Group(args) => group::run(args),
        Command::Launch(args) => launch::run(args),
        Command::Export(args) => export::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Login(args) => login::run(args),
        Command::Ui(args) => ui::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("ranklog: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
