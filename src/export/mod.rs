//! Writers for other trackers' offline formats, so a ranklog run can be shown
//! in a dashboard a team already uses.
//!
//! Every export reads the run's `run.rlog` (the source of truth) in one pass
//! and writes a new file; nothing in the run directory changes. Today there is
//! one target, [Weights & Biases](wandb): `ranklog export wandb RUN_DIR`, or
//! [`Settings::export_wandb`](crate::Settings::export_wandb) to export when a
//! run finishes. The result is a W&B offline run that `wandb sync` uploads.
//!
//! # W&B offline run format
//!
//! Facts from W&B's open-source client (`core/pkg/leveldb`,
//! `core/internal/transactionlog`, `wandb/proto/wandb_internal.proto`).
//!
//! ## Layout
//!
//! ```text
//! <out>/wandb/offline-run-YYYYMMDD_HHMMSS-<id>/run-<id>.wandb
//! ```
//!
//! The time is the run's start in UTC; `<id>` is the ranklog run id, which
//! becomes the W&B run id.
//!
//! ## Header
//!
//! 7 bytes: `:W&B`, the magic `0xBEE1` as a u16 little-endian, the version `0`.
//!
//! ## Blocks and chunks
//!
//! The file is LevelDB's log format: 32,768-byte blocks counted from offset 0
//! (so the first block holds the header and 32,761 bytes of chunks). A chunk
//! never crosses a block boundary:
//!
//! ```text
//! [checksum: u32 LE][length: u16 LE][type: u8][payload: length bytes]
//! ```
//!
//! A record that fits the rest of the block is one `FULL` (1) chunk; a longer
//! one is a `FIRST` (2) chunk filling the block, `MIDDLE` (3) chunks filling
//! whole blocks, and a `LAST` (4) chunk. When fewer than 7 bytes are left in a
//! block they are zeros and the next chunk starts the next block; when exactly
//! 7 are left, the next record starts there with a `FIRST` chunk of length 0.
//! Nothing follows the last chunk of the file.
//!
//! The checksum is plain CRC-32/IEEE (the zlib polynomial; not CRC-32C, not
//! masked) over the type byte followed by the payload: the chunk
//! `FULL "abc"` has checksum `crc32(01 61 62 63) = 0x539d20a9`.
//!
//! ## Records
//!
//! Each payload is one protobuf `wandb_internal.Record` (see
//! [`wandb::proto`]); `Record.num` counts 1, 2, 3… An export writes:
//!
//! | # | record | from ranklog |
//! |---|---|---|
//! | 1 | `header` (21): producer `ranklog <version>` | — |
//! | 2 | `run` (17): `run_id`, `project`, `run_group`, `job_type`, `display_name`, `host`, `start_time`, `git {remote_url, commit}`, `tags` (`rank-N` for a rank of a multi-rank job) | `Start`, latest name and git from `meta.json` |
//! | … | `config` (5): one `update` item per top-level key, `value_json` the JSON of its value | each `Config` record |
//! | … | `history` (2): items `_step` (integer), `_runtime` (seconds since start), `_timestamp` (Unix seconds), then every metric; `step.num` = the step | each row; consecutive rows at one step become one row, a later value of a key winning |
//! | n-1 | `summary` (3): the last value of every metric, `_step`, `_runtime`, `_timestamp` of the last row, then every explicit summary value (these win) | `History`, `Summary` |
//! | n | `exit` (18): `exit_code`, `runtime` (whole seconds) | `Exit`; a crashed run gets exit code 1 |
//!
//! Metric values are JSON numbers in shortest round-trip form; NaN and the
//! infinities are the bare words `NaN`, `Infinity`, `-Infinity`, which W&B's
//! JSON reader accepts and W&B's own client writes. Keys are UTF-8 and are
//! written as they are, Unicode included.
//!
//! W&B reads the run record first (it initialises the run), needs `_step` in
//! every row to place it, and marks a run without an exit record as failed,
//! so a finished run ends with exit code 0 and a crashed or failed one with a
//! non-zero code.
//!
//! # Limits
//!
//! - A run that is still being written is not exported
//!   ([`crate::Error::RunStillRunning`]): W&B would show it as ended.
//! - Heartbeats, lost ranks and drop counts have no W&B record and are left out.
//! - The entity is left empty: `wandb sync` uses the logged-in user's default.

pub mod wandb;
