#!/usr/bin/env bash
# What the coordination load of issue 15 (10,000 watches on one prefix, a listing of a
# 1M-port table, one event a second to every watch) costs RegPort and SendMsg, counted by
# callgrind: repeatable on a shared machine, where the wall-clock on/off run of
# `SCENARIOS=coord benches/switch.sh` moves by ±25 % from one run to the next.
#
# It runs `nuklei/switch/examples/coord_cost` (the sans-I/O switch, one instance, no sockets)
# under callgrind once per variant — no watches, 100 watcher nodes x 100 watches on `w:`,
# 100 node-less watchers x 100 — and prints per phase: instructions per RegPort port, per
# SendMsg message, per listing page of 1,000 and per event fanned out to the watches. The
# per-operation ratios say what the watches add to each registration or message; the page
# and event figures are the coordination load's fixed cost per second (times the pages and
# events per second the wall-clock bench runs: ~46 pages/s and 1 event/s).
#
# Usage: bash benches/coord_instructions.sh
# Environment: PORTS=100000 MESSAGES=100000 VARIANTS="none nodes node-less" SKIP_BUILD=1
#   KEEP_CALLGRIND=DIR keeps each phase's profile as DIR/<variant>-<phase>.callgrind
# Prerequisites: valgrind, cargo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
PORTS=${PORTS:-100000}
MESSAGES=${MESSAGES:-100000}
VARIANTS=${VARIANTS:-none nodes node-less}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/coord_cost
if [[ -z ${SKIP_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p nukleus-switch --example coord_cost --quiet)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coord_instructions.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Phases (coord_cost's marks): 1 set-up, 2 RegPort, 3 building the batches, 4 SendMsg,
# 5 listing (100 pages), 6 trickle (10 events), 7 the end.
instr() { awk '/^summary:/ { print $2 }' "$1"; }
per() { awk -v i="$1" -v n="$2" 'BEGIN { printf "%.1f", i / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

echo "# coord_instructions: callgrind, $PORTS RegPorts and $MESSAGES SendMsgs in requests of 1,000, 100 pages of 1,000, 10 events; $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-10s %14s %14s %16s %18s\n' watches "instr/port" "instr/msg" "instr/page" "instr/event"
declare -A REG SEND
for v in $VARIANTS; do
    out=$WORK/$v.callgrind
    valgrind --tool=callgrind --dump-before='*phase_mark*' --callgrind-out-file="$out" \
        "$BIN" "$v" "$PORTS" "$MESSAGES" >"$WORK/$v.log" 2>&1 || {
        tail -n 20 "$WORK/$v.log" >&2
        exit 1
    }
    REG[$v]=$(per "$(instr "$out.2")" "$PORTS")
    SEND[$v]=$(per "$(instr "$out.4")" "$(( MESSAGES / 1000 * 1000 ))")
    page=$(per "$(instr "$out.5")" 100)
    event=$(per "$(instr "$out.6")" 10)
    printf '%-10s %14s %14s %16s %18s\n' "$v" "${REG[$v]}" "${SEND[$v]}" "$page" "$event"
    if [[ -n ${KEEP_CALLGRIND:-} ]]; then
        mkdir -p "$KEEP_CALLGRIND"
        for p in 2 4 5 6; do cp "$out.$p" "$KEEP_CALLGRIND/$v-$p.callgrind"; done
    fi
done
if [[ -n ${REG[none]:-} ]]; then
    for v in $VARIANTS; do
        [[ $v == none ]] && continue
        echo "$v/none: RegPort $(ratio "${REG[$v]}" "${REG[none]}")x per port, SendMsg $(ratio "${SEND[$v]}" "${SEND[none]}")x per message"
    done
fi
