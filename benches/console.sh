#!/usr/bin/env bash
# What the operator console costs the reaktor (issue 17): the http and switch figures with one
# console viewer open, next to none open, interleaved round by round in one run. Wall-clock
# throughput on the shared 2-core machine spreads ±30-50% per round, far more than the 2%
# to decide: benches/console_instructions.sh decides it by instruction counts.
#
# Modes (MODES, default all three), each round runs every mode in turn on a fresh server:
#   absent   the topology without the console (no kind placed, no route)
#   none     the console placed (as in examples/default.toml), nobody watching
#   open     the console placed and one viewer following /console/stream (what the page
#            reads; curl, pinned with the load generator) for the whole measurement
# Figures per mode: http  wrk keep-alive GET / (echo's "Hello, World!"), $CONNS connections,
#                         $DURATION s: requests/s
#                   switch  benches/peers/switch-load sendmsg over WebSocket, $DURATION s:
#                         messages/s
# The server is pinned to SERVER_CPU (0), wrk / switch-load / the viewer to LOAD_CPU (1).
#
# Usage: scripts/install-bench-deps.sh && flock /work/bench.lock benches/console.sh
#   env: ROUNDS=5 DURATION=5 CONNS=64 MODES="absent none open" INTERVAL_MS=1000
#        SERVER_CPU=0 LOAD_CPU=1 PORT=8097 SKIP_BUILD=1 REAKTOR_BIN=... KEEP_TMP=1
# Output: one line per run, then per figure the median of each mode and, per round, the ratio
# open/none and none/absent with their spread (min..max); TSV lines in
# benches/results/console.tsv (git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NAME=console
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
MODES=${MODES:-absent none open}
INTERVAL_MS=${INTERVAL_MS:-1000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
export WRK_CPU=$LOAD_CPU
PORT=${PORT:-8097}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
LOAD_DIR=$ROOT/benches/peers/switch-load
LOAD_BIN=$LOAD_DIR/target/release/switch-load
export RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/console.tsv}
mkdir -p "$(dirname "$RESULTS_TSV")"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/console_bench.XXXXXX")
LOG_DIR=$WORK/logs
STREAM_DIR=$WORK/streams
mkdir -p "$LOG_DIR" "$STREAM_DIR"
VIEWER_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $VIEWER_PID ]] && kill "$VIEWER_PID" 2>/dev/null || true
    stop_wrk
    stop_servers
    [[ -n ${KEEP_TMP:-} ]] && log "kept $WORK" || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (release) and switch-load"
    (cd "$ROOT" && cargo build --release -q -p reaktor)
    cargo build --release -q --manifest-path "$LOAD_DIR/Cargo.toml" --target-dir "$LOAD_DIR/target"
fi
[[ -x $REAKTOR_BIN && -x $LOAD_BIN ]] || { log "missing $REAKTOR_BIN or $LOAD_BIN"; exit 1; }
ulimit -n 65536 2>/dev/null || true

# shellcheck source=benches/console_topology.sh
. "$ROOT/benches/console_topology.sh"
console_topologies "$WORK" "$PORT" "$INTERVAL_MS"

ROWS=$WORK/rows
measure() { # ROUND MODE
    local round=$1 mode=$2 topology=$WORK/console.toml
    [[ $mode == absent ]] && topology=$WORK/absent.toml
    if port_busy 127.0.0.1 "$PORT"; then log "port $PORT is in use: set PORT"; exit 1; fi
    start_server reaktor "$SERVER_CPU" "$REAKTOR_BIN" run --topology "$topology" --stream-dir "$STREAM_DIR"
    SERVER_PID=$STARTED_PID
    wait_port 127.0.0.1 "$PORT" 10 || { log "reaktor did not start:"; cat "$LOG_DIR"/*.log >&2; exit 1; }
    if [[ $mode == open ]]; then
        taskset -c "$LOAD_CPU" curl -sN -H 'Authorization: Bearer bench-admin' \
            "http://127.0.0.1:$PORT/console/stream" >"$WORK/viewer.out" &
        VIEWER_PID=$!
        sleep 1
    fi
    SCENARIO="$mode" run_wrk "reaktor-$mode" "http://127.0.0.1:$PORT/" "$CONNS" "$DURATION" >/dev/null
    local rps=$LAST_RPS
    local out
    out=$(taskset -c "$LOAD_CPU" "$LOAD_BIN" sendmsg --proto ws --batch 1000 --window 65536 --depth 8 \
        --duration "$DURATION" --warmup 1 --port "$PORT" --pid "$SERVER_PID" --token bench)
    local msgs
    msgs=$(sed -n 's/.* msgs_per_s=\([^ ]*\).*/\1/p' <<<" $out")
    local ticks=-
    if [[ $mode == open ]]; then
        ticks=$(grep -c '^event: tick' "$WORK/viewer.out" || true)
        kill "$VIEWER_PID" 2>/dev/null || true
        wait "$VIEWER_PID" 2>/dev/null || true
        VIEWER_PID=
        [[ $ticks -gt 0 ]] || { log "the viewer received no tick: the console did not stream"; exit 1; }
    fi
    stop_servers
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$msgs" "$ticks" >>"$ROWS"
    log "round $round $mode: http $rps req/s, switch $msgs msgs/s, viewer ticks $ticks"
}

log "console cost: $ROUNDS rounds of [$MODES], $DURATION s per figure, server on cpu $SERVER_CPU, load on cpu $LOAD_CPU"
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        measure "$round" "$mode"
    done
done

python3 - "$ROWS" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
data = {}
for r, mode, rps, msgs, _ in rows:
    data.setdefault(mode, {})[int(r)] = (float(rps), float(msgs))
modes = list(data)
print(f"\n{'figure':<8} " + " ".join(f"{m + ' (median)':>16}" for m in modes))
for k, name in [(0, "http"), (1, "switch")]:
    print(f"{name:<8} " + " ".join(f"{statistics.median(v[k] for v in data[m].values()):>16.0f}" for m in modes))
for a, b in [("open", "none"), ("none", "absent")]:
    if a not in data or b not in data:
        continue
    for k, name in [(0, "http"), (1, "switch")]:
        ratios = sorted(data[a][r][k] / data[b][r][k] for r in data[a] if r in data[b])
        print(f"{name} {a}/{b} per round: median {statistics.median(ratios):.3f}, spread {ratios[0]:.3f}..{ratios[-1]:.3f} ({' '.join(f'{x:.3f}' for x in ratios)})")
EOF
