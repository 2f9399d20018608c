//! Behaviour tests: one binary built from modules, so CI links once.

mod interop_mlflow;
mod sync;
mod util;
