#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time: `fuzz/run.sh [SECONDS_PER_TARGET]` (default 60).
#
# - Installs cargo-fuzz from crates.io when it is missing.
# - Works on a stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer, ...) to rustc,
#   which RUSTC_BOOTSTRAP=1 allows.
# - Never grows the committed corpus: new inputs go to a scratch directory given first; the
#   committed fuzz/corpus/<target> is only read.
# - Exits non-zero when any target finds a crash; the reproducer is left in
#   fuzz/artifacts/<target>/ and printed as base64 so a CI log is enough to replay it with
#   `cargo fuzz run <target> <file>`.
set -euo pipefail

secs="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

export RUSTC_BOOTSTRAP=1
# ASan adds nothing for this all-safe-Rust code but halves the throughput; override with
# FUZZ_SANITIZER=address if wanted.
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --version "^0.13" --locked
fi

targets="$(cargo fuzz list)"
echo "== building fuzz targets:" $targets
cargo fuzz build --sanitizer "$sanitizer"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
    echo "== fuzzing $t for ${secs}s"
    mkdir -p "$scratch/$t" "corpus/$t"
    rm -rf "artifacts/$t"
    start=$(date +%s)
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        status=0
    else
        status=$?
    fi
    grep -E '^(#[0-9]+\s+(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|Done )' \
        "$scratch/$t.log" || true
    echo "== $t: exit $status after $(($(date +%s) - start))s"
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$scratch/$t.log"
        for f in artifacts/"$t"/*; do
            [ -f "$f" ] || continue
            echo "== reproducer $f (base64):"
            base64 -w0 "$f"
            echo
        done
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: crashes found in: ${failed[*]}"
    exit 1
fi
echo "fuzz: all targets ran ${secs}s without a crash"
