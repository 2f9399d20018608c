"""Runs W1, W2 and W3 for ranklog and the Python trackers and prints one table.

Started by bench/compare/run.sh (which builds ranklog and the venv); see BENCHMARKS.md.
Uses only the standard library.

Every repetition is a fresh process (or process tree), run one at a time. Repetitions
go in rounds (every configuration once, then again), so a change in the machine's
load hits all trackers alike, and each number in the table is the median over rounds.

For each process tree the driver measures:
- wall time from spawn to exit (`wall s`);
- peak RSS of the whole tree: a thread sums the RSS of the root process and all its
  descendants (found through /proc/PID/task/TID/children) every 10 ms; for runs too
  short to sample well, the sum of each process's own peak (VmHWM, reported by the
  workloads; for `ranklog launch` plus the launcher's, sampled) is an upper bound, and
  the larger of the two is used. (Not ru_maxrss: Linux carries it over exec, so every
  child would report at least the driver's own size.);
- bytes on disk: the sum of the sizes of all regular files the run left in its output
  directory (logs and metadata included).
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PY_TRACKERS = ["wandb", "mlflow-file", "mlflow-sqlite", "tensorboardx"]

# Targets from issue 8: (workload, ranklog row, tracker row, metric, at least).
TARGETS = [
    ("w1", "ranklog", "wandb", "speed", 100.0),
    ("w1", "ranklog", "wandb", "bytes", 5.0),
    ("w2", "ranklog grouped", "wandb", "speed", 20.0),
    ("w2", "ranklog grouped", "wandb", "rss", 10.0),
    ("w2", "ranklog single-writer", "wandb", "speed", 20.0),
    ("w2", "ranklog single-writer", "wandb", "rss", 10.0),
]
W3_TARGET_S = 0.005


# ---------------------------------------------------------------- measuring


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


MY_CMDLINE = _cmdline("self")


def tree_rss_kib(root):
    """Summed RSS of `root` and its descendants (KiB); 0 once it is gone.

    A child between fork and exec (its cmdline still its parent's) is skipped:
    it shares its parent's pages but shows them all as its own RSS. That is the
    driver's child before it runs the workload, and MLflow's forks of `uname`.
    """
    total, stack, seen = 0, [(root, MY_CMDLINE)], set()
    while stack:
        pid, parent_cmdline = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            cmdline = _cmdline(pid)
            if cmdline != parent_cmdline:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * PAGE_KIB
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    stack.extend((int(c), cmdline) for c in f.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def hwm_kib(pid):
    """Peak RSS so far of one process image (VmHWM, KiB), or 0."""
    try:
        if _cmdline(pid) == MY_CMDLINE:
            return 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak of the tree's summed RSS, and the root's own peak (VmHWM)."""

    def __init__(self, pid, interval):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.done = threading.Event()
        self.peak_kib = 0
        self.root_hwm_kib = 0
        self.samples = 0

    def run(self):
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, tree_rss_kib(self.pid))
            self.root_hwm_kib = max(self.root_hwm_kib, hwm_kib(self.pid))
            self.samples += 1
            self.done.wait(self.interval)


def dir_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            try:
                if not os.path.islink(p):
                    total += os.lstat(p).st_size
            except FileNotFoundError:
                pass
    return total


def results_in(text):
    """The JSON of every `RESULT {...}` line (a launcher may prefix lines)."""
    out = []
    for line in text.splitlines():
        i = line.find("RESULT {")
        if i >= 0:
            out.append(json.loads(line[i + len("RESULT ") :]))
    return out


def run_tree(cmd, env, out, scratch, launcher):
    """Runs one process tree to its end; returns its RESULTs and what the driver saw."""
    os.makedirs(out, exist_ok=True)
    so_path, se_path = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
    load = os.getloadavg()[0]
    with open(so_path, "w") as so, open(se_path, "w") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL, cwd=out, env=env)
    sampler = TreeSampler(p.pid, 0.01)
    sampler.start()
    _pid, status, _rusage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    sampler.done.set()
    sampler.join()
    with open(so_path) as f:
        stdout = f.read()
    with open(se_path) as f:
        stderr = f.read()
    res = results_in(stdout)
    if any(r.get("dropped") for r in res):
        raise RuntimeError(f"{' '.join(cmd)} dropped rows: the lossless policy should drop none")
    if p.returncode != 0 or not res:
        raise RuntimeError(
            f"{' '.join(cmd)} failed (exit {p.returncode})\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
        )
    reported = sum_self_rss(res)
    if launcher:  # the launcher reports nothing itself
        reported += sampler.root_hwm_kib
    return dict(
        results=res,
        wall_s=wall,
        rss_sampled_kib=sampler.peak_kib,
        rss_reported_kib=reported,
        rss_kib=max(sampler.peak_kib, reported),
        rss_samples=sampler.samples,
        disk_bytes=dir_bytes(out),
        load1=load,
    )


def sum_self_rss(results):
    total = 0
    for r in results:
        total += r.get("peak_rss_kib") or 0
        total += sum(x.get("peak_rss_kib") or 0 for x in r.get("ranks", []))
    return total


# ---------------------------------------------------------------- configurations


class Config:
    def __init__(self, workload, label, cmd, env, steps=0, keys=0, ranks=1, launcher=False, reps=1):
        self.workload, self.label, self.cmd, self.env = workload, label, cmd, env
        self.steps, self.keys, self.ranks, self.launcher, self.reps = steps, keys, ranks, launcher, reps


def clean_env():
    drop = ("RANKLOG_", "WANDB_", "MLFLOW_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def configs(a, scratch):
    base = clean_env()
    rk_env = dict(base, RANKLOG_MODE="offline", RANKLOG_SILENT="1", RANKLOG_DISABLE_GIT="1")
    py_env = dict(
        base,
        PYTHONDONTWRITEBYTECODE="1",
        # wandb keeps settings and caches in the home folder; keep them out of it.
        WANDB_CONFIG_DIR=os.path.join(scratch, "wandb-config"),
        WANDB_CACHE_DIR=os.path.join(scratch, "wandb-cache"),
        WANDB_DATA_DIR=os.path.join(scratch, "wandb-data"),
    )
    # Run the Python side from a copy outside any git repository (no git capture).
    script = os.path.join(scratch, "py_workload.py")
    shutil.copy(os.path.join(HERE, "py_workload.py"), script)
    py = [sys.executable, script]
    s, k, n = str(a.steps), str(a.keys), str(a.ranks)
    want = lambda t: t in a.trackers  # noqa: E731
    out = []
    # W1
    w1 = [Config("w1", "ranklog", [a.workload_bin, "log", s, k], rk_env, a.steps, a.keys)]
    for t in PY_TRACKERS:
        steps = a.mlflow_sqlite_steps if t == "mlflow-sqlite" else a.steps
        if want(t) and steps > 0:
            w1.append(Config("w1", t, py + [t, "w1", "--steps", str(steps), "--keys", k], py_env, steps, a.keys))
    if want("python"):
        w1.append(Config("w1", "python (no tracker)", py + ["none", "w1", "--steps", s, "--keys", k], py_env, a.steps, a.keys))
    # W2
    w2 = []
    for strategy in ("grouped", "single-writer"):
        cmd = [a.ranklog_bin, "launch", "--nproc-per-node", n, "--strategy", strategy, "--no-view", "--"]
        w2.append(Config("w2", f"ranklog {strategy}", cmd + [a.workload_bin, "log", s, k], rk_env, a.steps, a.keys, a.ranks, launcher=True))
    if want("wandb"):
        w2.append(Config("w2", "wandb", py + ["wandb", "w2", "--steps", s, "--keys", k, "--ranks", n], py_env, a.steps, a.keys, a.ranks))
    # W3
    w3 = [Config("w3", "ranklog", [a.workload_bin, "init"], rk_env)]
    for t in PY_TRACKERS:
        if want(t):
            w3.append(Config("w3", t, py + [t, "w3"], py_env))
    for c in w1 + w2:
        c.reps = a.reps
    for c in w3:
        c.reps = a.w3_reps
    for c in w1 + w2 + w3:
        if a.workloads and c.workload not in a.workloads:
            continue
        out.append(c)
    return out


def run_config(c, scratch, rep, keep):
    out = os.path.join(scratch, f"{c.workload}-{c.label.replace(' ', '-')}-{rep}")
    env = dict(c.env)
    if c.label.startswith("ranklog"):
        env["RANKLOG_DIR"] = out
    cmd = c.cmd if c.label.startswith("ranklog") else c.cmd + ["--out", out]
    t = run_tree(cmd, env, out, scratch, c.launcher)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return normalize(c, t)


def normalize(c, t):
    """One repetition as a flat row of the table's quantities."""
    res = t["results"]
    row = dict(wall_s=t["wall_s"], rss_mib=t["rss_kib"] / 1024, load1=t["load1"], disk_bytes=t["disk_bytes"])
    if c.workload == "w1":
        r = res[0]
        row.update({k: r.get(k) for k in ("loop_s", "mean_us", "p50_us", "p99_us", "init_s", "finish_s", "total_s", "import_s")})
        row["steps_per_s"] = c.steps / r["loop_s"]
        row["bytes_per_point"] = t["disk_bytes"] / (c.steps * c.keys)
    elif c.workload == "w2":
        ranks = res[0]["ranks"] if "ranks" in res[0] else res
        if len(ranks) != c.ranks:
            raise RuntimeError(f"{c.label}: {len(ranks)} of {c.ranks} ranks reported")
        row.update(
            loop_s=max(r["loop_s"] for r in ranks),
            mean_us=statistics.median(r["mean_us"] for r in ranks),
            p50_us=statistics.median(r["p50_us"] for r in ranks),
            p99_us=max(r["p99_us"] for r in ranks),
            init_s=max(r["init_s"] for r in ranks),
            finish_s=max(r["finish_s"] for r in ranks),
            total_s=t["wall_s"],
            steps_per_s=c.ranks * c.steps / t["wall_s"],
            bytes_per_point=t["disk_bytes"] / (c.ranks * c.steps * c.keys),
        )
    else:
        r = res[0]
        row.update(total_s=r["init_finish_s"], init_s=r["init_s"], finish_s=r["finish_s"], import_s=r.get("import_s"))
    return row


def medians(rows):
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            out[k] = statistics.median(vals)
    return out


# ---------------------------------------------------------------- ratios and table


def ratio(workload, rk, other, metric):
    """How many times better ranklog is on `metric` (speed, rss, bytes); None if unknown.

    speed: W1 µs per log call, W2 aggregate steps/s of the job, W3 init + finish time.
    """
    try:
        if metric == "speed":
            if workload == "w1":
                return other["mean_us"] / rk["mean_us"]
            if workload == "w2":
                return rk["steps_per_s"] / other["steps_per_s"]
            return other["total_s"] / rk["total_s"]
        if metric == "rss":
            return other["rss_mib"] / rk["rss_mib"]
        if metric == "bytes":
            return other["bytes_per_point"] / rk["bytes_per_point"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return None


def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "s":
        return f"{v:.4f}" if v < 0.1 else f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if kind == "us":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "mib":
        return f"{v:.1f}"
    if kind == "bp":
        return f"{v:.1f}"
    if kind == "x":
        return f"{v:.1f}x" if v < 100 else f"{v:.0f}x"
    return str(v)


COLUMNS = [
    ("workload", "workload", None),
    ("tracker", "tracker", None),
    ("steps", "steps x keys", None),
    ("loop_s", "loop s", "s"),
    ("mean_us", "us/call mean", "us"),
    ("p50_us", "p50 us", "us"),
    ("p99_us", "p99 us", "us"),
    ("total_s", "total s", "s"),
    ("import_s", "import s", "s"),
    ("wall_s", "wall s", "s"),
    ("steps_per_s", "steps/s", "int"),
    ("rss_mib", "peak RSS MiB", "mib"),
    ("bytes_per_point", "B/point", "bp"),
    ("x_speed", "ranklog x faster", None),
    ("x_rss", "x less RSS", None),
    ("x_bytes", "x fewer B/pt", None),
    ("load1", "load", "mib"),
]
RIGHT = {"loop_s", "mean_us", "p50_us", "p99_us", "total_s", "import_s", "wall_s", "steps_per_s", "rss_mib", "bytes_per_point", "x_speed", "x_rss", "x_bytes", "load1"}


def table_rows(cfgs, med):
    rows = []
    for c in cfgs:
        m = med.get((c.workload, c.label))
        if m is None:
            continue
        cells = {"workload": c.workload.upper(), "tracker": c.label}
        if c.workload == "w1":
            cells["steps"] = f"{c.steps}x{c.keys}"
        elif c.workload == "w2":
            cells["steps"] = f"{c.ranks}x{c.steps}x{c.keys}"
        else:
            cells["steps"] = "init+finish"
        for key, _h, kind in COLUMNS:
            if kind and key in m:
                cells[key] = fmt(m[key], kind)
        if not c.label.startswith(("ranklog", "python")):
            rks = [k for k in med if k[0] == c.workload and k[1].startswith("ranklog")]
            for metric in ("speed", "rss", "bytes"):
                vals = [ratio(c.workload, med[rk], m, metric) for rk in rks]
                if all(v is not None for v in vals) and vals:
                    cells["x_" + metric] = " / ".join(fmt(v, "x") for v in vals)
        rows.append(cells)
    return rows


def render(rows, markdown):
    cols = [(k, h) for k, h, _ in COLUMNS if any(k in r for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(h for _k, h in cols) + " |"]
        lines.append("|" + "|".join("---:" if k in RIGHT else "---" for k, _h in cols) + "|")
        for r in rows:
            lines.append("| " + " | ".join(r.get(k, "-") for k, _h in cols) + " |")
        return "\n".join(lines)
    widths = {k: max(len(h), *(len(r.get(k, "-")) for r in rows)) for k, h in cols}
    cell = lambda k, v: v.rjust(widths[k]) if k in RIGHT else v.ljust(widths[k])  # noqa: E731
    lines = ["  ".join(cell(k, h) for k, h in cols)]
    for r in rows:
        lines.append("  ".join(cell(k, r.get(k, "-")) for k, _h in cols))
    return "\n".join(lines)


def target_lines(med):
    lines = []
    for wl, rk, other, metric, goal in TARGETS:
        a, b = med.get((wl, rk)), med.get((wl, other))
        if a is None or b is None:
            continue
        v = ratio(wl, a, b, metric)
        what = {"speed": "faster" if wl == "w1" else "aggregate steps/s", "rss": "less peak RSS", "bytes": "fewer bytes/point"}[metric]
        verdict = "met" if v is not None and v >= goal else "NOT met"
        lines.append(f"{wl.upper()} {rk} vs {other}: {fmt(v, 'x')} {what} (target >= {goal:g}x): {verdict}")
    w3 = med.get(("w3", "ranklog"))
    if w3:
        ms = w3["total_s"] * 1e3
        verdict = "met" if w3["total_s"] <= W3_TARGET_S else "NOT met"
        lines.append(f"W3 ranklog init+finish: {ms:.2f} ms (target <= {W3_TARGET_S * 1e3:g} ms): {verdict}")
    return lines


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranklog-bin", required=True)
    ap.add_argument("--workload-bin", required=True)
    ap.add_argument("--quick", action="store_true", help="1 round (W3: 3), MLflow SQLite 500 steps")
    ap.add_argument("--smoke", action="store_true", help="1 round, 200 steps: checks that everything runs")
    ap.add_argument("--ranklog-only", action="store_true", help="no Python trackers (no venv needed)")
    ap.add_argument("--trackers", default=",".join(PY_TRACKERS + ["python"]), help="Python trackers to run (comma list; 'python' = the loop with no tracker)")
    ap.add_argument("--workloads", default="", help="comma list of w1,w2,w3 (default: all)")
    ap.add_argument("--reps", type=int, default=None, help="rounds for W1 and W2 (default 3)")
    ap.add_argument("--w3-reps", type=int, default=None, help="rounds for W3 (default 5)")
    ap.add_argument("--steps", type=int, default=None, help="steps per process (default 20000)")
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--mlflow-sqlite-steps", type=int, default=None, help="W1 steps for MLflow SQLite, 0 to skip (default 2000; it takes ~5 ms a call)")
    ap.add_argument("--results", default=None, help="folder for results.json and table.md (default target/bench-compare/<time>)")
    ap.add_argument("--keep", action="store_true", help="keep the runs' output folders")
    a = ap.parse_args()
    quick, smoke = a.quick, a.smoke
    a.ranklog_bin, a.workload_bin = os.path.abspath(a.ranklog_bin), os.path.abspath(a.workload_bin)
    a.reps = a.reps or (1 if quick or smoke else 3)
    a.w3_reps = a.w3_reps or (1 if smoke else 3 if quick else 5)
    a.steps = a.steps or (200 if smoke else 20000)
    if a.mlflow_sqlite_steps is None:
        a.mlflow_sqlite_steps = 200 if smoke else 500 if quick else 2000
    a.trackers = [] if a.ranklog_only else [t for t in a.trackers.split(",") if t]
    a.workloads = [w for w in a.workloads.split(",") if w]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    a.results = a.results or os.path.join("target", "bench-compare", stamp)
    os.makedirs(a.results, exist_ok=True)

    scratch = tempfile.mkdtemp(prefix="ranklog-compare-")
    try:
        cfgs = configs(a, scratch)
        rounds = max(c.reps for c in cfgs)
        raw = {(c.workload, c.label): [] for c in cfgs}
        started = time.time()
        loads = [os.getloadavg()]
        for rnd in range(rounds):
            for c in cfgs:
                if rnd >= c.reps:
                    continue
                try:
                    row = run_config(c, scratch, rnd, a.keep)
                except (RuntimeError, OSError) as e:
                    print(f"ranklog-compare: {c.workload} {c.label}: {e}", file=sys.stderr)
                    sys.exit(2)
                raw[(c.workload, c.label)].append(row)
                loads.append(os.getloadavg())
                print(
                    f"ranklog-compare: round {rnd + 1}/{rounds} {c.workload} {c.label}: "
                    f"total {row['total_s']:.4f}s wall {row['wall_s']:.3f}s rss {row['rss_mib']:.1f}MiB load {row['load1']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
        elapsed = time.time() - started
    finally:
        if not a.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    med = {k: medians(v) for k, v in raw.items() if v}
    rows = table_rows(cfgs, med)
    load1 = [l[0] for l in loads]
    header = (
        f"ranklog tracker comparison, {stamp}, {os.cpu_count()} cpus, "
        f"median of {a.reps} rounds (W3: {a.w3_reps}); {elapsed:.0f} s; "
        f"1-min load {min(load1):.2f}..{max(load1):.2f}"
    )
    targets = target_lines(med)
    print(header)
    print(render(rows, markdown=False))
    print()
    print("\n".join(targets))
    md = header + "\n\n" + render(rows, markdown=True) + "\n\n" + "\n".join(f"- {t}" for t in targets) + "\n"
    with open(os.path.join(a.results, "table.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.results, "results.json"), "w") as f:
        json.dump(
            dict(
                stamp=stamp,
                args={k: v for k, v in vars(a).items()},
                loadavg=loads,
                elapsed_s=elapsed,
                versions=versions(a),
                median={f"{w}/{label}": m for (w, label), m in med.items()},
                raw={f"{w}/{label}": v for (w, label), v in raw.items()},
            ),
            f,
            indent=1,
        )
    print(f"\nranklog-compare: wrote {a.results}/table.md and results.json", file=sys.stderr)


def versions(a):
    v = {"python": sys.version.split()[0]}
    if a.trackers:
        try:
            from importlib.metadata import version

            for p in ("wandb", "mlflow", "tensorboardX", "protobuf", "crc32c"):
                try:
                    v[p] = version(p)
                except Exception:  # noqa: BLE001 - not installed in this interpreter
                    v[p] = None
        except ImportError:
            pass
    try:
        v["ranklog"] = subprocess.run([a.ranklog_bin, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        v["ranklog"] = None
    return v


if __name__ == "__main__":
    main()
