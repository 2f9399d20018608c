#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (cargo fuzz) for a while each.
#
#   scripts/fuzz.sh [--seconds N] [target...]
#
# Targets: rlog_reader queue_frames mlflow_response wandb_roundtrip (default:
# all, one after the other, N = 60 s each, one fuzzing job per target). Each
# starts from the committed seeds in fuzz/seeds/<target> (real files ranklog
# writes; scripts/fuzz-seeds.sh regenerates them) plus a working corpus kept
# in target/fuzz/corpus/<target> between runs (not committed).
#
# Prints one line per target (executions, exec/s, coverage `cov`/`ft` as
# libFuzzer counts them, corpus size) and writes every target's latest result
# to target/reliability/fuzz.json. Exits non-zero if any target crashed, hung
# (an input running over 10 s) or ran out of memory (RSS over 2 GiB), naming
# the input libFuzzer saved under target/fuzz/artifacts/<target>/.
#
# Installs cargo-fuzz if it is missing. cargo fuzz needs nightly flags: with a
# stable toolchain they are enabled with RUSTC_BOOTSTRAP=1. Environment:
# RANKLOG_FUZZ_SANITIZER (default none; `address` for ASan, slower),
# CARGO_BUILD_JOBS (default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
all=(rlog_reader queue_frames mlflow_response wandb_roundtrip)
seconds=60
targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds)
            seconds=${2:?--seconds needs a number}
            shift 2
            ;;
        --seconds=*)
            seconds=${1#--seconds=}
            shift
            ;;
        -h | --help)
            sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "fuzz: unknown option $1 (use --seconds N and target names)" >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
case $seconds in
    '' | *[!0-9]*) echo "fuzz: --seconds wants a whole number, not '$seconds'" >&2; exit 2 ;;
esac
for t in "${targets[@]}"; do
    case " ${all[*]} " in
        *" $t "*) ;;
        *) echo "fuzz: unknown target '$t'; targets are: ${all[*]}" >&2; exit 2 ;;
    esac
done

say() { echo "fuzz: $*" >&2; }

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
sanitizer=${RANKLOG_FUZZ_SANITIZER:-none}

# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null 2>&1; then
    say "installing a C++ compiler for libFuzzer"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

started=$(date +%s)
say "building the fuzz targets (sanitizer: $sanitizer)"
# All targets at once: they share the ranklog build, the binaries are small.
(cd fuzz && cargo fuzz build -s "$sanitizer")
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$root/fuzz/target/$triple/release
build_s=$(( $(date +%s) - started ))
say "built in $build_s s"

out_dir=$root/target/reliability
results=$out_dir/fuzz.d
mkdir -p "$results"
failed=()

for t in "${targets[@]}"; do
    corpus=$root/target/fuzz/corpus/$t
    artifacts=$root/target/fuzz/artifacts/$t
    log=$root/target/fuzz/$t.log
    mkdir -p "$corpus" "$artifacts"
    # Inputs libFuzzer saves on failure (slow-unit-* are only reported).
    failures() { ls -t "$artifacts" | grep -E '^(crash|timeout|oom|leak)-' || true; }
    before=$(failures | wc -l)
    say "$t: fuzzing for $seconds s"
    set +e
    "$bin_dir/$t" "$corpus" "$root/fuzz/seeds/$t" \
        -max_total_time="$seconds" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    set -e
    final() { sed -n "s/^stat::$1: *//p" "$log" | tail -1 || true; }
    execs=$(final number_of_executed_units)
    eps=$(final average_exec_per_sec)
    rss=$(final peak_rss_mb)
    last=$(grep -E '^#[0-9]+[[:space:]].* cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    artifact=""
    result=ok
    if [ "$rc" -ne 0 ] || [ "$(failures | wc -l)" -gt "$before" ]; then
        artifact=$(failures | head -1)
        case $artifact in
            timeout-*) result=timeout ;;
            oom-*) result=oom ;;
            *) result=crash ;;
        esac
        [ -n "$artifact" ] && artifact=$artifacts/$artifact
        failed+=("$t")
    fi
    printf 'fuzz: %-16s %5s s  %11s execs  %7s exec/s  cov %5s  ft %6s  corpus %5s files %9s bytes  rss %4s MB  %s\n' \
        "$t" "$seconds" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$files" "$bytes" "${rss:-?}" "$result" >&2
    if [ "$result" != ok ]; then
        say "$t: $result; input saved at ${artifact:-?} (log $log)"
        say "reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer $t ${artifact:-<input>})"
        grep -m5 -E 'panicked at|ERROR: libFuzzer' "$log" >&2 || true
    fi
    printf '{"target": "%s", "seconds": %s, "executions": %s, "exec_per_sec": %s, "cov": %s, "ft": %s, "corpus_files": %s, "corpus_bytes": %s, "peak_rss_mb": %s, "result": "%s", "artifact": "%s", "sanitizer": "%s", "finished_at": "%s"}\n' \
        "$t" "$seconds" "${execs:-null}" "${eps:-null}" "${cov:-null}" "${ft:-null}" "$files" "$bytes" "${rss:-null}" \
        "$result" "$artifact" "$sanitizer" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$results/$t.json"
done

# The latest result of every target, whichever run produced it.
{
    echo '{"targets": ['
    first=1
    for f in "$results"/*.json; do
        [ -e "$f" ] || continue
        [ $first -eq 1 ] || echo ','
        first=0
        tr -d '\n' <"$f"
    done
    echo ']}'
} >"$out_dir/fuzz.json"

say "done in $(( $(date +%s) - started )) s (build $build_s s); summary in target/reliability/fuzz.json"
if [ ${#failed[@]} -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
