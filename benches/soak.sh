#!/usr/bin/env bash
# Soak (opt-in, bounded): the real reaktor (http + https listeners; tcp, tls, http, ws, echo,
# switch and metrics on two core threads, pinned to core $SERVER_CPU) under a mix of hostile
# and normal traffic for MINUTES (benches/soak.py, pinned to core $LOAD_CPU): Upgrade
# requests to routes that do not upgrade, slowloris, uploads to clients that never read, TLS
# garbage, WebSocket churn, switch register/send/relet churn, connection floods, and ordinary
# keep-alive requests. Then the process-level faults, each checked: descriptor exhaustion
# (the server runs under `prlimit --nofile=$NOFILE`; clients queued past it must be served
# once descriptors free up), a stall (SIGSTOP for 1.6 x the switch's lease, SIGCONT: nodes
# that kept reletting must stay online) and, last, a graceful drain (SIGTERM: WebSockets get
# 1001, the process exits within drain_timeout_ms with code 0). It samples the server's VmRSS/RssAnon, descriptors and TCP
# connections every 15 s, with the latency of a GET /healthz probe sent every 20 ms, and
# fails if, after the load, descriptors, sockets or connections stay above their idle level,
# any socket is left in CLOSE-WAIT, private memory kept growing through the run, or a
# request went unanswered.
#
#   benches/soak.sh [MINUTES]                       # default 10
#   flock /work/bench.lock benches/soak.sh 10       # on a shared machine
#
# Environment: SERVER_CPU=0 LOAD_CPU=1 SKIP_BUILD=1 REAKTOR_BIN=... KEEP_TMP=1 PYTHON=...
# NOFILE=512 (the server's descriptor limit: above the mix's peak of ~310, below the
# exhaustion phase's flood) LEASE_MS=5000 DRAIN_MS=5000
# Results: the samples and workload counts on stdout; the samples appended to
# benches/results/soak.tsv (label, t, VmRSS, RssAnon, ring-file KiB, fds, sockets, CLOSE-WAIT,
# reaktor_tcp_connections, the probe's p50/p99/max latency in ms). Prerequisites:
# scripts/setup-test-deps.sh (.venv), openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=soak
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

MINUTES=${1:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NOFILE=${NOFILE:-512}
LEASE_MS=${LEASE_MS:-5000}
DRAIN_MS=${DRAIN_MS:-5000}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$ROOT/benches/results"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
LOG_DIR=$WORK/logs
mkdir -p "$LOG_DIR" "$WORK/streams"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_servers
    if [[ -n ${KEEP_TMP:-} ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (cargo build --release -p reaktor)..."
    (cd "$ROOT" && cargo build --release -p reaktor --quiet)
fi
[[ -x $PYTHON ]] || PYTHON=python3
"$ROOT/scripts/gen-cert.sh" "$WORK/certs" >/dev/null

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
HTTPS_PORT=$(free_port)

cat >"$WORK/soak.toml" <<TOML
[reaktor]
pin = false
stream_capacity = 4194304
drain_timeout_ms = $DRAIN_MS

[[listener]]
name = "http"
address = "127.0.0.1:$HTTP_PORT"
chain = ["tcp", "http"]

[[listener]]
name = "https"
address = "127.0.0.1:$HTTPS_PORT"
chain = ["tcp", "tls", "http"]

[listener.tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"

[[core]]
nuklei = ["tcp", "tls", "http", "ws", "echo", "switch", "metrics"]

[[core]]
nuklei = ["tcp", "tls", "http", "ws", "echo", "switch", "metrics"]

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/metrics"
to = "metrics"

[[http.route]]
path = "/ws"
to = "ws"

[[ws.route]]
path = "/ws/echo"
to = "echo"

[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[[ws.route]]
path = "/v1/ws/"
to = "switch"

[switch]
lease_ms = $LEASE_MS

[[switch.token]]
token = "soak"
nodes = [$(for i in $(seq 0 15); do printf '"soak-n%d", ' "$i"; done)$(for i in $(seq 0 7); do printf '"soak-k%d", ' "$i"; done)"soak-quiet"]
TOML

start_server reaktor "$SERVER_CPU" prlimit --nofile="$NOFILE:$NOFILE" -- env REAKTOR_LOG=warn "$REAKTOR_BIN" run \
    --topology "$WORK/soak.toml" --stream-dir "$WORK/streams"
SERVER_PID=$STARTED_PID
wait_port 127.0.0.1 "$HTTP_PORT" 20 || { log "reaktor did not start:"; cat "$LOG_DIR/reaktor.log" >&2; exit 1; }
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
log "soak: reaktor $commit (pid $SERVER_PID, core $SERVER_CPU), ${MINUTES} min of load from core $LOAD_CPU, $(date -u +%FT%TZ)"

rc=0
taskset -c "$LOAD_CPU" "$PYTHON" "$ROOT/benches/soak.py" --pid "$SERVER_PID" \
    --http "$HTTP_PORT" --https "$HTTPS_PORT" --ca "$WORK/certs/ca.pem" --minutes "$MINUTES" \
    --tsv "$ROOT/benches/results/soak.tsv" --log "$LOG_DIR/reaktor.log" --nofile "$NOFILE" \
    --lease-ms "$LEASE_MS" --drain-ms "$DRAIN_MS" || rc=$?
warnings=$(grep -c WARN "$LOG_DIR/reaktor.log" || true)
log "soak: server log: $warnings WARN lines; the most frequent:"
sed 's/^[^ ]* *//; s/\x1b\[[0-9;]*m//g' "$LOG_DIR/reaktor.log" | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -8 >&2
# The drain phase ended the process: it must have exited with 0 (bash may have reaped it
# already; `wait` still returns its status).
state=$(awk '{print $3}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo gone)
if [[ $state == Z || $state == gone ]]; then
    server_rc=0
    wait "$SERVER_PID" || server_rc=$?
    if ((server_rc == 0)); then
        log "soak: phase drain: the reaktor exited with code 0"
    else
        log "soak: phase drain FAILED: the reaktor exited with code $server_rc"
        rc=1
    fi
else
    log "soak: phase drain FAILED: the reaktor is still running (state $state) after the soak"
    rc=1
fi
exit "$rc"
