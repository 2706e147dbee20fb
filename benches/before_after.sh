#!/usr/bin/env bash
# Two reaktor builds side by side: the http, switch and ws benchmarks (benches/http_hello.sh,
# benches/switch.sh, benches/ws_echo.sh, reaktor alone) run for BEFORE and AFTER in turn,
# round after round (before, after, after, before, ...), so the machine's drift and other
# load hit both alike. Prints, per benchmark and scenario, each variant's median and spread
# (min-max over the rounds) and the after/before ratio of the medians, for throughput and for
# the server's CPU time per operation (the steadier measure on a shared machine).
#
# Usage (one benchmark at a time on the machine):
#   flock /work/bench.lock env BEFORE=/path/to/old/reaktor AFTER=/path/to/new/reaktor \
#       benches/before_after.sh
# env: ROUNDS=3 DURATION=5 BENCHES="http switch ws"
#      HTTP_SCENARIOS="keepalive pipeline" SWITCH_SCENARIOS="regport sendmsg"
#      REGPORT_PORTS=2000000 WS_SCENARIOS="rtt1 oneway1000"
#      BEFORE_ENV / AFTER_ENV: environment for one variant's runs, e.g. AFTER_ENV=CLUSTER=1
#      (with BEFORE=AFTER: the same build with and without a one-member [cluster])
# The load generators must be built (benches/switch.sh and benches/ws_echo.sh build them
# when run without SKIP_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BEFORE:?set BEFORE to the old reaktor binary}" "${AFTER:?set AFTER to the new reaktor binary}"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
BENCHES=${BENCHES:-http switch ws}
HTTP_SCENARIOS=${HTTP_SCENARIOS:-keepalive pipeline}
SWITCH_SCENARIOS=${SWITCH_SCENARIOS:-regport sendmsg}
REGPORT_PORTS=${REGPORT_PORTS:-2000000}
WS_SCENARIOS=${WS_SCENARIOS:-rtt1 oneway1000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/before_after.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

run() { # run BENCH VARIANT BINARY ROUND
    local bench=$1 variant=$2 bin=$3 tsv=$WORK/$1-$2.tsv vars
    if [[ $variant == before ]]; then vars=${BEFORE_ENV:-}; else vars=${AFTER_ENV:-}; fi
    echo "== round $4: $bench, $variant ($bin${vars:+, $vars})" >&2
    (
    # shellcheck disable=SC2086 # the variant's assignments, word-split on purpose
    [[ -z $vars ]] || export $vars
    case $bench in
    http) SERVERS=reaktor SCENARIOS=$HTTP_SCENARIOS ROUNDS=1 DURATION=$DURATION SKIP_BUILD=1 \
        REAKTOR_BIN=$bin RESULTS_TSV=$tsv "$ROOT/benches/http_hello.sh" >&2 ;;
    switch) PEERS=0 SCENARIOS=$SWITCH_SCENARIOS ROUNDS=1 DURATION=$DURATION SKIP_BUILD=1 \
        REGPORT_PORTS=$REGPORT_PORTS REAKTOR_BIN=$bin RESULTS_TSV=$tsv "$ROOT/benches/switch.sh" >&2 ;;
    ws) SERVERS=reaktor SCENARIOS=$WS_SCENARIOS DURATION=$DURATION SKIP_BUILD=1 \
        REAKTOR_BIN=$bin RESULTS_TSV=$tsv "$ROOT/benches/ws_echo.sh" >&2 ;;
    esac
    )
}

for ((r = 1; r <= ROUNDS; r++)); do
    for bench in $BENCHES; do
        if ((r % 2)); then order="before after"; else order="after before"; fi
        for variant in $order; do
            if [[ $variant == before ]]; then bin=$BEFORE; else bin=$AFTER; fi
            run "$bench" "$variant" "$bin" "$r"
        done
    done
done

# scenario<TAB>throughput<TAB>server CPU per operation lines of one result file.
values() {
    case $1 in
    http) awk -F'\t' '$4 == "reaktor" {print $5 "\t" $10 "\t" $12}' "$2" ;; # req/s, CPU us/req
    switch) awk -F'\t' '$5 ~ /^reaktor/ && $6 != "bytes/port" {print $4 "\t" $7 "\t" $8 / 1000}' "$2" ;;
    ws) awk -F'\t' '$3 == "reaktor" {print $2 "\t" $5 "\t" $8}' "$2" ;; # msgs/s, CPU us/msg
    esac
}

# stats BENCH VARIANT SCENARIO COLUMN: "median min max" of one column over the rounds.
stats() {
    values "$1" "$WORK/$1-$2.tsv" | awk -F'\t' -v s="$3" -v c="$4" '$1 == s {print $c}' | sort -g |
        awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s %s %s", m, v[1], v[NR]}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "-" }'; }

printf '%-7s %-11s %-14s %12s %22s %12s %22s %7s\n' bench scenario measure before "(min-max)" after "(min-max)" after/before
for bench in $BENCHES; do
    for s in $(values "$bench" "$WORK/$bench-before.tsv" | cut -f1 | sort -u); do
        for column in 2 3; do
            if [[ $column == 2 ]]; then measure="ops/s"; else measure="server us/op"; fi
            read -r bm bl bh <<<"$(stats "$bench" before "$s" "$column")"
            read -r am al ah <<<"$(stats "$bench" after "$s" "$column")"
            printf '%-7s %-11s %-14s %12.6g %22s %12.6g %22s %7s\n' "$bench" "$s" "$measure" "$bm" "($bl-$bh)" \
                "$am" "($al-$ah)" "$(ratio "$am" "$bm")"
        done
    done
done
