#!/usr/bin/env bash
# Soak: a 4-rank single-writer job and a 4-rank grouped job, side by side,
# each logging for a long time while every rank's RSS, open descriptors and
# threads are sampled (examples/soak.rs judges the curves).
#
#   scripts/soak.sh                       # 600 s, release build (RELIABILITY.md)
#   scripts/soak.sh --seconds 60 --debug  # the CI smoke: same checks, shorter
#
# Options: --seconds N (default 600), --rate R steps/s per rank (default 5000;
# unthrottled, one rank writes about 70 MB/s, which would fill the disk long
# before ten minutes), --interval S between samples (default 10, or 3 when
# --seconds < 300), --debug (use the debug build; `cargo test` already built it).
# Samples go to target/reliability/soak-<strategy>.json; the runs themselves are
# deleted afterwards. Exits non-zero when a job failed or a curve grew.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600 rate=5000 interval="" profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --interval) interval=$2; shift 2 ;;
        --debug) profile=debug; shift ;;
        *) echo "soak: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$interval" ]; then
    if [ "$seconds" -lt 300 ]; then interval=3; else interval=10; fi
fi

flags=()
[ "$profile" = release ] && flags=(--release)
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build "${flags[@]}" --quiet --bin ranklog --example soak
out=target/reliability
mkdir -p "$out"
runs=$(mktemp -d "$PWD/target/soak-runs.XXXXXX")
trap 'rm -rf "$runs"' EXIT

pids=()
for strategy in single-writer grouped; do
    "target/$profile/examples/soak" drive --strategy "$strategy" --seconds "$seconds" \
        --rate "$rate" --interval "$interval" --out "$out" --dir "$runs/$strategy" \
        > "$out/soak-$strategy.log" 2>&1 &
    pids+=($!)
done
status=0
for i in 0 1; do
    name=$([ $i = 0 ] && echo single-writer || echo grouped)
    if wait "${pids[$i]}"; then
        echo "soak: $name: flat"
    else
        echo "soak: $name: FAILED (see $out/soak-$name.log)" >&2
        status=1
    fi
    grep -E '^\[rank|^rank|^ ' "$out/soak-$name.log" | sed "s/^/  $name /" || true
done
exit $status
