#!/usr/bin/env bash
# One command for the tracker comparison (see BENCHMARKS.md):
#
#   bench/compare/run.sh [--quick | --smoke] [--ranklog-only] [--debug] [driver options...]
#
# Builds ranklog and its workload program in release mode, creates a Python venv
# with wandb, MLflow and tensorboardX from PyPI (pinned in requirements.txt; cached
# in target/venv-compare, or $RANKLOG_COMPARE_VENV), runs W1, W2 and W3 for every
# tracker and prints one table. `bench/compare/run.sh --help` lists the options.
# Results also go to target/bench-compare/<time>/{table.md,results.json}.
#
# --debug uses the dev profile (what `cargo test` already built) instead of
# release: the numbers mean nothing then, but `--smoke --ranklog-only --debug`
# checks in a few seconds that the whole pipeline runs (no venv, no network).
set -euo pipefail
cd "$(dirname "$0")/../.."

ranklog_only=0
profile=release
args=()
for arg in "$@"; do
    case "$arg" in
        --ranklog-only) ranklog_only=1; args+=("$arg") ;;
        --debug) profile=debug ;;
        *) args+=("$arg") ;;
    esac
done

say() { echo "ranklog-compare: $*" >&2; }

if ! command -v python3 >/dev/null; then
    say "installing python3"
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi

say "building ranklog ($profile)"
build=(cargo build --quiet --bin ranklog --example bench_compare)
[[ $profile == release ]] && build+=(--release)
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" "${build[@]}"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

python=python3
if [[ $ranklog_only == 0 ]]; then
    venv="${RANKLOG_COMPARE_VENV:-target/venv-compare}"
    stamp="$venv/.requirements"
    if ! [[ -x "$venv/bin/python" ]] || ! cmp -s bench/compare/requirements.txt "$stamp"; then
        say "creating $venv (pip install wandb, mlflow, tensorboardX)"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/compare/requirements.txt
        cp bench/compare/requirements.txt "$stamp"
    fi
    python="$venv/bin/python"
fi

exec "$python" bench/compare/driver.py \
    --ranklog-bin "$target_dir/$profile/ranklog" \
    --workload-bin "$target_dir/$profile/examples/bench_compare" \
    ${args[@]+"${args[@]}"}
