"""Captures real MLflow answers as seeds of the `mlflow_response` fuzz target.

Usage: python fuzz-seeds-mlflow.py <mlflow executable> <out dir>

Starts `mlflow server` (SQLite in a temp dir, 127.0.0.1, a free port) and,
for the auth answers, `mlflow server --app-name basic-auth`; sends the
requests ranklog's uploader sends plus wrong ones, and writes each answer as
`[status u16 BE][endpoint index u8][body]` (the endpoint order is
`ranklog::fuzzing::mlflow::PATHS`). The content type of each answer is put in
the file name (the parser reads the body, whatever the header says).
"""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PATHS = [
    "experiments/get-by-name",
    "experiments/create",
    "runs/search",
    "runs/create",
    "runs/log-batch",
    "runs/update",
    "experiments/search",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(mlflow, tmp, extra, env=None):
    port = free_port()
    db = os.path.join(tmp, f"mlflow-{port}.db")
    args = [mlflow, "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{db}",
            "--default-artifact-root", os.path.join(tmp, "artifacts"), "--workers", "1"] + extra
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/health", timeout=1):
                return proc, base
        except Exception:
            if proc.poll() is not None:
                raise SystemExit(f"mlflow server exited with {proc.returncode}")
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("mlflow server did not become ready")


def call(base, method, path, body=None, query="", auth=None, raw_path=None):
    url = base + (raw_path or f"/api/2.0/mlflow/{path}") + query
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def save(out, name, path, answer):
    status, ctype, body = answer
    kind = (ctype.split(";")[0].strip() or "none").replace("/", "-")
    with open(os.path.join(out, f"{name}-{status}-{kind}"), "wb") as f:
        f.write(status.to_bytes(2, "big") + bytes([PATHS.index(path)]) + body)
    return body


def main():
    mlflow, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ranklog-fuzz-seeds-")
    procs = []
    try:
        proc, base = start(mlflow, tmp, [])
        procs.append(proc)
        save(out, "get-by-name-missing", "experiments/get-by-name",
             call(base, "GET", "experiments/get-by-name", query="?experiment_name=fuzz"))
        body = save(out, "create-experiment", "experiments/create",
                    call(base, "POST", "experiments/create", {"name": "fuzz"}))
        exp = json.loads(body)["experiment_id"]
        save(out, "create-experiment-exists", "experiments/create",
             call(base, "POST", "experiments/create", {"name": "fuzz"}))
        save(out, "get-by-name", "experiments/get-by-name",
             call(base, "GET", "experiments/get-by-name", query="?experiment_name=fuzz"))
        flt = {"experiment_ids": [exp], "filter": "tags.`ranklog.run_id` = 'abcd1234'", "max_results": 10}
        save(out, "search-empty", "runs/search", call(base, "POST", "runs/search", flt))
        body = save(out, "create-run", "runs/create", call(base, "POST", "runs/create", {
            "experiment_id": exp, "run_name": "brave-otter-1", "start_time": 1764000000000,
            "tags": [{"key": "ranklog.run_id", "value": "abcd1234"}, {"key": "ranklog.rank", "value": "0"}]}))
        run_id = json.loads(body)["run"]["info"]["run_id"]
        save(out, "search-found", "runs/search", call(base, "POST", "runs/search", flt))
        save(out, "log-batch", "runs/log-batch", call(base, "POST", "runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": "loss", "value": 0.5, "timestamp": 1764000000001, "step": 1}],
            "params": [{"key": "lr", "value": "0.001"}],
            "tags": [{"key": "ranklog.note", "value": "x"}]}))
        save(out, "log-batch-bad-value", "runs/log-batch", call(base, "POST", "runs/log-batch", {
            "run_id": run_id, "metrics": [{"key": "loss", "value": "not a number", "timestamp": 1, "step": 1}]}))
        save(out, "log-batch-param-changed", "runs/log-batch", call(base, "POST", "runs/log-batch", {
            "run_id": run_id, "params": [{"key": "lr", "value": "0.1"}]}))
        save(out, "log-batch-unknown-run", "runs/log-batch", call(base, "POST", "runs/log-batch", {
            "run_id": "0" * 32, "metrics": []}))
        save(out, "update", "runs/update", call(base, "POST", "runs/update", {
            "run_id": run_id, "status": "FINISHED", "end_time": 1764000001000}))
        save(out, "create-run-bad-experiment", "runs/create", call(base, "POST", "runs/create", {
            "experiment_id": "99999", "start_time": 1}))
        save(out, "create-experiment-bad-json", "experiments/create",
             call(base, "POST", "experiments/create", b"{not json"))
        save(out, "experiments-search", "experiments/search",
             call(base, "GET", "experiments/search", query="?max_results=1"))
        save(out, "unknown-endpoint", "experiments/search",
             call(base, "GET", "", raw_path="/api/2.0/mlflow/no/such/endpoint"))
        save(out, "wrong-method", "runs/create", call(base, "GET", "runs/create"))

        env = dict(os.environ)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "fuzz-seeds"
        env["MLFLOW_AUTH_CONFIG_PATH"] = os.path.join(tmp, "auth.ini")
        with open(env["MLFLOW_AUTH_CONFIG_PATH"], "w") as f:
            f.write("[mlflow]\ndefault_permission = READ\n"
                    f"database_uri = sqlite:///{os.path.join(tmp, 'auth.db')}\n"
                    "admin_username = admin\nadmin_password = fuzz-seeds-Pw-9271\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        proc, base = start(mlflow, tmp, ["--app-name", "basic-auth"], env)
        procs.append(proc)
        save(out, "auth-missing", "experiments/create",
             call(base, "POST", "experiments/create", {"name": "fuzz"}))
        save(out, "auth-wrong-password", "experiments/get-by-name",
             call(base, "GET", "experiments/get-by-name", query="?experiment_name=fuzz", auth="admin:nope"))
        admin = "admin:fuzz-seeds-Pw-9271"
        body = save(out, "auth-ok", "experiments/create",
                    call(base, "POST", "experiments/create", {"name": "fuzz"}, auth=admin))
        exp = json.loads(body)["experiment_id"]
        call(base, "POST", "", {"username": "reader", "password": "reader-Pw-5521"}, auth=admin,
             raw_path="/api/2.0/mlflow/users/create")
        save(out, "auth-no-permission", "runs/create", call(base, "POST", "runs/create", {
            "experiment_id": exp, "start_time": 1}, auth="reader:reader-Pw-5521"))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
