#!/usr/bin/env bash
# Opt-in fuzzing of the parsers that read hostile input (fuzz/fuzz_targets/): installs
# cargo-fuzz if it is missing, then runs each target for SECONDS (default 600), niced, one
# libFuzzer process at a time, on stable Rust without a sanitizer (`-s none`: everything but
# the streams crate is safe Rust) and with debug assertions and overflow checks on.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]          # all targets when none is named
#   flock /work/bench.lock scripts/fuzz.sh 900 ws_session   # on a shared machine, one at a time
#   scripts/fuzz.sh cmin [TARGET...]               # grow the committed corpus (see below)
#
# Two corpora per target: fuzz/corpus/<target>/ is committed (small; tests/fuzz_corpus.rs
# replays it on stable in every test run) and read by the fuzzer; fuzz/work/<target>/ (not
# committed) receives every new input libFuzzer keeps, thousands of them. `cmin` adds to
# fuzz/corpus/<target>/ the inputs of the working corpus that cover code edges the committed
# ones do not (libFuzzer -merge=1 -use_counters=0: edges, not hit counts, so it stays a few
# hundred KB). Named inputs: regress-* (a finding's input, cited by its test) and seed-*
# (hand-written). A crash leaves its input in fuzz/artifacts/<target>/ and this script exits
# non-zero; each finding gets a regression test and its input as fuzz/corpus/<target>/regress-*.
# Logs and final statistics (executions, coverage, corpus size) go to fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/logs

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

mode=run
if [ "${1:-}" = cmin ]; then
    mode=cmin
    shift
else
    seconds=${1:-600}
    shift || true
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

if [ "$mode" = cmin ]; then
    for target in "${targets[@]}"; do
        dir="fuzz/corpus/$target"
        work="fuzz/work/$target"
        mkdir -p "$work"
        before=$(find "$dir" -type f | wc -l)
        # -merge=1 into the committed corpus: its inputs stay, and an input of the working
        # corpus joins only if it covers an edge none of them covers (so a commit adds a few
        # files instead of reshuffling all of them).
        if ! nice -n 19 cargo fuzz run -s none --fuzz-dir fuzz "$target" "$dir" "$work" \
            -- -merge=1 -use_counters=0 -max_len=131072 >"fuzz/logs/$target.cmin.log" 2>&1; then
            echo "fuzz.sh: cmin of $target FAILED, see fuzz/logs/$target.cmin.log"
            exit 1
        fi
        echo "fuzz.sh: $target: $before -> $(find "$dir" -type f | wc -l) committed inputs" \
            "($(find "$dir" -type f -printf '%s\n' | awk '{s += $1} END {print s}') bytes)"
    done
    exit 0
fi

failed=0
for target in "${targets[@]}"; do
    log="fuzz/logs/$target.log"
    mkdir -p "fuzz/work/$target"
    echo "fuzz.sh: $target for ${seconds}s (log: $log)"
    started=$SECONDS
    if ! nice -n 19 cargo fuzz run -s none --fuzz-dir fuzz "$target" "fuzz/work/$target" \
        "fuzz/corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -max_len=131072 >"$log" 2>&1; then
        echo "fuzz.sh: $target FAILED, see $log and fuzz/artifacts/$target/"
        failed=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    # libFuzzer's status lines: edges covered (cov) and features (ft, edges with hit counts),
    # at the start (INITED, the saved corpora) and at the end.
    inited=$(grep -o 'INITED cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    last=$(grep -oE '(DONE|pulse|NEW|REDUCE) +cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    corpus=$(find "fuzz/work/$target" -type f | wc -l)
    echo "fuzz.sh: $target: ${runs:-?} executions in $((SECONDS - started))s (build included);" \
        "${inited:-INITED ?} -> ${last:-?}; working corpus $corpus files"
done
exit "$failed"
