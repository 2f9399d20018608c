#!/usr/bin/env python3
"""Checks W&B offline runs exported by `ranklog export wandb` with W&B's own reader.

For every exported run it compares, against the ranklog run (`ranklog show
--json`) and against what the generator logged (EXPECTED.json from
examples/export_interop.rs):

- `wandb leet inspect --json FILE`: one JSON object per record as W&B's Go
  core decodes it: header, run (id, project, group, job type, name), config,
  every history row (keys, values, `_step`, `step.num`, `_runtime`,
  `_timestamp`), summary, exit code;
- `wandb leet inspect --summary --json FILE`: state, exit code, config,
  summary, last step;
- the framing itself, independently of both: header, CRC-32 of every chunk,
  chunk order, zero padding; the large run must have FIRST/MIDDLE/LAST chunks;
- a file from ranklog's framing writer in which a record meets exactly 7
  free bytes (an empty FIRST chunk): W&B must read every record after it.

Exits non-zero on any mismatch.
"""

import argparse
import datetime
import json
import pathlib
import struct
import subprocess
import sys
import zlib

BLOCK = 32 * 1024
HEADER = b":W&B\xe1\xbe\x00"
WORDS = {"NaN", "Infinity", "-Infinity"}
RESERVED = {"_step", "_runtime", "_timestamp"}


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def same(want, got, where):
    """Deep equality; numbers compare as floats, W&B's words for non-finite floats as strings."""
    if isinstance(want, str) and want in WORDS:
        check(got == want, f"{where}: want {want}, got {got!r}")
    elif isinstance(want, bool) or isinstance(got, bool):
        check(want is got, f"{where}: want {want!r}, got {got!r}")
    elif isinstance(want, (int, float)):
        check(
            isinstance(got, (int, float)) and float(got) == float(want),
            f"{where}: want {want!r}, got {got!r}",
        )
    elif isinstance(want, dict):
        check(isinstance(got, dict), f"{where}: want an object, got {got!r}")
        check(
            set(want) == set(got),
            f"{where}: keys differ: missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}",
        )
        for k in want:
            same(want[k], got[k], f"{where}.{k}")
    elif isinstance(want, list):
        check(isinstance(got, list) and len(got) == len(want), f"{where}: want {want!r}, got {got!r}")
        for i, (w, g) in enumerate(zip(want, got)):
            same(w, g, f"{where}[{i}]")
    else:
        check(want == got, f"{where}: want {want!r}, got {got!r}")


def framing(path):
    """Walks the blocks and chunks of a .wandb file; returns chunk counts by type."""
    data = path.read_bytes()
    check(data[:7] == HEADER, f"{path}: bad header {data[:7]!r}")
    pos, counts, empty_first, open_record = 7, {1: 0, 2: 0, 3: 0, 4: 0}, 0, False
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            check(data[pos : pos + left] == bytes(left), f"{path}: non-zero padding at {pos}")
            pos += left
            continue
        check(len(data) - pos >= 7, f"{path}: truncated chunk header at {pos}")
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        check(kind in counts, f"{path}: chunk type {kind} at {pos}")
        check(7 + length <= left, f"{path}: chunk crosses a block boundary at {pos}")
        payload = data[pos + 7 : pos + 7 + length]
        check(len(payload) == length, f"{path}: truncated chunk at {pos}")
        check(zlib.crc32(bytes([kind]) + payload) == crc, f"{path}: CRC mismatch at {pos}")
        check((kind in (1, 2)) != open_record, f"{path}: chunk type {kind} out of order at {pos}")
        open_record = kind in (2, 3)
        if kind == 2 and length == 0:
            empty_first += 1
        counts[kind] += 1
        pos += 7 + length
    check(not open_record, f"{path}: the file ends inside a record")
    return {"full": counts[1], "first": counts[2], "middle": counts[3], "last": counts[4], "empty_first": empty_first}


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def check_run(args, exported, expected, shown):
    path = pathlib.Path(exported["file"])
    chunks = framing(path)
    if expected["name"] == "interop-large":
        check(
            chunks["first"] > 0 and chunks["middle"] > 0 and chunks["last"] > 0,
            f"large run should span blocks, chunks {chunks}",
        )

    # ranklog's own view agrees with what the generator logged.
    for field in ("id", "name", "project", "group", "job_type"):
        same(expected[field], shown[field], f"ranklog show .{field}")
    same(expected["config"], shown["config"], "ranklog show .config")
    same(expected["summary"], shown["summary"], "ranklog show .summary")
    same(expected["exit_code"], exported["exit_code"], "export .exit_code")
    if shown["exit_code"] is not None:
        same(expected["exit_code"], shown["exit_code"], "ranklog show .exit_code")

    records = [json.loads(line) for line in run_json([args.wandb, "leet", "inspect", "--json", str(path)]).splitlines() if line.strip()]
    check(len(records) == exported["records"], f"leet read {len(records)} records, the export wrote {exported['records']}")
    check([r.get("num") for r in records] == list(range(1, len(records) + 1)), "record numbers are not 1, 2, 3, ...")
    types = [r["type"] for r in records]
    check(types[0] == "header" and types[1] == "run", f"the log starts with {types[:2]}")
    check(types[-1] == "exit", f"the log ends with {types[-1]}")

    run = records[1]["run"]
    same(shown["id"], run.get("run_id"), "run.run_id")
    same(shown["project"], run.get("project"), "run.project")
    same(shown["name"], run.get("display_name"), "run.display_name")
    same(shown["group"] or "", run.get("run_group", ""), "run.run_group")
    same(shown["job_type"] or "", run.get("job_type", ""), "run.job_type")
    start = datetime.datetime.fromisoformat(run["start_time"].replace("Z", "+00:00")).timestamp()

    config = {}
    for r in records:
        if r["type"] == "config":
            config.update(r["config"]["update"])
    same(shown["config"], config, "config records")

    rows = [r["history"] for r in records if r["type"] == "history"]
    check(len(rows) == len(expected["rows"]), f"{len(rows)} history rows, expected {len(expected['rows'])}")
    last_runtime = -1.0
    for i, (got, want) in enumerate(zip(rows, expected["rows"])):
        items = got["item"]
        where = f"history row {i} (step {want['step']})"
        same(want["step"], got.get("step", {}).get("num", 0), f"{where} step.num")
        same(want["step"], items.get("_step"), f"{where} _step")
        check(isinstance(items.get("_step"), int), f"{where}: _step is not an integer: {items.get('_step')!r}")
        runtime, timestamp = items.get("_runtime"), items.get("_timestamp")
        check(isinstance(runtime, (int, float)) and runtime >= last_runtime, f"{where}: _runtime {runtime!r}")
        last_runtime = runtime
        check(
            isinstance(timestamp, (int, float)) and abs(timestamp - runtime - start) < 2e-3,
            f"{where}: _timestamp {timestamp!r} is not start + _runtime",
        )
        same(want["values"], {k: v for k, v in items.items() if k not in RESERVED}, where)

    # The summary: last value of every metric, then the explicit values.
    want_summary = {}
    for row in expected["rows"]:
        want_summary.update(row["values"])
    for metric in shown["metrics"]:
        same(want_summary[metric["key"]], metric["last"], f"ranklog show metric {metric['key']}.last")
    want_summary.update(expected["summary"])
    if rows:
        for k in RESERVED:
            want_summary[k] = rows[-1]["item"][k]
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    same(want_summary, summary, "summary records")
    exit_code = records[-1]["exit"].get("exit_code", 0)
    same(expected["exit_code"], exit_code, "exit.exit_code")

    s = json.loads(run_json([args.wandb, "leet", "inspect", "--summary", "--json", str(path)]))
    same(shown["id"], s.get("run_id"), "--summary run_id")
    same(shown["project"], s.get("project"), "--summary project")
    same(shown["name"], s.get("name"), "--summary name")
    same(shown["config"], s.get("config"), "--summary config")
    same(expected["exit_code"], s.get("exit_code"), "--summary exit_code")
    same("finished" if expected["exit_code"] == 0 else "failed", s.get("state"), "--summary state")
    same(want_summary, s.get("summary"), "--summary summary")
    if rows:
        same(expected["rows"][-1]["step"], s.get("step"), "--summary step")
    return f"{len(records)} records, {len(rows)} rows, exit {exit_code}, chunks {chunks}"


def check_seven_left(args, path, pad_len):
    chunks = framing(path)
    check(chunks["empty_first"] == 1, f"expected one empty FIRST chunk, got {chunks}")
    records = [json.loads(line) for line in run_json([args.wandb, "leet", "inspect", "--json", str(path)]).splitlines() if line.strip()]
    same(["header", "run", "history", "history", "exit"], [r["type"] for r in records], "record types")
    rows = [r["history"] for r in records if r["type"] == "history"]
    same({"_step": 0, "_runtime": 0, "_timestamp": 1.8e9, "pad": "p" * pad_len}, rows[0]["item"], "row 0")
    same({"_step": 1, "_runtime": 1, "_timestamp": 1.8e9 + 1, "x": 1.5}, rows[1]["item"], "row 1")
    same(0, records[-1]["exit"].get("exit_code", 0), "exit code")
    s = json.loads(run_json([args.wandb, "leet", "inspect", "--summary", "--json", str(path)]))
    same("finished", s.get("state"), "--summary state")
    same(1, s.get("step"), "--summary step")
    return f"{len(records)} records, chunks {chunks}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranklog", required=True, help="the ranklog binary")
    p.add_argument("--wandb", required=True, help="the wandb command of the venv")
    p.add_argument("--expected", required=True, type=pathlib.Path, help="directory of EXPECTED.json files, one per run id")
    p.add_argument("--export", required=True, type=pathlib.Path, help="output of `ranklog export wandb --json`")
    p.add_argument("--seven-left", type=pathlib.Path, help="the file of `export_interop sevenleft`")
    p.add_argument("--seven-left-pad", type=int, help="the pad length it printed")
    args = p.parse_args()

    exports = json.loads(args.export.read_text())
    expected_ids = sorted(f.stem for f in args.expected.glob("*.json"))
    passed, failed = 0, 0
    if sorted(e.get("id", "?") for e in exports) != expected_ids:
        print(f"FAIL export: exported {[e.get('id') for e in exports]}, expected runs {expected_ids}")
        failed += 1
    for exported in exports:
        name = exported.get("id") or exported["run"]
        try:
            check(exported["ok"], f"export failed: {exported.get('error')}")
            expected = json.loads((args.expected / f"{exported['id']}.json").read_text())
            shown = json.loads(run_json([args.ranklog, "show", "--json", exported["run_dir"]]))
            detail = check_run(args, exported, expected, shown)
            print(f"ok   {name}: {exported['state']}, {detail}")
            passed += 1
        except (Mismatch, KeyError, ValueError, subprocess.CalledProcessError) as e:
            extra = f"\n{e.stderr}" if isinstance(e, subprocess.CalledProcessError) else ""
            print(f"FAIL {name}: {type(e).__name__}: {e}{extra}")
            failed += 1
    if args.seven_left:
        try:
            detail = check_seven_left(args, args.seven_left, args.seven_left_pad)
            print(f"ok   sevenleft: {detail}")
            passed += 1
        except (Mismatch, KeyError, ValueError, subprocess.CalledProcessError) as e:
            print(f"FAIL sevenleft: {type(e).__name__}: {e}")
            failed += 1
    print(f"interop-wandb: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
