#!/usr/bin/env bash
# `ranklog ui` in a real browser: headless Chromium (Debian's package) driven
# by playwright-core (from npm, no browser download) over runs made by real
# 4-rank `ranklog launch` jobs. Exits non-zero when a check fails.
#
#   scripts/ui-browser-test.sh
#
# What it does:
# 1. installs Debian's chromium (and node/npm) when missing, and
#    playwright-core into target/ui-browser/ (kept as a cache);
# 2. builds ranklog and the ddp_grouped example;
# 3. runs a 4-rank job in which rank 3 crashes, a run whose name is markup,
#    and starts a second 4-rank job that keeps running;
# 4. starts `ranklog ui` on a free port and checks, in the browser, the runs
#    page (filters, escaping), the group page (rank rows, the crashed rank
#    flagged, one chart per metric, click-to-highlight), the run page (config,
#    charts, wall-time toggle) and live updates of the running job without a
#    reload (scroll position and highlight kept);
# 5. saves screenshots under target/ui-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
shots="$repo/target/ui-screenshots"
cache="$repo/target/ui-browser"
mkdir -p "$shots" "$cache"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (apt) =="
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
chromium_bin=$(command -v chromium)
if [ ! -f "$cache/node_modules/playwright-core/package.json" ]; then
    echo "== installing playwright-core (npm) =="
    (cd "$cache" && [ -f package.json ] || echo '{"private":true}' > package.json)
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$cache" --no-audit --no-fund \
        --silent playwright-core@1.65.1
fi

echo "== building ranklog =="
cargo build --quiet --bin ranklog --example ddp_grouped
bin="$repo/target/debug/ranklog"
example="$repo/target/debug/examples/ddp_grouped"

work=$(mktemp -d)
ui_pid=""
live_pid=""
cleanup() {
    [ -n "$ui_pid" ] && kill "$ui_pid" 2>/dev/null || true
    [ -n "$live_pid" ] && kill "$live_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
root="$work/runs"
mkdir -p "$root"
export RANKLOG_DIR="$root"

echo "== a 4-rank job whose rank 3 crashes =="
crashed_group="crash-$(date +%H%M%S)"
set +e
"$bin" launch --nproc-per-node 4 --group "$crashed_group" --no-view -- \
    "$example" --steps 200 --step-ms 10 --crash-rank 3 --crash-step 170 >"$work/crash.log" 2>&1
code=$?
set -e
if [ "$code" -eq 0 ]; then
    echo "the crashing job exited 0; expected a failure" >&2
    cat "$work/crash.log" >&2
    exit 1
fi

echo "== a run whose name is markup =="
RANKLOG_NAME='<img src=x onerror=alert(1)>' "$example" --steps 20 --step-ms 1 >/dev/null
touch "$work/before-live"

echo "== a 4-rank job that keeps running =="
live_group="live-$(date +%H%M%S)"
"$bin" launch --nproc-per-node 4 --group "$live_group" --no-view -- \
    "$example" --steps 100000 --step-ms 20 >"$work/live.log" 2>&1 &
live_pid=$!

echo "== starting ranklog ui =="
"$bin" ui --dir "$root" --port 0 2>"$work/ui.err" &
ui_pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's#.*http://127.0.0.1:\([0-9]*\)/.*#\1#p' "$work/ui.err" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "ranklog ui did not start" >&2
    cat "$work/ui.err" >&2
    exit 1
fi
# Wait until the live job's ranks have logged something.
for _ in $(seq 1 100); do
    n=$(find "$root" -name run.rlog -newer "$work/before-live" | wc -l)
    [ "$n" -ge 4 ] && break
    sleep 0.1
done

echo "== checking pages in headless Chromium =="
start=$(date +%s)
NODE_PATH="$cache/node_modules" \
BASE="http://127.0.0.1:$port" CRASHED_GROUP="$crashed_group" LIVE_GROUP="$live_group" \
CRASHED_RANK=3 SHOTS="$shots" CHROMIUM="$chromium_bin" PROFILE="$work/profile" \
    node "$repo/scripts/ui-browser-test.cjs"
echo "== browser checks passed in $(( $(date +%s) - start )) s; screenshots in $shots =="
