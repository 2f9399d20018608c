#!/usr/bin/env bash
# Fault tests of issue 9 that need more than `cargo test` can set up itself.
#
#   scripts/faults.sh
#
# 1. Network faults of the single-writer queue (tests/queue_faults.rs: rank 0's
#    port closed with FIN, connections reset with RST, rank 0 frozen with
#    SIGSTOP over tcp and ipc). These also run in plain `cargo test`; here
#    they run with --nocapture so the measured bounds are printed
#    (lines starting `FAULT`).
# 2. The wall clock going backwards (tests/clock.rs, #[ignore]d): installs
#    Debian's `faketime` package (apt-get update; apt-get install -y faketime)
#    when libfaketime is missing.
# 3. A real file system filling up (tests/disk_full.rs, #[ignore]d): mounts a
#    2 MiB tmpfs (needs root or CAP_SYS_ADMIN), runs the test on it, unmounts.
#    Where mounting is not permitted it says so and goes on: the
#    RLIMIT_FSIZE disk-full tests in `cargo test` still cover the writer.
#
# Exits non-zero on any failure. Environment: CARGO_BUILD_JOBS (default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

say() { echo "faults: $*" >&2; }

have_faketime() {
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null ||
        [ -e /usr/lib/faketime/libfaketime.so.1 ]
}

if ! have_faketime; then
    say "installing faketime (libfaketime)"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y faketime
fi
have_faketime || { say "libfaketime still missing after apt-get"; exit 1; }

cargo test --test tests --no-run

say "network faults of the single-writer queue"
cargo test --test tests queue_faults:: -- --nocapture 2>&1 | tee target/faults-queue.log
say "measured bounds (seconds from the fault to the worker's exit, per policy):"
grep '^FAULT' target/faults-queue.log >&2 || true

say "the wall clock going backwards (libfaketime)"
cargo test --test tests clock:: -- --include-ignored

say "a real small file system filling up"
small=$(mktemp -d)
cleanup() {
    if mountpoint -q "$small" 2>/dev/null; then umount "$small" || true; fi
    rmdir "$small" 2>/dev/null || true
}
trap cleanup EXIT
if mount -t tmpfs -o size=2m tmpfs "$small" 2>/dev/null; then
    RANKLOG_FAULTS_SMALL_FS=$small cargo test --test tests disk_full:: -- --include-ignored
else
    say "SKIPPED the real file system case: mounting a tmpfs is not permitted here" \
        "(the RLIMIT_FSIZE disk-full tests of cargo test still ran)"
    cargo test --test tests disk_full::
fi

say "all fault tests passed"
