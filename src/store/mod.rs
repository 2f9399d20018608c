//! The run directory and its append-only log: the source of truth of a run.
//!
//! Online sync, offline sync, crash recovery, group views and exports all read
//! what this module writes; none of them keeps a second copy of the data.
//!
//! # Layout
//!
//! ```text
//! <root>/                         RANKLOG_DIR, default ./ranklog
//!   latest-run -> run-…           symbolic link to the newest run
//!   .ranklog/counters/<project>   the N of the next `adjective-noun-N` name
//!   run-YYYYMMDD_HHMMSS-<id>/     one directory per run (UTC start time)
//!     run.rlog                    the log (below)
//!     meta.json                   who and where: id, name, project, group, host, pid, git, command
//!     diff.patch                  `git diff HEAD` when the working tree was dirty
//!     summary.json                written at finish: state, exit code, steps, summary values
//! ```
//!
//! # Format of `run.rlog`
//!
//! ## Header
//!
//! 12 bytes: the magic `RANKLOG\0`, then the format version as a `u32`
//! little-endian ([`FORMAT_VERSION`]).
//!
//! ## Frames
//!
//! The rest of the file is a sequence of frames:
//!
//! ```text
//! [len: u32 LE][crc: u32 LE][payload: len bytes]
//! ```
//!
//! `crc` is CRC-32C (Castagnoli) over the four length bytes followed by the
//! payload. A payload is at most [`MAX_FRAME_LEN`] bytes and holds one or more
//! whole [`Record`](crate::Record)s, each encoded with postcard, back to back.
//! The writer fills one frame per flush (closing it early at 256 KiB).
//!
//! ## Records
//!
//! [`Record`](crate::Record) lists the kinds; postcard writes an enum as the
//! varint index of its variant followed by its fields. The first record is
//! `Start`. Metric keys are interned: a `Key { id, name }` record names a key
//! once, and `History` rows carry `(id, value)` pairs. Row times are
//! microseconds since the run's start (zigzag varints), so a row of ten
//! metrics takes about ten bytes per value.
//!
//! ## Torn tails and corruption
//!
//! A frame is used only when it is complete and its checksum matches. Reading
//! stops at the first frame that is not: a file that ends inside a frame (a
//! crash during a write, or a run still being written) has a *torn tail*; a
//! complete frame with a wrong checksum is *corrupt*. Either way the reader
//! returns every record before that frame and reports the frame's offset
//! ([`Reader::damage`]); it never returns a record from a damaged frame and
//! never panics.
//!
//! # Durability
//!
//! The writer hands data to the operating system at least every flush interval
//! (100 ms by default, `RANKLOG_FLUSH_INTERVAL_MS`) and calls `fsync` at
//! finish. A process killed with SIGKILL therefore loses at most the rows of
//! its last flush interval; a machine that loses power may lose what the OS had
//! not yet written back since the last `fsync`. `Run::flush` forces a flush and
//! returns once the data is in the file.
//!
//! # State
//!
//! A run with an `Exit` record is finished or failed. One without is running
//! while its writer lives (same host: the recorded pid with the same start
//! time; another host: the log changed within [`STALE_AFTER`], the writer
//! writing a heartbeat every [`HEARTBEAT_INTERVAL`]) and crashed otherwise.

mod format;
mod layout;
mod meta;
mod reader;
mod scan;
mod state;
mod writer;

pub use format::{FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, MAGIC, MAX_FRAME_LEN};
pub use layout::{id_from_dir_name, resolve_run, run_dir_name, run_dirs, LATEST_LINK};
pub use meta::{FinalSummary, Meta, DIFF_FILE, LOG_FILE, META_FILE, SUMMARY_FILE};
pub use reader::{Damage, DamageKind, HeaderError, Reader};
pub use scan::{info, list, scan, MetricStats, RunInfo, RunScan, SPARK_BUCKETS};
pub use state::{detect as detect_state, RunState, HEARTBEAT_INTERVAL, STALE_AFTER};
pub use writer::Writer;

pub(crate) use layout::{create_run_dir, next_name_number, update_latest};
pub(crate) use meta::{read_json, read_meta, write_json};
