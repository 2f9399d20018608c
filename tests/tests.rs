//! Behaviour tests: one binary built from modules, so CI links once.

mod cli;
mod group;
mod queue;
mod runs;
mod store;
mod ui;
mod util;
