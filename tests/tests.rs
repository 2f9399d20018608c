//! Behaviour tests: one binary built from modules, so CI links once.

mod cli;
mod clock;
mod disk_full;
mod export;
mod group;
mod interop_mlflow;
mod interop_mlflow_faults;
mod queue;
mod queue_faults;
mod runs;
mod store;
mod sync;
mod ui;
mod util;
