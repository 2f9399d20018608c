#!/usr/bin/env bash
# Interop tests of ranklog's upload against a real MLflow tracking server.
#
#   scripts/interop-mlflow.sh            # install MLflow if needed, run the suite
#
# Creates the venv target/venv-mlflow with `mlflow[auth]` from PyPI (kept
# between runs), then runs the opt-in tests in tests/interop_mlflow.rs. Each
# test starts its own `mlflow server` (SQLite backend in a temp dir,
# 127.0.0.1, a free port, readiness polled on /health) and checks what the
# server holds through its REST API: (a) an online run, (b) offline runs synced
# later, (c) a SIGKILLed run recovered as KILLED, (d) a 4-process grouped job,
# (e) the server killed and restarted mid-run, (f) a basic-auth server, and
# (g) tests/interop_mlflow_faults.rs: online runs and `ranklog sync` through a
# fault-injecting proxy (500, 429 with and without Retry-After, answers held
# past the client timeout, dropped answers, refused connections, a restart).
# Exits non-zero on any failure; every server it started is stopped on exit.
#
# Environment: RANKLOG_MLFLOW_SPEC overrides the pip requirement
# (default `mlflow[auth]`), CARGO_BUILD_JOBS the build parallelism (default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
venv=$root/target/venv-mlflow
spec=${RANKLOG_MLFLOW_SPEC:-mlflow[auth]}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

say() { echo "interop-mlflow: $*" >&2; }

# Process groups of the servers the tests start, one file each; killed on exit
# even if the test binary dies without running its destructors.
pids=$(mktemp -d)
export RANKLOG_INTEROP_PIDS=$pids
cleanup() {
    for f in "$pids"/*; do
        [ -e "$f" ] || continue
        kill -KILL -- "-$(basename "$f")" 2>/dev/null || true
    done
    rm -rf "$pids"
}
trap cleanup EXIT INT TERM

started=$(date +%s)

# shellcheck source=lib/mlflow-venv.sh
source "$root/scripts/lib/mlflow-venv.sh"
ensure_mlflow_venv "$venv" "$spec"

export RANKLOG_INTEROP_MLFLOW=$venv/bin/mlflow
cargo test --test tests interop_mlflow -- --ignored --test-threads=3

say "passed in $(( $(date +%s) - started )) s"
