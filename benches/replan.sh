#!/usr/bin/env bash
# Runtime re-plan benchmark (issue 6): does moving new connections away from a core that
# another process has taken over pay off?
#
# The reaktor runs tcp, http and echo fused on two cores pinned to cpus 0 and 1, with a
# Prometheus route. $HOGS busy loops are pinned to cpu 1 (another tenant), and wrk, pinned to
# cpu 0, opens a new connection for every request (`Connection: close`): new connections are
# what the re-plan moves. The same load runs twice, side by side in one run: re-plan off
# (replan_interval_ms = 0) and on ($REPLAN_MS). Reported: requests/s, latency p50/p99 (wrk
# --latency), and how many connections core 0's tcp took over from core 1's socket in the
# second run. wrk
# shares cpu 0, so it may bound the request rate; the latency shows what the requests that land
# on the starved core pay.
#
# Environment: DURATION=10 WARMUP=3 CONNS=16 HOGS=3 REPLAN_MS=500 ROUNDS=1
#   ADDR=127.0.0.1:8454 REAKTOR_BIN=<target>/release/reaktor SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-16}
HOGS=${HOGS:-3}
REPLAN_MS=${REPLAN_MS:-500}
ROUNDS=${ROUNDS:-1}
ADDR=${ADDR:-127.0.0.1:8454}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
HOST=${ADDR%:*}
PORT=${ADDR##*:}

log() { printf '%s\n' "$*" >&2; }
for tool in wrk curl taskset; do
    command -v "$tool" >/dev/null || { log "missing $tool: run scripts/install-bench-deps.sh"; exit 1; }
done
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (cargo build --release -p reaktor)..."
    (cd "$ROOT" && cargo build --release -p reaktor >&2)
fi

WORK=$(mktemp -d)
SERVER=""
HOG_PIDS=()
cleanup() {
    [[ -n $SERVER ]] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    for p in "${HOG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

topology() {
    cat <<TOML
[reaktor]
pin = true
replan_interval_ms = $1

[[listener]]
name = "http"
address = "$ADDR"
chain = ["tcp", "http"]

[[core]]
cpu = 0
nuklei = ["tcp", "http", "echo", "metrics"]

[[core]]
cpu = 1
nuklei = ["tcp", "http", "echo", "metrics"]

[tcp]
max_connections = 4096

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/metrics"
to = "metrics"
TOML
}

# run_one REPLAN_MS -> prints "rps p50 p99 handed_off"
run_one() {
    topology "$1" >"$WORK/topology.toml"
    "$REAKTOR_BIN" run --topology "$WORK/topology.toml" 2>"$WORK/server-$1.log" &
    SERVER=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://$ADDR/" && break
        sleep 0.05
    done
    taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Connection: close" "http://$ADDR/" >/dev/null 2>&1 || true
    local out rps
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Connection: close" "http://$ADDR/" 2>&1)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    local p50 p99
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    local handed
    handed=$(curl -s "http://$ADDR/metrics" | awk '/^reaktor_tcp_connections_taken_over_total/ {s += $2} END {print s + 0}')
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    echo "$rps $p50 $p99 $handed"
}

for ((h = 0; h < HOGS; h++)); do
    taskset -c 1 sh -c 'while :; do :; done' &
    HOG_PIDS+=($!)
done
log "replan bench: DURATION=$DURATION CONNS=$CONNS HOGS=$HOGS (busy loops on cpu 1) REPLAN_MS=$REPLAN_MS; $(uptime)"
printf '%-6s %-10s %12s %10s %10s %12s\n' round replan req/s p50 p99 taken_over
for ((r = 1; r <= ROUNDS; r++)); do
    read -r off_rps off_p50 off_p99 off_handed < <(run_one 0)
    read -r on_rps on_p50 on_p99 on_handed < <(run_one "$REPLAN_MS")
    printf '%-6s %-10s %12s %10s %10s %12s\n' "$r" off "$off_rps" "$off_p50" "$off_p99" "$off_handed"
    printf '%-6s %-10s %12s %10s %10s %12s\n' "$r" "${REPLAN_MS}ms" "$on_rps" "$on_p50" "$on_p99" "$on_handed"
    awk -v a="$on_rps" -v b="$off_rps" 'BEGIN { if (b > 0) printf "ratio on/off: %.2f\n", a / b }'
done
grep -h "re-plan" "$WORK"/server-*.log | head -5 >&2 || true
