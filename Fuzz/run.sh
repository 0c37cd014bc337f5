#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer for a bounded time and prints how many inputs each ran.
#
#   Fuzz/run.sh FUZZER SECONDS [TARGET...]
#
# New inputs that reach new code go to $FUZZ_STATE/corpus/<target>/ (default .build-fuzz) (not committed; the seeds in
# Fuzz/Corpus/<target>/ are read, never written). A crash leaves its input in
# $FUZZ_STATE/crashes/ and fails the run: copy it to Fuzz/Regressions/<target>/ with a name that
# says what it found, fix the bug, and the replay test keeps it fixed.
set -euo pipefail

fuzzer=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
state=${FUZZ_STATE:-.build-fuzz}
work=$state/corpus
crashes=$state/crashes
mkdir -p "$crashes"
if [ $# -eq 0 ]; then
    set -- $(EXECSTREAM_FUZZ_TARGET=list "$fuzzer" 2>&1 | sed -n 's/^EXECSTREAM_FUZZ_TARGET must be one of: //p' | tr -d ',')
fi

total=0
failed=()
printf '%-22s %14s %10s %8s\n' target inputs "inputs/s" result
for target in "$@"; do
    mkdir -p "$work/$target"
    log=$(mktemp)
    status=0
    SWIFT_BACKTRACE=enable=no EXECSTREAM_FUZZ_TARGET=$target "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -print_final_stats=1 -artifact_prefix="$crashes/$target-" \
        "$work/$target" "$here/Corpus/$target" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    result=ok
    if [ "$status" -ne 0 ]; then
        result=CRASH
        failed+=("$target")
        grep -E "^(==|SUMMARY|Fatal error|.*precondition)" "$log" | head -5 >&2 || true
        ls -t "$crashes/$target-"* 2>/dev/null | head -1 >&2 || true
    fi
    printf '%-22s %14s %10s %8s\n' "$target" "${runs:-?}" "${rate:-?}" "$result"
    total=$((total + ${runs:-0}))
    rm -f "$log"
done
printf '%-22s %14s\n' total "$total"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
