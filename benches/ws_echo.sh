#!/usr/bin/env bash
# WebSocket echo benchmark (issue 3): reaktor (tcp+http+ws+echo fused on one core) vs a
# tokio-tungstenite echo server (benches/peers/tungstenite-echo), one run each, interleaved.
# Servers are pinned to core $SERVER_CPU (default 0), the load generator (ws-load, same peer
# project, one current-thread runtime) to core $LOAD_CPU (default 1).
#
# Scenarios (binary messages):
#   rtt1       1 connection, one 64-byte message in flight: round trips/s and latency
#   rtt1000    1000 connections, one message in flight each
#   oneway1    1 connection sending 64-byte messages back to back (echoes drained): msgs/s
#   oneway1000 1000 connections doing the same
# Also reported: server CPU time per message (utime+stime from /proc, see benches/lib.sh).
#
# Environment: DURATION=10 SERVER_CPU=0 LOAD_CPU=1 SIZE=64 SKIP_BUILD=1
#   SCENARIOS="rtt1 rtt1000 oneway1 oneway1000" SERVERS="reaktor tungstenite"
# Output: a table on stdout; one TSV line per run appended to benches/results/ws_echo.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=ws_echo
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SIZE=${SIZE:-64}
SCENARIOS=${SCENARIOS:-rtt1 rtt1000 oneway1 oneway1000}
SERVERS=${SERVERS:-reaktor tungstenite}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
PEER_DIR=$ROOT/benches/peers/tungstenite-echo
RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/ws_echo.tsv}
REAKTOR_PORT=${REAKTOR_PORT:-8090}
TUNGSTENITE_PORT=${TUNGSTENITE_PORT:-8091}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ws_echo.XXXXXX")
LOG_DIR=$WORK/logs
mkdir -p "$LOG_DIR"
cleanup() {
    stop_servers
    [[ -n ${KEEP_TMP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (release) and the tungstenite peer"
    (cd "$ROOT" && cargo build --release -p reaktor --quiet)
    (cd "$PEER_DIR" && cargo build --release --quiet)
fi
LOAD_BIN=$PEER_DIR/target/release/ws-load
PEER_BIN=$PEER_DIR/target/release/tungstenite-echo
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cat >"$WORK/topology.toml" <<TOML
[reaktor]
pin = true
stream_capacity = 67108864

[[listener]]
name = "http"
address = "127.0.0.1:$REAKTOR_PORT"
chain = ["tcp", "http"]

[[core]]
cpu = $SERVER_CPU
nuklei = ["tcp", "http", "ws", "echo"]

[tcp]
max_connections = 4096

[[http.route]]
path = "/ws"
to = "ws"

[[ws.route]]
path = "/ws/echo"
to = "echo"
TOML

start() {
    case $1 in
        reaktor)
            start_server reaktor "$SERVER_CPU" "$REAKTOR_BIN" run --topology "$WORK/topology.toml"
            PORT=$REAKTOR_PORT
            URL="ws://127.0.0.1:$REAKTOR_PORT/ws/echo"
            ;;
        tungstenite)
            start_server tungstenite "$SERVER_CPU" "$PEER_BIN" "127.0.0.1:$TUNGSTENITE_PORT"
            PORT=$TUNGSTENITE_PORT
            URL="ws://127.0.0.1:$TUNGSTENITE_PORT/ws/echo"
            ;;
    esac
    PID=$STARTED_PID
    wait_port 127.0.0.1 "$PORT" 15 || { log "$1 did not start"; cat "$LOG_DIR/$1.log" >&2; exit 1; }
}

mkdir -p "$(dirname "$RESULTS_TSV")"
declare -A RATE=()
printf '%-12s %-12s %14s %10s %10s %14s\n' scenario server "msgs/s" p50_us p99_us "server_us/msg"
for scenario in $SCENARIOS; do
    case $scenario in
        rtt1) conns=1 mode=rtt ;;
        rtt1000) conns=1000 mode=rtt ;;
        oneway1) conns=1 mode=oneway ;;
        oneway1000) conns=1000 mode=oneway ;;
        *) log "unknown scenario $scenario"; exit 2 ;;
    esac
    for server in $SERVERS; do
        start "$server"
        before=$(cpu_ticks "$PID")
        line=$(taskset -c "$LOAD_CPU" "$LOAD_BIN" "$URL" "$conns" "$mode" "$SIZE" "$DURATION")
        after=$(cpu_ticks "$PID")
        stop_servers
        rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$line")
        messages=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' <<<"$line")
        p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line")
        p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
        hz=$(getconf CLK_TCK)
        cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v m="$messages" 'BEGIN { if (m > 0) printf "%.2f", t * 1e6 / hz / m; else print "-" }')
        [[ $mode == rtt ]] || { p50=-; p99=-; }
        RATE[$scenario.$server]=$rate
        printf '%-12s %-12s %14s %10s %10s %14s\n' "$scenario" "$server" "$rate" "$p50" "$p99" "$cpu_us"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$scenario" "$server" "$SIZE" "$rate" "$p50" "$p99" "$cpu_us" >>"$RESULTS_TSV"
    done
done
echo
for scenario in $SCENARIOS; do
    r=${RATE[$scenario.reaktor]:-}
    t=${RATE[$scenario.tungstenite]:-}
    if [[ -n $r && -n $t && $t -gt 0 ]]; then
        awk -v s="$scenario" -v r="$r" -v t="$t" 'BEGIN { printf "%-12s reaktor/tungstenite = %.2f\n", s, r / t }'
    fi
done
