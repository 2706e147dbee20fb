#!/usr/bin/env bash
# User-space instructions per RegPort port and per SendMsg message of the reaktor's port
# switch, alone and as the master of a one-member [cluster] (issue 14: on within 5% of off),
# counted by callgrind: repeatable on a loaded machine, unlike CPU time.
#
# For each scenario and variant the reaktor (examples/bench-switch.toml; "on" adds
# benches/lib.sh one_member_cluster) runs under `valgrind --tool=callgrind
# --separate-threads=yes` pinned to $SERVER_CPU; switch-load (pinned to $LOAD_CPU) first warms
# it up (connections, first-touch of the stream buffers, a first table), then the counters
# are zeroed, exactly $PORTS ports (RegPort, fresh 16-byte names, $NODES nodes x $DEPTH
# batches of $BATCH in flight) or $MESSAGES messages (SendMsg, one sender, batches of
# $MSG_BATCH 64-byte bodies to one receiving node) are sent, and the counters are dumped.
# Each thread's instructions are divided by the operations: the switch core's thread is the
# per-request path; the election thread (raft) and the cluster kind's thread do time-driven
# work, so their figure is also printed per second of the window (under callgrind a window
# lasts ~50x longer than natively, so their per-operation share here is ~50x too high).
#
# Why one member: the master's per-request path (the switch thread reading the published
# Mastership, the lease check, the stamp) is the same code whatever the number of members;
# only the election thread's traffic grows with members, and it is reported per second.
# Under callgrind the member runs with slow clocks (CLUSTER_TICK_MS=50, CLUSTER_HEARTBEAT_MS=
# 200, CLUSTER_ELECTION_TIMEOUT_MS=1500): valgrind runs one thread at a time in slices of up
# to ~100 ms, so with the example's clocks (lease 142 ms) a parked election thread can miss
# its lease while the switch thread holds valgrind's lock. The switch thread's path does not
# depend on the clocks (one lease deadline compared per reply either way).
#
# Then (NATIVE=1, default) the election's time-driven cost without valgrind, with the
# example cluster's clocks: each variant idle for IDLE_S=5 seconds, and registering
# NATIVE_PORTS=1000000 ports, natively; every thread's cpu time from
# /proc/PID/task/TID/schedstat (exact, unlike the clock-tick sampling of /proc/PID/stat,
# which a thread that runs in short bursts between timer ticks can escape): ms per second
# idle, wake-ups per second, and ns per port under load.
#
# Environment: SCENARIOS="regport sendmsg" VARIANTS="off on" PORTS=100000 MESSAGES=200000
#   WARM_PORTS=20000 WARM_MESSAGES=20000 NODES=4 BATCH=1000 DEPTH=8 MSG_BATCH=1000
#   WINDOW=65536 ROUNDS=3 (off and on interleaved; the medians are compared) SERVER_CPU=0 LOAD_CPU=1 SWITCH_PORT=8096 CLUSTER_PEER_PORT=7196
#   REAKTOR_BIN SKIP_BUILD=1 KEEP_CALLGRIND=DIR (keeps the profiles of the switch, raft and
#   cluster threads as DIR/<scenario>-<variant>-<thread>-<round>.callgrind, for callgrind_annotate)
#   CLUSTER_TICK_MS=50 CLUSTER_HEARTBEAT_MS=200 CLUSTER_ELECTION_TIMEOUT_MS=1500 (under
#   callgrind) NATIVE=1 IDLE_S=5 NATIVE_PORTS=1000000
# Prerequisites: valgrind, cargo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=switch_instructions
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
command -v valgrind >/dev/null || { log "valgrind is required (apt-get install valgrind)"; exit 1; }
SCENARIOS=${SCENARIOS:-regport sendmsg}
VARIANTS=${VARIANTS:-off on}
PORTS=${PORTS:-100000}
MESSAGES=${MESSAGES:-200000}
WARM_PORTS=${WARM_PORTS:-20000}
WARM_MESSAGES=${WARM_MESSAGES:-20000}
ROUNDS=${ROUNDS:-3}
NATIVE=${NATIVE:-1}
IDLE_S=${IDLE_S:-5}
NATIVE_PORTS=${NATIVE_PORTS:-1000000}
NODES=${NODES:-4}
BATCH=${BATCH:-1000}
DEPTH=${DEPTH:-8}
MSG_BATCH=${MSG_BATCH:-1000}
WINDOW=${WINDOW:-65536}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SWITCH_PORT=${SWITCH_PORT:-8096}
CLUSTER_PEER_PORT=${CLUSTER_PEER_PORT:-7196}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
LOAD_DIR=$ROOT/benches/peers/switch-load
LOAD_BIN=$LOAD_DIR/target/release/switch-load
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switch_instructions.XXXXXX")
LOG_DIR=$WORK
if [[ -d /dev/shm ]]; then STREAM_DIR=/dev/shm/switch_instructions.$$; else STREAM_DIR=$WORK/streams; fi
mkdir -p "$STREAM_DIR"
trap 'stop_servers; rm -rf "$WORK" "$STREAM_DIR"' EXIT

if [[ -z ${SKIP_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p reaktor --quiet)
    (cd "$LOAD_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
fi
[[ -x $REAKTOR_BIN ]] || { log "no reaktor binary at $REAKTOR_BIN"; exit 1; }
[[ -x $LOAD_BIN ]] || { log "no switch-load binary at $LOAD_BIN"; exit 1; }
ulimit -n 65536 2>/dev/null || true

# topology VARIANT [TICK HEARTBEAT ELECTION_TIMEOUT]: the benchmark topology, with a
# one-member [cluster] for "on" (the example's clocks unless given).
topology() {
    local out=$WORK/$1.toml
    sed "s/^address = \"127.0.0.1:[0-9]*\"/address = \"127.0.0.1:$SWITCH_PORT\"/" \
        "$ROOT/examples/bench-switch.toml" >"$out"
    if [[ $1 == on ]]; then
        rm -rf "$WORK/raft"
        CLUSTER_TICK_MS=${2:-5} CLUSTER_HEARTBEAT_MS=${3:-20} CLUSTER_ELECTION_TIMEOUT_MS=${4:-150} \
            one_member_cluster "$WORK/raft" "$SWITCH_PORT" "$CLUSTER_PEER_PORT" >>"$out"
    fi
    echo "$out"
}

# wait_ready VARIANT TRIES: the listener, and for "on" the member serving as master.
wait_ready() {
    if ! wait_port 127.0.0.1 "$SWITCH_PORT" 120; then
        log "reaktor ($1) did not listen; log tail:"
        tail -n 20 "$LOG_DIR/reaktor-$1.log" >&2
        exit 1
    fi
    [[ $1 == on ]] || return 0
    local i
    for ((i = 0; i < $2; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SWITCH_PORT/readyz") == 200 ]] && return 0
        sleep 0.1
    done
    log "the one-member cluster did not become master"
    exit 1
}

load() { # load ARGS...: switch-load on LOAD_CPU against the server; sets OUT
    OUT=$(taskset -c "$LOAD_CPU" "$LOAD_BIN" "$@" --port "$SWITCH_PORT" --pid "$SRV_PID")
}

# thread_kind FILE: which thread a per-thread profile is, by the functions it ran.
thread_kind() {
    if grep -q 'SwitchNukleus' "$1"; then echo switch
    elif grep -q 'RaftNukleus' "$1"; then echo raft
    elif grep -q 'cluster_status' "$1"; then echo cluster
    else echo other
    fi
}

RESULTS=$WORK/results # scenario variant thread instructions ops seconds round
: >"$RESULTS"

# count SCENARIO VARIANT ROUND
count() {
    local scenario=$1 variant=$2 round=$3 out=$WORK/$1-$2.cg toml
    toml=$(topology "$variant" "${CLUSTER_TICK_MS:-50}" "${CLUSTER_HEARTBEAT_MS:-200}" \
        "${CLUSTER_ELECTION_TIMEOUT_MS:-1500}")
    start_server "reaktor-$variant" "$SERVER_CPU" valgrind --tool=callgrind --separate-threads=yes \
        --fair-sched=yes --callgrind-out-file="$out" "$REAKTOR_BIN" run --topology "$toml" \
        --stream-dir "$STREAM_DIR"
    SRV_PID=$STARTED_PID
    wait_ready "$variant" 600
    local ops
    case $scenario in
    regport)
        load regport --proto ws --nodes "$NODES" --batch "$BATCH" --depth "$DEPTH" --total "$WARM_PORTS" --tag w0
        ops=$PORTS
        ;;
    sendmsg)
        load sendmsg --proto ws --batch "$MSG_BATCH" --window "$WINDOW" --depth 8 --total "$WARM_MESSAGES"
        ops=$MESSAGES
        ;;
    esac
    callgrind_control -z "$SRV_PID" >/dev/null
    local t0 t1
    t0=$(date +%s%N)
    case $scenario in
    regport) load regport --proto ws --nodes "$NODES" --batch "$BATCH" --depth "$DEPTH" --total "$PORTS" --tag m0 ;;
    sendmsg) load sendmsg --proto ws --batch "$MSG_BATCH" --window "$WINDOW" --depth 8 --total "$MESSAGES" ;;
    esac
    t1=$(date +%s%N)
    callgrind_control -d "$SRV_PID" >/dev/null
    log "  $scenario $variant: $OUT"
    if [[ $variant == on ]] && grep -q 'stopped serving' "$LOG_DIR/reaktor-$variant.log"; then
        log "the member lost its lease under valgrind during the run: the count is not valid"
        exit 1
    fi
    stop_servers
    local f kind n
    # The dump taken by -d: <out>.1-NN per thread (the dump at exit is <out>-NN).
    for f in "$out".1-*; do
        kind=$(thread_kind "$f")
        n=$(awk '/^summary:/ { print $2 }' "$f")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$variant" "$kind" "${n:-0}" "$ops" \
            "$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }')" "$round" >>"$RESULTS"
        if [[ -n ${KEEP_CALLGRIND:-} && $kind != other ]]; then
            mkdir -p "$KEEP_CALLGRIND"
            cp "$f" "$KEEP_CALLGRIND/$scenario-$variant-$kind-$round.callgrind"
        fi
    done
    rm -f "$out"*
}

# threads PID: "name tid runtime_ns wakeups" per thread (/proc/PID/task/TID/schedstat).
threads() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "$(tr ' ' _ <"$t/comm")" "${t##*/}" "$(awk '{ print $1, $3 }' "$t/schedstat")"
    done
}

# native VARIANT: per-thread cpu idle and under RegPort, without valgrind (example clocks).
native() {
    local variant=$1 toml a b
    toml=$(topology "$variant")
    start_server "reaktor-$variant" "$SERVER_CPU" "$REAKTOR_BIN" run --topology "$toml" --stream-dir "$STREAM_DIR"
    SRV_PID=$STARTED_PID
    wait_ready "$variant" 100
    sleep 1
    a=$(threads "$SRV_PID")
    sleep "$IDLE_S"
    b=$(threads "$SRV_PID")
    join -j 2 <(sort -k2 <<<"$a") <(sort -k2 <<<"$b") | awk -v v="$variant" -v s="$IDLE_S" '
        # join prints: tid, name runtime wake-ups (before), name runtime wake-ups (after)
        { printf "native idle    %-4s %-16s %8.2f ms/s %7.0f wake-ups/s\n", v, $2, ($6 - $3) / s / 1e6, ($7 - $4) / s
          total += $6 - $3 }
        END { printf "native idle    %-4s %-16s %8.2f ms/s\n", v, "(all threads)", total / s / 1e6 }'
    a=$(threads "$SRV_PID")
    load regport --proto ws --nodes "$NODES" --batch "$BATCH" --depth "$DEPTH" --total "$NATIVE_PORTS" --tag n0
    b=$(threads "$SRV_PID")
    join -j 2 <(sort -k2 <<<"$a") <(sort -k2 <<<"$b") | awk -v v="$variant" -v n="$NATIVE_PORTS" -v out="$OUT" '
        { printf "native regport %-4s %-16s %8.1f ns/port %7.0f wake-ups\n", v, $2, ($6 - $3) / n, $7 - $4
          total += $6 - $3 }
        END { printf "native regport %-4s %-16s %8.1f ns/port  (%s)\n", v, "(all threads)", total / n, out }'
    stop_servers
}

echo "# switch_instructions: callgrind, reaktor $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo -), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# regport: $PORTS ports, $NODES nodes x $DEPTH x $BATCH; sendmsg: $MESSAGES messages, batches of $MSG_BATCH"
for ((round = 1; round <= ROUNDS; round++)); do
    for scenario in $SCENARIOS; do
        order=$VARIANTS
        ((round % 2)) || order=$(tr ' ' '\n' <<<"$VARIANTS" | tac | tr '\n' ' ')
        for variant in $order; do
            count "$scenario" "$variant" "$round"
        done
    done
done

printf '%-8s %-4s %-5s %-8s %14s %9s %8s %10s %12s\n' scenario var round thread instructions ops window_s instr/op instr/s
awk -F'\t' '$4 > 0 { printf "%-8s %-4s %-5s %-8s %14d %9d %8.2f %10.1f %12.0f\n", $1, $2, $7, $3, $4, $5, $6, $4 / $5, $4 / $6 }' \
    "$RESULTS" | sort -k1,1 -k2,2r -k4,4 -k3,3n
# Per scenario and variant, the median over the rounds of the switch thread's instructions
# per operation (the per-request path) and of every thread's together; then on/off.
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for scenario in $SCENARIOS; do
    declare -A med=()
    for variant in $VARIANTS; do
        med[$variant-switch]=$(awk -F'\t' -v s="$scenario" -v v="$variant" '$1 == s && $2 == v && $3 == "switch" { print $4 / $5 }' "$RESULTS" | median)
        med[$variant-all]=$(awk -F'\t' -v s="$scenario" -v v="$variant" '$1 == s && $2 == v { a[$7] += $4 / $5 } END { for (r in a) print a[r] }' "$RESULTS" | median)
        med[$variant-range]=$(awk -F'\t' -v s="$scenario" -v v="$variant" '$1 == s && $2 == v && $3 == "switch" { print $4 / $5 }' "$RESULTS" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }')
    done
    if [[ -n ${med[off-switch]:-} && -n ${med[on-switch]:-} ]]; then
        awk -v s="$scenario" -v a="${med[off-switch]}" -v b="${med[on-switch]}" -v ra="${med[off-range]}" -v rb="${med[on-range]}" \
            -v c="${med[off-all]}" -v d="${med[on-all]}" 'BEGIN {
            printf "%s: switch thread, median instructions/op off %.1f (%s) on %.1f (%s): on/off %.3f; all threads %.1f -> %.1f: %.3f\n",
                s, a, ra, b, rb, b / a, c, d, d / c }'
    fi
    unset med
done

if [[ $NATIVE == 1 ]]; then
    echo "# native (no valgrind), example clocks: idle ${IDLE_S}s, then $NATIVE_PORTS ports registered"
    for variant in $VARIANTS; do
        native "$variant"
    done
fi
