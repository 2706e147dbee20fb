#!/usr/bin/env bash
# What the operator console costs the reaktor (issue 17), decided by instruction counts:
# callgrind counts are repeatable on this shared machine, where wall-clock throughput of a
# round spreads ±30-50% (benches/console.sh).
#
# A console viewer costs work per tick (one per [console] interval_ms), not per request, so a
# per-request difference measured under callgrind would be distorted: the server runs ~50x
# slower there and each tick would be spread over ~50x fewer requests. The script therefore
# measures the two sides apart and puts them together at the native rate:
#
#  1. loaded (callgrind): the server under http-load (the http figure: keep-alive GET / of
#     echo) or switch-load (the switch figure: sendmsg over WebSocket) in each mode
#       absent  no console kind placed;  none  placed, nobody watching;  open  one viewer
#     following /console/stream. Counters zeroed after WARMUP s, dumped DURATION s later.
#     Gives the whole process's instructions per request (or message) and, from the
#     profile's call graph (benches/callgrind_entries.py), the instructions spent in the
#     console nukleus's methods (all its work on a core), in its poll past rest and in its
#     hub (the snapshot and encoding of a tick), with the number of calls and the ticks the
#     viewer received.
#  2. idle (callgrind): the same server with no load, none vs open, for IDLE s: the whole
#     process's extra instructions per tick, which include what the console's code does not
#     own (http and tcp carrying the tick's bytes, the core waking up for the tick's deadline).
#  3. native: http-load and switch-load without valgrind, nobody watching, NATIVE_ROUNDS
#     rounds: requests/s and messages/s, and the core's duty cycles per second (the console
#     instance's poll count in the stats file).
#
# Put together (benches/console_cost.py): the console costs its core per duty cycle (its poll
# at rest, with and without a viewer) and per tick (its poll past rest: the snapshot, the
# encoding, the DATA frames; plus, from the idle runs, what the tick costs outside its code).
# One viewer's share of the server's work = (per tick x ticks/s + a viewer's extra per duty
# cycle x duty cycles/s) / (instructions per request x requests/s), at the native rates; the
# predicted open/none ratio of a figure is 1 / (1 + share). Nobody watching vs no console:
# (the poll at rest + the core's clock read after it) x duty cycles/s over the same. Ranges
# take every repetition (REPEAT) and every native round; a native round on a busy machine
# (fewer requests/s, more idle duty cycles) gives the larger share, so the ranges' tops are
# upper bounds. Instructions are not time (a tick touches cold memory once a second), and
# kernel work is not counted: a tick's is about one write(2) of its bytes.
#
# Usage: scripts/install-bench-deps.sh && flock /work/bench.lock benches/console_instructions.sh
#   env: FIGURES="http switch" MODES="absent none open" REPEAT=2 WARMUP=3 DURATION=6 IDLE=20
#        NATIVE_ROUNDS=3 NATIVE_DURATION=5 CONNS=64 INTERVAL_MS=1000 SERVER_CPU=0 LOAD_CPU=1
#        PORT=8098 SKIP_BUILD=1 REAKTOR_BIN=... KEEP_CALLGRIND=DIR (keep the profiles)
# Prerequisites: valgrind (callgrind_control), curl, cargo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NAME=console_instructions
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
# shellcheck source=benches/console_topology.sh
. "$ROOT/benches/console_topology.sh"
command -v valgrind >/dev/null || { log "valgrind is required (scripts/install-bench-deps.sh)"; exit 1; }

FIGURES=${FIGURES:-http switch}
MODES=${MODES:-absent none open}
REPEAT=${REPEAT:-2}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-6}
IDLE=${IDLE:-20}
NATIVE_ROUNDS=${NATIVE_ROUNDS:-3}
NATIVE_DURATION=${NATIVE_DURATION:-5}
CONNS=${CONNS:-64}
INTERVAL_MS=${INTERVAL_MS:-1000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
export WRK_CPU=$LOAD_CPU
PORT=${PORT:-8098}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
SWITCH_LOAD_DIR=$ROOT/benches/peers/switch-load
SWITCH_LOAD_BIN=${SWITCH_LOAD_BIN:-$SWITCH_LOAD_DIR/target/release/switch-load}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/console_instructions.XXXXXX")
LOG_DIR=$WORK/logs
STREAM_DIR=$WORK/streams
mkdir -p "$LOG_DIR" "$STREAM_DIR"
VIEWER_PID=
LOAD_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $VIEWER_PID ]] && kill "$VIEWER_PID" 2>/dev/null || true
    [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null || true
    stop_servers
    [[ -n ${KEEP_TMP:-} ]] && log "kept $WORK" || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_http_load
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (release) and switch-load"
    (cd "$ROOT" && cargo build --release -q -p reaktor)
    cargo build --release -q --manifest-path "$SWITCH_LOAD_DIR/Cargo.toml" --target-dir "$SWITCH_LOAD_DIR/target"
fi
[[ -x $REAKTOR_BIN && -x $SWITCH_LOAD_BIN && -x $HTTP_LOAD_BIN ]] || {
    log "missing $REAKTOR_BIN, $SWITCH_LOAD_BIN or $HTTP_LOAD_BIN"
    exit 1
}
ulimit -n 65536 2>/dev/null || true
console_topologies "$WORK" "$PORT" "$INTERVAL_MS"
ROWS=$WORK/rows

# start MODE [valgrind args...]: the reaktor of MODE on SERVER_CPU (under the given command
# prefix, if any); sets SERVER_PID.
start() {
    local mode=$1 topology=$WORK/console.toml
    shift
    [[ $mode == absent ]] && topology=$WORK/absent.toml
    if port_busy 127.0.0.1 "$PORT"; then log "port $PORT is in use: set PORT"; exit 1; fi
    rm -f "$STREAM_DIR"/*
    start_server "reaktor-$mode" "$SERVER_CPU" "$@" "$REAKTOR_BIN" run --topology "$topology" --stream-dir "$STREAM_DIR"
    SERVER_PID=$STARTED_PID
    wait_port 127.0.0.1 "$PORT" 90 || { log "reaktor did not start:"; tail -n 20 "$LOG_DIR/reaktor-$mode.log" >&2; exit 1; }
}

ticks() {
    if [[ -n $VIEWER_PID ]]; then grep -c '^event: tick' "$WORK/viewer.out" || true; else echo 0; fi
}

# open_viewer: one viewer of /console/stream (curl, on the load's cpu), once its hello came.
open_viewer() {
    : >"$WORK/viewer.out"
    taskset -c "$LOAD_CPU" curl -sN -H 'Authorization: Bearer bench-admin' \
        "http://127.0.0.1:$PORT/console/stream" >"$WORK/viewer.out" &
    VIEWER_PID=$!
    local i
    for ((i = 0; i < 600; i++)); do
        grep -q '^event: hello' "$WORK/viewer.out" && return 0
        sleep 0.1
    done
    log "the viewer got no hello from /console/stream"
    exit 1
}

close_viewer() {
    [[ -z $VIEWER_PID ]] && return 0
    kill "$VIEWER_PID" 2>/dev/null || true
    wait "$VIEWER_PID" 2>/dev/null || true
    VIEWER_PID=
}

# start_load FIGURE WARMUP DURATION: the figure's load generator in the background.
start_load() {
    local figure=$1 warmup=$2 duration=$3
    if [[ $figure == http ]]; then
        taskset -c "$LOAD_CPU" "$HTTP_LOAD_BIN" --addr "127.0.0.1:$PORT" --conns "$CONNS" --depth 1 \
            --duration "$duration" --warmup "$warmup" --server-pid "$SERVER_PID" >"$WORK/load.out" 2>&1 &
    else
        taskset -c "$LOAD_CPU" "$SWITCH_LOAD_BIN" sendmsg --proto ws --batch 1000 --window 65536 --depth 8 \
            --duration "$duration" --warmup "$warmup" --port "$PORT" --pid "$SERVER_PID" --token bench \
            >"$WORK/load.out" 2>&1 &
    fi
    LOAD_PID=$!
}

# wait_load FIGURE: waits for the load generator; sets DONE (requests or messages in its
# window) and RATE (per second).
wait_load() {
    local figure=$1 rc=0 line
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=
    if [[ $figure == http ]]; then
        line=$(grep '^http-load ' "$WORK/load.out" || true)
        DONE=$(_kv requests "$line")
        RATE=$(_kv rps "$line")
    else
        line=$(grep 'mode=sendmsg' "$WORK/load.out" || true)
        DONE=$(_kv msgs "$line")
        RATE=$(_kv msgs_per_s "$line")
    fi
    if ((rc != 0)) || [[ -z $DONE || $DONE == 0 ]]; then
        log "the $figure load failed ($rc):"
        cat "$WORK/load.out" >&2
        exit 1
    fi
}

# profile_window PID SECONDS: zero the counters, wait, dump (and count the viewer's ticks).
profile_window() {
    local pid=$1 seconds=$2
    callgrind_control -z "$pid" >/dev/null
    TICKS0=$(ticks)
    sleep "$seconds"
    callgrind_control -d "$pid" >/dev/null
    TICKS1=$(ticks)
}

# The dump taken by callgrind_control -d (the largest of OUT.*; OUT itself is the exit's).
dumped() {
    local out=$1 f best=0 keep=""
    for f in "$out".*; do
        [[ -e $f ]] || continue
        local n
        n=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
        if ((n > best)); then best=$n keep=$f; fi
    done
    echo "$keep"
}

# analyse PROFILE: "total console_ir console_calls hub_ir hub_calls clock_ir clock_calls
# work_ir work_calls" of one profile. console: the calls of the console nukleus's methods by
# the runtime (everything the console does on a core happens inside them); hub: the calls of
# the hub's methods (a tick's snapshot and encoding, a viewer's admission and hello); clock:
# clock_gettime, which the core loop calls once per nukleus per duty cycle; work: the
# console's poll past its look at rest (frames arrived, a tick due, bytes to send).
analyse() {
    python3 "$ROOT/benches/callgrind_entries.py" "$1" \
        "console=ConsoleNukleus as streams::nukleus::Nukleus>::" \
        hub=reaktor::console::hub::Hub:: clock=clock_gettime work=ConsoleNukleus::poll_work |
        awk '/^total/ { split($2, a, "="); t = a[2] }
             / entries=/ { split($2, e, "="); split($3, i, "="); c[$1] = i[2] " " e[2] }
             END { print t, c["console"], c["hub"], c["clock"], c["work"] }'
}

keep_profile() { # PROFILE NAME
    [[ -z ${KEEP_CALLGRIND:-} ]] && return 0
    mkdir -p "$KEEP_CALLGRIND"
    cp "$1" "$KEEP_CALLGRIND/$2.callgrind"
}

VALGRIND=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)

loaded() { # FIGURE MODE REP
    local figure=$1 mode=$2 rep=$3 out=$WORK/cg.$1.$2.$3
    start "$mode" "${VALGRIND[@]}" --callgrind-out-file="$out"
    [[ $mode == open ]] && open_viewer
    TICKS0=0 TICKS1=0
    start_load "$figure" "$WARMUP" "$DURATION"
    sleep "$WARMUP"
    profile_window "$SERVER_PID" "$DURATION"
    wait_load "$figure"
    close_viewer
    stop_servers
    local profile
    profile=$(dumped "$out")
    [[ -n $profile ]] || { log "no callgrind dump for $figure $mode"; exit 1; }
    local counts
    counts=$(analyse "$profile")
    keep_profile "$profile" "$figure-$mode-$rep"
    rm -f "$out"*
    printf 'loaded\t%s\t%s\t%s\t%s\t%s\t%s\n' "$figure" "$mode" "$rep" "$DONE" "$((TICKS1 - TICKS0))" "${counts// /	}" >>"$ROWS"
    log "loaded $figure $mode #$rep: $DONE in the window; total console_ir console_calls hub_ir hub_calls = $counts; ticks $((TICKS1 - TICKS0))"
}

idle() { # MODE REP
    local mode=$1 rep=$2 out=$WORK/cg.idle.$1.$2
    start "$mode" "${VALGRIND[@]}" --callgrind-out-file="$out"
    [[ $mode == open ]] && open_viewer
    TICKS0=0 TICKS1=0
    sleep 2
    profile_window "$SERVER_PID" "$IDLE"
    close_viewer
    stop_servers
    local profile counts
    profile=$(dumped "$out")
    [[ -n $profile ]] || { log "no callgrind dump for idle $mode"; exit 1; }
    counts=$(analyse "$profile")
    keep_profile "$profile" "idle-$mode-$rep"
    rm -f "$out"*
    printf 'idle\t-\t%s\t%s\t0\t%s\t%s\n' "$mode" "$rep" "$((TICKS1 - TICKS0))" "${counts// /	}" >>"$ROWS"
    log "idle $mode #$rep: total console_ir console_calls hub_ir hub_calls = $counts; ticks $((TICKS1 - TICKS0))"
}

# console_polls: "uptime_nanos polls" of the console instance, from the stats file.
console_polls() {
    awk '/^uptime_nanos/ { u = $2 } /^instance / && $3 == "console" { p += $6 } END { print u, p }' "$STREAM_DIR/reaktor-$SERVER_PID/stats"
}

native() { # ROUND
    local round=$1 figure before after
    start none
    sleep 1
    for figure in $FIGURES; do
        before=$(console_polls)
        start_load "$figure" 1 "$NATIVE_DURATION"
        wait_load "$figure"
        sleep 0.6 # the stats file is rewritten twice a second
        after=$(console_polls)
        local cycles
        cycles=$(awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " ");
            s = (y[1] - x[1]) / 1e9; print (s > 0 ? (y[2] - x[2]) / s : 0) }')
        printf 'native\t%s\tnone\t%s\t%s\t-\t%s\n' "$figure" "$round" "$RATE" "$cycles" >>"$ROWS" # rate, cycles/s
        log "native $figure #$round: $RATE per second, $cycles duty cycles per second"
    done
    stop_servers
}

log "console instructions: figures [$FIGURES], modes [$MODES] x $REPEAT under callgrind ($WARMUP s warm-up, $DURATION s window), idle $IDLE s, $NATIVE_ROUNDS native rounds; server on cpu $SERVER_CPU, load on cpu $LOAD_CPU; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for ((rep = 1; rep <= REPEAT; rep++)); do
    for figure in $FIGURES; do
        for mode in $MODES; do
            loaded "$figure" "$mode" "$rep"
        done
    done
    idle none "$rep"
    idle open "$rep"
done
for ((round = 1; round <= NATIVE_ROUNDS; round++)); do
    native "$round"
done
[[ -n ${ROWS_OUT:-} ]] && cp "$ROWS" "$ROWS_OUT"
python3 "$ROOT/benches/console_cost.py" "$ROWS" "$INTERVAL_MS"
