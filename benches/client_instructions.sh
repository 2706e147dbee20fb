#!/usr/bin/env bash
# User-space instructions per SendMsg message of the load clients themselves (issue 16): the
# Rust client (clients/rust, bench `client_load`) against the raw protocol
# (benches/peers/switch-load), counted by callgrind, so that a client change can be judged on
# a loaded machine where CPU time moves by 20 % from run to run.
#
# The reaktor (examples/bench-switch.toml) runs natively, pinned to $SERVER_CPU; each client
# runs under `valgrind --tool=callgrind` pinned to $LOAD_CPU, once with $SMALL and once with
# $LARGE messages (`sendmsg --total N`: one sender, one receiving node in the same process,
# batches of $MSG_BATCH 64-byte bodies, the receiver checks order). The figure is the slope
# (instructions(LARGE) - instructions(SMALL)) / (LARGE - SMALL): connecting, the runtime's
# start and the exit cancel out. Everything the client process runs in user space is counted
# (the library, tokio, tungstenite, the allocator, the benchmark's own side), not the kernel.
# Under callgrind the client is ~50x slower than the switch, so it finds fuller push batches
# than at full speed: per-batch costs weigh a little less here than in benches/clients.sh.
#
# Environment: CLIENTS="raw rust" SMALL=20000 LARGE=220000 MSG_BATCH=1000 DEPTH=8
#   RECEIVE=batch (the Rust client's receiver takes a batch of pushes at a time and reads them
#   in place, Events::next_batch; RECEIVE=event: one Event::Push at a time, Events::next)
#   WINDOW=65536 SERVER_CPU=0 LOAD_CPU=1 SWITCH_PORT=8096 REAKTOR_BIN SKIP_BUILD=1
#   KEEP_CALLGRIND=DIR (keeps each run's profile as DIR/<client>-<messages>.callgrind)
# Usage: flock /work/bench.lock bash benches/client_instructions.sh
# Prerequisites: valgrind, cargo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NAME=client_instructions
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
command -v valgrind >/dev/null || { log "valgrind is required (apt-get install valgrind)"; exit 1; }

CLIENTS=${CLIENTS:-raw rust}
SMALL=${SMALL:-20000}
LARGE=${LARGE:-220000}
MSG_BATCH=${MSG_BATCH:-1000}
RECEIVE=${RECEIVE:-batch}
DEPTH=${DEPTH:-8}
WINDOW=${WINDOW:-65536}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SWITCH_PORT=${SWITCH_PORT:-8096}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REAKTOR_BIN=${REAKTOR_BIN:-$TARGET/release/reaktor}
LOAD_DIR=$ROOT/benches/peers/switch-load
RAW_BIN=$LOAD_DIR/target/release/switch-load

WORK=$(mktemp -d "${TMPDIR:-/tmp}/client_instr.XXXXXX")
LOG_DIR=$WORK/logs
STREAM_DIR=$WORK/streams
mkdir -p "$LOG_DIR" "$STREAM_DIR"
cleanup() {
    stop_servers
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor, the Rust client's bench and switch-load (release)"
    (cd "$ROOT" && cargo build --release -p reaktor --quiet && cargo bench --no-run -p reaktor-client --bench client_load --quiet)
    (cd "$LOAD_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
fi
RUST_BIN=$(ls -t "$TARGET"/release/deps/client_load-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
[[ -x $REAKTOR_BIN && -x $RAW_BIN && -x ${RUST_BIN:-/nonexistent} ]] || { log "missing a binary (reaktor $REAKTOR_BIN, switch-load $RAW_BIN, client_load $RUST_BIN)"; exit 1; }

sed "s/^address = \"127.0.0.1:[0-9]*\"/address = \"127.0.0.1:$SWITCH_PORT\"/" \
    "$ROOT/examples/bench-switch.toml" >"$WORK/bench-switch.toml"

# instructions CLIENT MESSAGES: the client's total user-space instructions for one run.
instructions() {
    local client=$1 n=$2 out=$WORK/$1-$2.callgrind
    local -a cmd
    case $client in
    raw) cmd=("$RAW_BIN" sendmsg --proto ws) ;;
    rust) cmd=("$RUST_BIN" sendmsg --receive "$RECEIVE") ;;
    *) log "unknown client $client"; exit 1 ;;
    esac
    if port_busy 127.0.0.1 "$SWITCH_PORT"; then log "port $SWITCH_PORT in use: set SWITCH_PORT"; exit 1; fi
    start_server reaktor "$SERVER_CPU" "$REAKTOR_BIN" run --topology "$WORK/bench-switch.toml" --stream-dir "$STREAM_DIR"
    local pid=$STARTED_PID
    wait_port 127.0.0.1 "$SWITCH_PORT" 10 || { log "reaktor did not start"; cat "$LOG_DIR/reaktor.log" >&2; exit 1; }
    taskset -c "$LOAD_CPU" valgrind --tool=callgrind --callgrind-out-file="$out" \
        "${cmd[@]}" --batch "$MSG_BATCH" --depth "$DEPTH" --window "$WINDOW" --total "$n" \
        --port "$SWITCH_PORT" --pid "$pid" >"$LOG_DIR/$client-$n.out" 2>"$LOG_DIR/$client-$n.valgrind"
    stop_servers
    [[ -n ${KEEP_CALLGRIND:-} ]] && { mkdir -p "$KEEP_CALLGRIND"; cp "$out" "$KEEP_CALLGRIND/"; }
    sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out"
}

log "client instructions: CLIENTS=\"$CLIENTS\" RECEIVE=$RECEIVE SMALL=$SMALL LARGE=$LARGE MSG_BATCH=$MSG_BATCH; $(uptime)"
printf '%-6s %16s %16s %14s\n' client "instr($SMALL)" "instr($LARGE)" instr/msg
declare -A PER_MSG
for c in $CLIENTS; do
    small=$(instructions "$c" "$SMALL")
    large=$(instructions "$c" "$LARGE")
    PER_MSG[$c]=$(awk -v s="$small" -v l="$large" -v a="$SMALL" -v b="$LARGE" 'BEGIN { printf "%.0f", (l - s) / (b - a) }')
    printf '%-6s %16s %16s %14s\n' "$c" "$small" "$large" "${PER_MSG[$c]}"
done
if [[ -n ${PER_MSG[raw]:-} && -n ${PER_MSG[rust]:-} ]]; then
    awk -v r="${PER_MSG[rust]}" -v w="${PER_MSG[raw]}" 'BEGIN { printf "rust / raw instructions per message: %.2f\n", r / w }'
fi
