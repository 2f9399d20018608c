#!/usr/bin/env bash
# Interop suite: runs exported by `ranklog export wandb` are read back with
# W&B's own reader (`wandb leet inspect`, W&B's Go core) and compared with the
# ranklog runs. Exits non-zero on any mismatch.
#
#   bash scripts/interop-wandb.sh
#
# Creates a venv with `wandb` ($WANDB_VERSION, default 0.31.0) from PyPI in
# target/venv-wandb (kept between runs), builds ranklog and examples/export_interop.rs in release mode, makes
# these runs under target/interop-wandb/ and exports them:
#   single01          one run: config, 201 rows, rows merged by step, a summary
#   job42-rank0..3    a grouped job: 4 real processes, one group, job type train
#   crashed1          a child killed with SIGKILL after a flush (no exit record)
#   failed01          a run marked failed
#   nonfinite1        NaN/Infinity/-Infinity values, Unicode keys and names
#   large0001         rows, config and summary larger than a 32 KiB block
# plus sevenleft: a file from ranklog's framing writer in which a record meets
# exactly 7 free bytes at a block's end (an empty FIRST chunk).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${RANKLOG_WANDB_VENV:-target/venv-wandb}
# The version this suite was written against; `wandb leet inspect` is new in 0.31.
WANDB_VERSION=${WANDB_VERSION:-0.31.0}
WORK=target/interop-wandb
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

say() { echo "interop-wandb: $*" >&2; }

have=$("$VENV/bin/python" -c 'import wandb; print(wandb.__version__)' 2>/dev/null || true)
if [ "$have" != "$WANDB_VERSION" ]; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        say "installing python3-venv"
        apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
    fi
    say "creating $VENV with wandb $WANDB_VERSION from PyPI"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "wandb==$WANDB_VERSION"
fi
WANDB="$VENV/bin/wandb"
say "using wandb $("$VENV/bin/python" -c 'import wandb; print(wandb.__version__)')"
if ! "$WANDB" leet inspect --help >/dev/null 2>&1; then
    say "this wandb has no 'wandb leet inspect'; install a wandb that has it (0.31 does)"
    exit 1
fi

say "building ranklog"
cargo build --release --quiet --bin ranklog --example export_interop
RANKLOG="$PWD/target/release/ranklog"
GEN="$PWD/target/release/examples/export_interop"

rm -rf "$WORK"
mkdir -p "$WORK/expected"
export RANKLOG_DIR="$PWD/$WORK/runs" RANKLOG_SILENT=1 RANKLOG_MODE=offline
unset RANKLOG_GROUP RANKLOG_JOB_TYPE RANKLOG_NAME RANKLOG_PROJECT RANKLOG_EXPORT_WANDB
EXP="$PWD/$WORK/expected"

RANKLOG_RUN_ID=single01 "$GEN" single "$EXP/single01.json"

pids=()
for r in 0 1 2 3; do
    RANKLOG_RUN_ID="job42-rank$r" RANKLOG_GROUP=job42 RANKLOG_JOB_TYPE=train INTEROP_RANK=$r \
        "$GEN" rank "$EXP/job42-rank$r.json" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

RANKLOG_RUN_ID=crashed1 "$GEN" crash "$EXP/crashed1.json" &
crash_pid=$!
for _ in $(seq 600); do
    [ -e "$EXP/crashed1.json.ready" ] && break
    kill -0 "$crash_pid" 2>/dev/null || { say "the crash child exited early"; exit 1; }
    sleep 0.1
done
[ -e "$EXP/crashed1.json.ready" ] || { say "the crash child never got ready"; exit 1; }
kill -KILL "$crash_pid"
wait "$crash_pid" 2>/dev/null || true
rm -f "$EXP/crashed1.json.ready"

RANKLOG_RUN_ID=failed01 "$GEN" fail "$EXP/failed01.json"
RANKLOG_RUN_ID=nonfinite1 "$GEN" nonfinite "$EXP/nonfinite1.json"
RANKLOG_RUN_ID=large0001 "$GEN" large "$EXP/large0001.json"

mkdir -p "$WORK/sevenleft"
pad=$("$GEN" sevenleft "$WORK/sevenleft/run-sevenleft.wandb")

say "exporting"
ids=(single01 job42-rank0 job42-rank1 job42-rank2 job42-rank3 crashed1 failed01 nonfinite1 large0001)
"$RANKLOG" export wandb "${ids[@]}" --out "$WORK/out" --json >"$WORK/export.json"

say "checking with $("$WANDB" --version 2>/dev/null | head -n1)"
"$VENV/bin/python" scripts/interop-wandb-check.py \
    --ranklog "$RANKLOG" --wandb "$WANDB" \
    --expected "$EXP" --export "$WORK/export.json" \
    --seven-left "$WORK/sevenleft/run-sevenleft.wandb" --seven-left-pad "$pad"
