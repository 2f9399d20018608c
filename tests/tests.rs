//! Behaviour tests: one binary built from modules, so CI links once.

mod cli;
mod runs;
mod store;
mod group;
mod util;
