#!/usr/bin/env bash
# Kill-9 torture of ranklog's writer and single-writer queue (issue #9).
#
#   scripts/torture-kill9.sh                       # default: 120 writer kills, 36 queue kills
#   scripts/torture-kill9.sh --seed 12345          # replay a run (the seed is printed)
#   scripts/torture-kill9.sh --kills 200 --queue-kills 60
#
# Real logging processes are SIGKILLed at random moments: a run's writer
# mid-batch, mid-flush, around finish() and during an online upload, and the
# owner or a worker of 4-rank single-writer jobs over ipc and tcp. After each
# kill the run log is read with the public reader and `ranklog show --json`,
# every acknowledged record is compared bit for bit, `ranklog sync` uploads
# the run to a real MLflow server (twice: the second changes nothing) and the
# server's metric histories are compared with the log; queue survivors must
# exit within their documented bounds. Prints a table, writes
# target/reliability/kill9.json and exits non-zero on any violation.
#
# Creates the venv target/venv-mlflow (scripts/lib/mlflow-venv.sh) and starts
# one `mlflow server` (SQLite in a temp dir, 127.0.0.1, a free port) for the
# whole run; its process group is killed on exit.
#
# Environment: RANKLOG_MLFLOW_SPEC overrides the pip requirement
# (default `mlflow[auth]`), CARGO_BUILD_JOBS the build parallelism (default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
venv=$root/target/venv-mlflow
spec=${RANKLOG_MLFLOW_SPEC:-mlflow[auth]}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

say() { echo "torture-kill9: $*" >&2; }

server_pgid=
tmp=$(mktemp -d)
cleanup() {
    if [ -n "$server_pgid" ]; then
        kill -KILL -- "-$server_pgid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

started=$(date +%s)

# shellcheck source=lib/mlflow-venv.sh
source "$root/scripts/lib/mlflow-venv.sh"
ensure_mlflow_venv "$venv" "$spec"

say "building ranklog and the torture driver (release)"
cargo build -q --release --bin ranklog --example torture

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
uri=http://127.0.0.1:$port
say "starting mlflow server on $uri"
# setsid: the server and its workers get their own process group, killed on exit.
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$venv/bin/mlflow" server \
    --backend-store-uri "sqlite:///$tmp/mlflow.db" \
    --default-artifact-root "$tmp/artifacts" \
    --host 127.0.0.1 --port "$port" --workers 2 \
    >"$tmp/server.log" 2>&1 </dev/null &
server_pgid=$!
deadline=$(( $(date +%s) + 300 ))
ready() {
    "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$uri/health" 2>/dev/null
}
until ready; do
    if ! kill -0 "$server_pgid" 2>/dev/null; then
        say "mlflow server exited:"; cat "$tmp/server.log" >&2; exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "mlflow server did not answer within 300 s:"; tail -50 "$tmp/server.log" >&2; exit 1
    fi
    sleep 0.5
done
say "mlflow server ready after $(( $(date +%s) - started )) s"

status=0
"$root/target/release/examples/torture" \
    --tracking-uri "$uri" \
    --ranklog "$root/target/release/ranklog" \
    --out "$root/target/reliability/kill9.json" \
    "$@" || status=$?

if [ "$status" -ne 0 ]; then
    say "FAILED (exit $status); server log tail:"
    tail -20 "$tmp/server.log" >&2 || true
    exit "$status"
fi
say "passed in $(( $(date +%s) - started )) s"
