"""The Python trackers' side of the comparison (ranklog's is examples/bench_compare.rs).

    python py_workload.py TRACKER WORKLOAD [--steps N] [--keys K] [--ranks R] --out DIR

TRACKER:  none | wandb | mlflow-file | mlflow-sqlite | tensorboardx
WORKLOAD: w1 (one process, N steps x K float metrics, one log call per step)
          w2 (R processes started with multiprocessing spawn, each its own run with
              group="g1" (wandb), each doing w1's loop)
          w3 (init + finish in this fresh process, no logging)

Prints one line `RESULT {json}` (seconds; latencies in µs; peak RSS (VmHWM) in KiB). Every
tracker writes only under --out, with the settings a fair comparison needs: offline,
no system metrics, no host metadata, no git or code capture, no console capture.
The driver (driver.py) runs this from a copy outside any git repository, so MLflow's
git context provider finds nothing to capture either.
"""
import argparse
import json
import os
import sys
import time

WANDB_SETTINGS = dict(
    mode="offline",
    silent=True,
    x_disable_stats=True,  # no system-metrics sampler
    x_disable_meta=True,  # no host metadata
    x_disable_machine_info=True,
    disable_git=True,
    disable_code=True,
    save_code=False,
    disable_job_creation=True,
    console="off",  # no stdout/stderr capture
)


def env_for(tracker, out):
    """Environment variables a user would set for this tracker (set before import)."""
    if tracker == "wandb":
        os.environ.update(
            WANDB_MODE="offline",
            WANDB_SILENT="true",
            WANDB_CONSOLE="off",
            WANDB_DIR=out,
        )
    elif tracker.startswith("mlflow"):
        os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        if tracker == "mlflow-file":
            # MLflow 3 refuses the (deprecated) file store unless allowed explicitly.
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"


class Tracker:
    """init / log(dict, step) / finish for one tracker, its import timed apart."""

    def __init__(self, tracker, out, rank=None):
        self.kind, self.out, self.rank = tracker, out, rank
        env_for(tracker, out)
        t0 = time.perf_counter()
        if tracker == "wandb":
            import wandb

            self.mod = wandb
        elif tracker.startswith("mlflow"):
            import mlflow

            self.mod = mlflow
        elif tracker == "tensorboardx":
            import tensorboardX

            self.mod = tensorboardX
        self.import_s = time.perf_counter() - t0

    def init(self):
        k = self.kind
        if k == "none":
            self.log = lambda d, step: None
        elif k == "wandb":
            kw = {}
            if self.rank is not None:
                kw = dict(group="g1", job_type="train", name=f"rank{self.rank}")
            self.run = self.mod.init(
                project="bench-compare", dir=self.out, settings=self.mod.Settings(**WANDB_SETTINGS), **kw
            )
            self.log = self.run.log
        elif k.startswith("mlflow"):
            if k == "mlflow-file":
                uri = "file:" + os.path.join(self.out, "mlruns")
            else:
                uri = "sqlite:///" + os.path.join(self.out, "mlflow.db")
            self.mod.set_tracking_uri(uri)
            self.mod.set_experiment("bench-compare")
            self.mod.start_run()
            self.log = self.mod.log_metrics
        elif k == "tensorboardx":
            # Defaults (max_queue=10, flush_secs=120); one add_scalar per metric, the
            # usual pattern, so one "log call" here is K add_scalar calls.
            self.writer = self.mod.SummaryWriter(logdir=os.path.join(self.out, "tb"))
            add = self.writer.add_scalar

            def log(d, step):
                for key, v in d.items():
                    add(key, v, step)

            self.log = log
        else:
            raise SystemExit(f"unknown tracker {k!r}")

    def finish(self):
        k = self.kind
        if k == "wandb":
            self.run.finish()
        elif k.startswith("mlflow"):
            self.mod.end_run()
        elif k == "tensorboardx":
            self.writer.close()

    def teardown(self):
        """Stops wandb's service process so the process exits at once (not timed as finish)."""
        if self.kind == "wandb":
            self.mod.teardown()


def peak_rss_kib():
    """Peak RSS of this process image (VmHWM). Not ru_maxrss: Linux carries that over
    exec, so a child of a big parent would report the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def percentiles(lat_ns):
    s = sorted(lat_ns)
    n = len(s)
    if n == 0:
        return {}
    return {
        "p50_us": s[min(n - 1, int(0.50 * n))] / 1e3,
        "p99_us": s[min(n - 1, int(0.99 * n))] / 1e3,
        "max_us": s[-1] / 1e3,
    }


def loop(tracker, steps, keys, out, rank=None):
    """W1's body: init, STEPS timed log calls of KEYS floats, finish."""
    t = Tracker(tracker, out, rank)
    names = ["m%d" % i for i in range(keys)]
    lat = [0] * steps
    pc = time.perf_counter_ns
    t0 = time.perf_counter()
    t.init()
    t1 = time.perf_counter()
    log = t.log
    for step in range(steps):
        d = {k: step * 0.001 + j for j, k in enumerate(names)}
        c0 = pc()
        log(d, step=step)
        lat[step] = pc() - c0
    t2 = time.perf_counter()
    t.finish()
    t3 = time.perf_counter()
    t.teardown()
    return dict(
        tracker=tracker,
        rank=rank,
        steps=steps,
        keys=keys,
        import_s=t.import_s,
        init_s=t1 - t0,
        loop_s=t2 - t1,
        finish_s=t3 - t2,
        total_s=t3 - t0,
        mean_us=(t2 - t1) / max(steps, 1) * 1e6,
        peak_rss_kib=peak_rss_kib(),
        **percentiles(lat),
    )


def _rank_main(tracker, rank, steps, keys, out, q):
    q.put(loop(tracker, steps, keys, out, rank))


def multi(tracker, ranks, steps, keys, out):
    """W2: RANKS spawned processes, each its own grouped run doing W1's loop."""
    import multiprocessing as mp

    env_for(tracker, out)  # inherited by the spawned ranks
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_rank_main, args=(tracker, r, steps, keys, out, q)) for r in range(ranks)]
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    t1 = time.perf_counter()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise SystemExit(f"ranks failed with exit codes {bad}")
    res.sort(key=lambda r: r["rank"])
    return dict(
        tracker=tracker,
        ranks=res,
        job_s=t1 - t0,
        peak_rss_kib=peak_rss_kib(),
    )


def startup(tracker, out):
    """W3: import, then init + finish with nothing logged."""
    t = Tracker(tracker, out)
    t0 = time.perf_counter()
    t.init()
    t1 = time.perf_counter()
    t.finish()
    t2 = time.perf_counter()
    t.teardown()
    return dict(
        tracker=tracker,
        import_s=t.import_s,
        init_s=t1 - t0,
        finish_s=t2 - t1,
        init_finish_s=t2 - t0,
        peak_rss_kib=peak_rss_kib(),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tracker", choices=["none", "wandb", "mlflow-file", "mlflow-sqlite", "tensorboardx"])
    ap.add_argument("workload", choices=["w1", "w2", "w3"])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.workload == "w1":
        r = loop(a.tracker, a.steps, a.keys, a.out)
    elif a.workload == "w2":
        r = multi(a.tracker, a.ranks, a.steps, a.keys, a.out)
    else:
        r = startup(a.tracker, a.out)
    sys.stdout.write("RESULT " + json.dumps(r) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
