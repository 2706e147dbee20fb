#!/usr/bin/env bash
# Instructions per RegPort and per SendMsg of the switch as one instance and split over N
# instances (fission, issue 18), counted by callgrind: repeatable on a loaded machine, unlike
# the wall-clock `cluster_cost`, whose ratio moves by 30 % from one run to the next here.
#
# It runs `nuklei/switch/examples/fission_cost` (the engines the switch nukleus drives, fed the
# same WebSocket RegPort and SendMsg requests as JSON text; the cluster's mesh records written
# into rings, read and decoded by the switch nukleus's own mesh functions) under callgrind once
# per configuration. The example marks its phases, so callgrind dumps one profile per phase: the
# RegPort phase and the SendMsg phase are counted alone, without start-up and set-up. The
# figures are the total over every instance (one thread does all the work): the CPU price of
# the split. Not counted: the front nuklei (tcp, http, ws) and idle polling, the same per
# request with one or N instances.
#
# Usage: bash benches/fission_instructions.sh
# Environment: PORTS=100000 MESSAGES=100000 INSTANCES="1 2 4" SKIP_BUILD=1
#   KEEP_CALLGRIND=DIR keeps each phase's profile as DIR/<config>-<phase>.callgrind (for
#   callgrind_annotate --inclusive=yes, or a per-function self-cost listing).
# Prerequisites: valgrind, cargo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
PORTS=${PORTS:-100000}
MESSAGES=${MESSAGES:-100000}
INSTANCES=${INSTANCES:-1 2 4}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/fission_cost
if [[ -z ${SKIP_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p nukleus-switch --example fission_cost --quiet)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fission_instructions.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# count CONFIG: sets REG and SEND to instructions per RegPort and per SendMsg of CONFIG
# (0: one instance, the SingleEngine; N: N cluster instances).
count() {
    local out=$WORK/$1.callgrind
    valgrind --tool=callgrind --dump-before='*phase_mark*' --callgrind-out-file="$out" \
        "$BIN" "$1" "$PORTS" "$MESSAGES" >"$WORK/$1.log" 2>&1 || {
        tail -n 20 "$WORK/$1.log" >&2
        return 1
    }
    # Parts: 1 set-up, 2 RegPort, 3 building the SendMsg requests, 4 SendMsg, 5 the end.
    local reg send
    reg=$(awk '/^summary:/ { print $2 }' "$out.2")
    send=$(awk '/^summary:/ { print $2 }' "$out.4")
    REG=$(awk -v i="$reg" -v n="$PORTS" 'BEGIN { printf "%.0f", i / n }')
    SEND=$(awk -v i="$send" -v n="$MESSAGES" 'BEGIN { printf "%.0f", i / (int(n / 1000) * 1000) }')
    if [[ -n ${KEEP_CALLGRIND:-} ]]; then
        mkdir -p "$KEEP_CALLGRIND"
        cp "$out.2" "$KEEP_CALLGRIND/$1-regport.callgrind"
        cp "$out.4" "$KEEP_CALLGRIND/$1-sendmsg.callgrind"
    fi
}

echo "# fission_instructions: callgrind, $PORTS RegPorts and $MESSAGES SendMsgs in requests of 1,000, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
count 0
REG1=$REG SEND1=$SEND
printf '%-22s RegPort %6s instructions/port         SendMsg %6s instructions/msg\n' "one instance" "$REG1" "$SEND1"
for n in $INSTANCES; do
    count "$n"
    printf '%-22s RegPort %6s instructions/port (%sx)  SendMsg %6s instructions/msg (%sx)\n' \
        "$n instance(s), total" "$REG" "$(awk -v a="$REG" -v b="$REG1" 'BEGIN { printf "%.2f", a / b }')" \
        "$SEND" "$(awk -v a="$SEND" -v b="$SEND1" 'BEGIN { printf "%.2f", a / b }')"
done
