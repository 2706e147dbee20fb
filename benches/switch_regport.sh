#!/usr/bin/env bash
# Port switch benchmarks, peers side by side in one run. The server under test is pinned to
# CPU 0, the load generator to CPU 1 (2-CPU machines: the client shares nothing with it).
#
#   1. batched RegPort of 16-byte ports over WebSocket (4 nodes, batches of 10,000, 4 in
#      flight per node) vs redis-benchmark SETNX pipelined 64 deep (redis-server on CPU 0);
#   2. SendMsg -> push of 64-byte bodies, one sender node to one receiving node, vs
#      nats-server with one publisher and one subscriber (nats bench, if installed);
#   3. RegPort round-trip latency p50/p99/p99.9 at a fixed rate (2,000 requests/s).
#
# Usage: benches/switch_regport.sh
#   REAKTOR_BIN  default: ${CARGO_TARGET_DIR:-target}/release/reaktor (built if missing)
#   Peers: apt-get install redis-server redis-tools nats-server (skipped when absent).
# Results are printed and appended to benches/results/switch.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
[ -x "$BIN" ] || cargo build --release -q -p reaktor
PY=$ROOT/.venv/bin/python
[ -x "$PY" ] || PY=python3
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RESULTS=$ROOT/benches/results/switch.tsv
mkdir -p "$ROOT/benches/results"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
record() { printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$1" "$2" "$3" >> "$RESULTS"; echo "$1 | $2 | $3"; }

PORT=$(free_port)
nodes=$(for i in $(seq 0 63); do printf '"b%d",' "$i"; done)
cat > "$WORK/topology.toml" <<TOML
[reaktor]
pin = true
stream_capacity = 67108864

[[listener]]
name = "http"
address = "127.0.0.1:$PORT"
chain = ["tcp", "http"]

[[core]]
cpu = $SERVER_CPU
nuklei = ["tcp", "http", "ws", "switch"]

[http]
max_body_bytes = 67108864

[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[ws]
window = 1048576

[[ws.route]]
path = "/v1/ws/"
to = "switch"

[switch]
lease_ms = 600000
window = 1048576

[switch.limits]
max_ports_per_node = 10000000
max_queued_bytes = 268435456

[[switch.token]]
token = "bench"
nodes = [${nodes%,}]
TOML
mkdir -p "$WORK/streams"
"$BIN" run --topology "$WORK/topology.toml" --stream-dir "$WORK/streams" 2>"$WORK/server.log" &
SERVER=$!
PIDS+=("$SERVER")
wait_port "$PORT"
load() { taskset -c "$CLIENT_CPU" "$PY" "$ROOT/benches/switch_load.py" "$@"; }

echo "== RegPort, 16-byte ports, batches of 10,000 (server on cpu $SERVER_CPU)"
before=$(cpu_s "$SERVER")
out=$(load regport "$PORT" 4 50 10000 4)
after=$(cpu_s "$SERVER")
rate=$(sed 's/.*ports_per_s=\([0-9]*\).*/\1/' <<<"$out")
secs=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$out")
cpu=$(awk -v a="$before" -v b="$after" 'BEGIN{print b-a}')
per_cpu=$(awk -v n=2000000 -v c="$cpu" 'BEGIN{ if (c > 0) printf "%.0f", n / c; else print "?" }')
rss=$(awk '/VmRSS/{print $2}' "/proc/$SERVER/status")
record "reaktor RegPort" "$rate ports/s" "server cpu ${cpu}s for 2,000,000 ports in ${secs}s = $per_cpu ports per cpu-second; RSS ${rss} kB"

echo "== SendMsg -> push, 64-byte bodies, batches of 1,000"
out=$(load sendmsg "$PORT" 1000000 1000)
record "reaktor SendMsg->push" "$(sed 's/.*msgs_per_s=\([0-9]*\).*/\1/' <<<"$out") msgs/s" "$out"

echo "== RegPort latency at 2,000 requests/s"
out=$(load latency "$PORT" 2000 5)
record "reaktor RegPort latency" "$(sed 's/.*\(p50_us.*\)/\1/' <<<"$out")" "$out"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    echo "== redis SETNX, pipelined 64 deep"
    RPORT=$(free_port)
    taskset -c "$SERVER_CPU" redis-server --port "$RPORT" --save "" --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$RPORT"
    out=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$RPORT" -P 64 -n 2000000 -r 100000000 -c 4 -q SETNX 'key:__rand_int__' v | tr '\r' '\n' | grep -i 'requests per second' | tail -1)
    record "redis SETNX -P 64" "$(sed 's/.*: \([0-9.]*\) requests.*/\1/' <<<"$out") ops/s" "$out"
else
    echo "redis-server/redis-benchmark not installed: skipped"
fi

if command -v nats-server >/dev/null; then
    echo "== nats-server, 1 publisher, 1 subscriber, 64-byte messages (same Python client style)"
    NPORT=$(free_port)
    taskset -c "$SERVER_CPU" nats-server -p "$NPORT" >"$WORK/nats.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$NPORT"
    out=$(load nats "$NPORT" 1000000 1000)
    record "nats-server pub->sub" "$(sed 's/.*msgs_per_s=\([0-9]*\).*/\1/' <<<"$out") msgs/s" "$out"
else
    echo "nats-server not installed: skipped"
fi
