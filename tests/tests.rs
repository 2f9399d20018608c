//! Behaviour tests: one binary built from modules, so CI links once.

mod cli;
mod export;
mod group;
mod interop_mlflow;
mod interop_mlflow_faults;
mod queue;
mod runs;
mod store;
mod sync;
mod ui;
mod util;
