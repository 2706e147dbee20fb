#!/usr/bin/env bash
# User-space instructions per HTTP/1.1 request of each server over real sockets (issue 18),
# counted by callgrind: repeatable on a loaded machine, unlike CPU time. Kernel work (system
# calls, TCP) is not counted: compare it with `SYSCALLS=1 benches/http_hello.sh`.
#
# Each server runs under `valgrind --tool=callgrind` pinned to $SERVER_CPU; http-load drives it
# from $WRK_CPU for WARMUP + DURATION seconds; the counters are zeroed when the warm-up ends
# and dumped when the window closes, and the instructions are divided by the responses
# http-load counted in that window. Under callgrind a server is ~50x slower, so it is always
# busy: these are the instructions of a busy server (no idle spinning, large epoll batches).
#
# Environment: SERVERS="floor reaktor hyper" SCENARIOS="keepalive pipeline" CONNS=64 DEPTH=16
#   DURATION=6 WARMUP=2 REAKTOR_BIN REAKTOR_TOPOLOGY (examples/bench.toml) SKIP_BUILD=1
#   SERVER_CPU=0 WRK_CPU=1; ports 127.0.0.1:1819x. KEEP_CALLGRIND=DIR keeps each window's
#   profile as DIR/<server>-<scenario>.callgrind (for callgrind_annotate).
# Prerequisites: valgrind, cargo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=http_instructions
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
command -v valgrind >/dev/null || { log "valgrind is required (apt-get install valgrind)"; exit 1; }
SERVERS=${SERVERS:-floor reaktor hyper}
SCENARIOS=${SCENARIOS:-keepalive pipeline}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
REAKTOR_TOPOLOGY=${REAKTOR_TOPOLOGY:-$ROOT/examples/bench.toml}
HYPER_DIR=$ROOT/benches/peers/hyper-hello
HYPER_BIN=$HYPER_DIR/target/release/hyper-hello
WORK=$(mktemp -d "${TMPDIR:-/tmp}/http_instructions.XXXXXX")
LOG_DIR=$WORK
trap 'stop_servers; rm -rf "$WORK"' EXIT

build_http_load
if [[ -z ${SKIP_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p reaktor --quiet)
    (cd "$HYPER_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
fi

# count NAME ADDR DEPTH CMD...: instructions per request of CMD under callgrind.
count() {
    local name=$1 addr=$2 depth=$3
    shift 3
    local out=$WORK/$name.callgrind
    start_server "$name" "$SERVER_CPU" valgrind --tool=callgrind --callgrind-out-file="$out" "$@"
    local pid=$STARTED_PID
    if ! wait_port "${addr%:*}" "${addr##*:}" 60; then
        log "$name did not listen on $addr under valgrind; log tail:"
        tail -n 20 "$LOG_DIR/$name.log" >&2
        stop_servers
        return 1
    fi
    local loadf=$WORK/$name.load
    taskset -c "$WRK_CPU" "$HTTP_LOAD_BIN" --addr "$addr" --conns "$CONNS" --depth "$depth" \
        --duration "$DURATION" --warmup "$WARMUP" >"$loadf" 2>&1 &
    local lp=$!
    sleep "$WARMUP"
    callgrind_control -z "$pid" >/dev/null 2>&1
    sleep "$DURATION"
    callgrind_control -d "$pid" >/dev/null 2>&1
    wait "$lp"
    stop_servers
    local requests instructions
    requests=$(_kv requests "$(grep '^http-load' "$loadf")")
    # The dump after -d is <out>.<pid>.<n> or <out>.<n>; sum the totals of the dumps taken
    # after the zeroing (the dump at exit covers only the shutdown).
    instructions=$(for f in "$out"*; do
        [[ $f == "$out" ]] && continue
        awk '/^summary:/ { print $2 }' "$f"
    done | sort -n | tail -1)
    printf '%-8s %-11s %12s instructions / %8s requests = %6.0f instructions per request\n' \
        "$name" "$SCENARIO" "$instructions" "$requests" \
        "$(awk -v i="$instructions" -v r="$requests" 'BEGIN { print (r > 0 ? i / r : 0) }')"
    if [[ -n ${KEEP_CALLGRIND:-} ]]; then
        mkdir -p "$KEEP_CALLGRIND"
        local f best=0 keep=""
        for f in "$out".*; do
            local n
            n=$(awk '/^summary:/ { print $2 }' "$f")
            if ((n > best)); then best=$n keep=$f; fi
        done
        [[ -n $keep ]] && cp "$keep" "$KEEP_CALLGRIND/$name-$SCENARIO.callgrind"
    fi
    rm -f "$out"*
}

echo "# http_instructions: callgrind, $CONNS connections, depth $DEPTH, ${DURATION}s window, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for sc in $SCENARIOS; do
    depth=1
    SCENARIO=keepalive
    if [[ $sc == pipeline ]]; then
        depth=$DEPTH
        SCENARIO=pipeline$DEPTH
    fi
    for s in $SERVERS; do
        case $s in
        floor) count floor 127.0.0.1:18193 "$depth" "$EPOLL_FLOOR_BIN" 127.0.0.1:18193 ;;
        hyper) count hyper 127.0.0.1:18191 "$depth" "$HYPER_BIN" 127.0.0.1:18191 ;;
        reaktor)
            sed -E 's/^address = "127\.0\.0\.1:[0-9]+"/address = "127.0.0.1:18190"/' "$REAKTOR_TOPOLOGY" >"$WORK/reaktor.toml"
            count reaktor 127.0.0.1:18190 "$depth" "$REAKTOR_BIN" run --topology "$WORK/reaktor.toml"
            ;;
        *) log "unknown server $s (known: floor reaktor hyper)" ;;
        esac
    done
done
