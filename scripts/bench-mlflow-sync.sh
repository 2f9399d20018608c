#!/usr/bin/env bash
# Benchmark (not a test): ranklog's upload against MLflow's own Python client.
#
#   scripts/bench-mlflow-sync.sh [POINTS]     # default 1000000
#
# Starts one local `mlflow server` (SQLite backend in a temp dir, 127.0.0.1, a
# free port), then uploads the same POINTS metric values (10 keys × POINTS/10
# steps) twice to it: with ranklog (`examples/bench_sync.rs`, sync of an
# offline run) and with `MlflowClient.log_batch` in batches of 1000 (MLflow's
# per-request limit). Prints points/s of both and the ratio. Uses the venv of
# scripts/interop-mlflow.sh (created if missing).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
venv=$root/target/venv-mlflow
points=${1:-1000000}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

if ! "$venv/bin/python" -c 'import mlflow' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "mlflow[auth]"
fi
cargo build -q --release --example bench_sync

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill -KILL -- "-$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
uri=http://127.0.0.1:$port
(cd "$work" && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec setsid "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$work/mlflow.db" \
    --default-artifact-root "$work/artifacts" --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1) &
server_pid=$!
deadline=$(( $(date +%s) + 180 ))
until "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$uri/health', timeout=2)" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
        cat "$work/server.log" >&2
        echo "bench: mlflow server did not start" >&2
        exit 1
    fi
    sleep 0.2
done

# Warm every worker up (first requests import and compile a lot), so that
# neither side pays for a cold server.
"$venv/bin/python" - "$uri" <<'PY' >/dev/null
import sys, time
from concurrent.futures import ThreadPoolExecutor
from mlflow import MlflowClient
from mlflow.entities import Metric
client = MlflowClient(tracking_uri=sys.argv[1])
run = client.create_run(client.create_experiment("bench-warmup")).info.run_id
now = int(time.time() * 1000)
def batch(i):
    client.log_batch(run, metrics=[Metric("w", float(j), now, i * 1000 + j) for j in range(1000)])
    client.get_run(run)
with ThreadPoolExecutor(4) as pool:
    list(pool.map(batch, range(16)))
PY

ranklog_pps=$(target/release/examples/bench_sync "$uri" "$points" | sed -n 's/^ranklog_points_per_s=//p')

python_pps=$("$venv/bin/python" - "$uri" "$points" <<'PY' | sed -n 's/^python_points_per_s=//p'
import sys, time
from mlflow import MlflowClient
from mlflow.entities import Metric

uri, points = sys.argv[1], int(sys.argv[2])
client = MlflowClient(tracking_uri=uri)
exp = client.create_experiment(f"bench-python-{int(time.time())}")
run = client.create_run(exp)
now = int(time.time() * 1000)
metrics = [
    Metric(f"m{k}", step * 0.001 + k, now + step // 100, step)
    for step in range(points // 10)
    for k in range(10)
]
started = time.perf_counter()
for i in range(0, len(metrics), 1000):
    client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
secs = time.perf_counter() - started
client.set_terminated(run.info.run_id)
print(f"mlflow python client: uploaded {len(metrics)} points in {secs:.2f} s: {len(metrics) / secs:.0f} points/s", file=sys.stderr)
print(f"python_points_per_s={len(metrics) / secs:.0f}")
PY
)

if [ -z "$ranklog_pps" ] || [ -z "$python_pps" ]; then
    echo "bench: a measurement failed (ranklog: '$ranklog_pps', python: '$python_pps')" >&2
    exit 1
fi
echo "points:                  $points"
echo "ranklog sync:            $ranklog_pps points/s"
echo "mlflow python log_batch: $python_pps points/s"
echo "ratio ranklog/python:    $("$venv/bin/python" -c "print(f'{$ranklog_pps / $python_pps:.2f}')")"
