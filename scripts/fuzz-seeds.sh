#!/usr/bin/env bash
# Regenerates the seed corpora of the fuzz targets in fuzz/seeds/ from real
# files (run by hand when a format changes; CI uses the committed seeds).
#
#   scripts/fuzz-seeds.sh
#
# rlog_reader, wandb_roundtrip, queue_frames: examples/fuzz_seeds.rs makes real
# runs with the Run API (several shapes), exports them with the W&B exporter
# and cuts their records into queue messages with the queue's own wire code.
# mlflow_response: scripts/fuzz-seeds-mlflow.py captures answers of a real
# MLflow server (SQLite, 127.0.0.1) and of its basic-auth app. MLflow comes
# from RANKLOG_MLFLOW (an `mlflow` executable) or the venv target/venv-mlflow,
# created with `mlflow[auth]` from PyPI if missing.
# Inputs kept because they once crashed a target (crash-*) are left alone.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
say() { echo "fuzz-seeds: $*" >&2; }

for t in rlog_reader wandb_roundtrip queue_frames mlflow_response; do
    mkdir -p "fuzz/seeds/$t"
    find "fuzz/seeds/$t" -type f ! -name 'crash-*' -delete
done

say "runs, exports and queue messages"
cargo run -q --features fuzzing --example fuzz_seeds -- fuzz/seeds

mlflow=${RANKLOG_MLFLOW:-}
if [ -z "$mlflow" ]; then
    venv=$root/target/venv-mlflow
    if ! "$venv/bin/python" -c 'import mlflow, mlflow.server.auth' 2>/dev/null; then
        if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
            say "installing python3-venv"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
        fi
        say "creating $venv with mlflow[auth]"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q 'mlflow[auth]'
    fi
    mlflow=$venv/bin/mlflow
fi
python=$(dirname "$mlflow")/python
[ -x "$python" ] || python=python3
say "MLflow answers from $mlflow"
"$python" scripts/fuzz-seeds-mlflow.py "$mlflow" fuzz/seeds/mlflow_response

du -sh fuzz/seeds/* >&2
