#!/usr/bin/env bash
# The README's first command: a simulated 4-rank training job under
# `ranklog launch`, ending with the group view. Needs only the Rust toolchain.
#
#   scripts/demo.sh                # 4 ranks; NPROC=8 scripts/demo.sh for 8
#
# Runs land in $RANKLOG_DIR (default ./ranklog). Afterwards try
#   target/release/ranklog group <group> --plot group.svg
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin ranklog --example ddp_grouped
group="demo-$(date +%Y%m%d-%H%M%S)"
exec target/release/ranklog launch --nproc-per-node "${NPROC:-4}" --group "$group" \
    -- target/release/examples/ddp_grouped "$@"
