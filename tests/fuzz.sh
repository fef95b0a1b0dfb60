#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz for a bounded number of executions (or time),
# from the committed seeds, and prints the executions each made. Not part of the test
# suite (it takes minutes per target); crashes are written to tests/fuzz/artifacts/.
#
#   bash tests/fuzz.sh [RUNS] [MAX_SECONDS]     # defaults: 10,000,000 runs, 900 s each
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain it builds with
# RUSTC_BOOTSTRAP=1, without a sanitizer (the project forbids unsafe code, so libFuzzer's
# coverage guidance and Rust's own panics and overflow checks are what find bugs).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-10000000}
seconds=${2:-900}
targets=(frame wire_values call_args codegen_yaml method_stream)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

for target in "${targets[@]}"; do
    corpus="target/fuzz-corpus/$target"
    mkdir -p "$corpus" tests/fuzz/artifacts/"$target"
    log="target/fuzz-$target.log"
    echo "== $target"
    cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none --debug-assertions "$target" \
        "$corpus" "tests/fuzz/seeds/$target" -- \
        -runs="$runs" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -artifact_prefix="tests/fuzz/artifacts/$target/" -print_final_stats=1 \
        >"$log" 2>&1 || { tail -40 "$log"; echo "$target: FAILED (see $log)"; exit 1; }
    done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    per_second=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    echo "$target: ${done_runs:-?} executions, ~${per_second:-?}/s, no crash"
done
