#!/usr/bin/env bash
# Memory per connection under uploads whose client never reads (issue 12, defect 7): for each
# reaktor binary in BINS, start it (tcp, http, echo fused on one core, pinned to core
# $SERVER_CPU), open CONNS connections that each upload to /echo and never read, and report
# the server's private resident memory (RssAnon) before, at the peak and after they closed
# (benches/conn_memory.py, pinned to core $CLIENT_CPU).
#
# Usage: flock /work/bench.lock env BINS="/path/old/reaktor /path/new/reaktor" benches/conn_memory.sh
# env: CONNS=1000 BODY=8388608 (bytes per upload) EXTRA="" (TOML appended to the topology)
#      SERVER_CPU=0 CLIENT_CPU=1 PORT=18480
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINS=${BINS:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
CONNS=${CONNS:-1000}
BODY=${BODY:-8388608}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18480}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/conn_memory.XXXXXX")
SERVER=
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n $((CONNS * 2 + 256)) 2>/dev/null || true

cat >"$WORK/topology.toml" <<TOML
[reaktor]
pin = false

[[listener]]
name = "http"
address = "127.0.0.1:$PORT"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[tcp]
max_connections = $((CONNS + 64))

[http]
max_body_bytes = $BODY

[[http.route]]
path = "/"
to = "echo"
${EXTRA:-}
TOML

echo "# conn_memory: $CONNS uploads of $BODY bytes that never read, $(date -u +%Y-%m-%dT%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
for bin in $BINS; do
    taskset -c "$SERVER_CPU" "$bin" run --topology "$WORK/topology.toml" --stream-dir "$WORK" \
        2>"$WORK/server.log" &
    SERVER=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.05
    done
    result=$(taskset -c "$CLIENT_CPU" python3 "$ROOT/benches/conn_memory.py" "$SERVER" 127.0.0.1 "$PORT" \
        --conns "$CONNS" --body "$BODY")
    echo "$bin $result"
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=
    printf "  (%s warn/error lines)\n" "$(grep -cE "WARN|ERROR" "$WORK/server.log" || true)"
done
