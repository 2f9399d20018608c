//! Behaviour tests: one binary built from modules, so CI links once.

mod export;
mod util;
