#!/usr/bin/env bash
# The README's first command: a simulated 4-rank training job under
# `ranklog launch`, once per strategy. Needs only the Rust toolchain.
#
#   scripts/demo.sh                # 4 ranks; NPROC=8 scripts/demo.sh for 8
#
# 1. Grouped: every rank writes its own run; ends with the group view.
# 2. Single-writer: every rank's rows go to rank 0, which writes one run
#    with per-rank keys and mean/min/max per step; ends with that run.
#
# Runs land in $RANKLOG_DIR (default ./ranklog). Afterwards try
#   target/release/ranklog group <group> --plot group.svg
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin ranklog --example ddp_grouped --example ddp_single_writer
group="demo-$(date +%Y%m%d-%H%M%S)"
n="${NPROC:-4}"

echo "== grouped: $n ranks, one run each =="
target/release/ranklog launch --nproc-per-node "$n" --group "$group" \
    -- target/release/examples/ddp_grouped "$@"

echo
echo "== single-writer: $n ranks, one run written by rank 0 =="
target/release/ranklog launch --nproc-per-node "$n" --group "$group-sw" \
    --strategy single-writer --no-view -- target/release/examples/ddp_single_writer
target/release/ranklog show latest-run
