//! Behaviour tests: one binary built from modules, so CI links once.

mod util;
mod interop_mlflow;
