#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod console;
mod error;
pub mod export;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod human;
mod names;
pub mod queue;
pub mod rank;
pub mod record;
mod run;
mod settings;
pub mod store;
mod strategy;
pub mod sync;
mod sys;
pub mod ui;

pub use error::{Error, Result};
pub use group::GroupView;
pub use rank::RankInfo;
pub use record::{ExitState, Record};
pub use run::{init, Finished, MetricValue, Run, SummaryValue};
pub use settings::{Mode, Reinit, Settings};
pub use strategy::Strategy;
