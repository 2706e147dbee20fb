#!/usr/bin/env bash
# Checks that docs/openapi.yaml is true of the running port switch: starts the reaktor with a
# switch topology on a free port and runs schemathesis (PyPI) against it with a bearer token.
# Fails on any server error, undocumented status, wrong content type or schema violation.
# Warnings are off: "operation mostly rejected generated data" fires at random for the node
# operations, whose fuzzed node ids the token may not act for (403) or that are offline (409) —
# documented answers, not a schema mismatch.
#
# Usage: scripts/schemathesis.sh [extra schemathesis args]
#   REAKTOR_BIN      the reaktor binary (default: $CARGO_TARGET_DIR or target, debug build;
#                    built with cargo if missing)
#   MAX_EXAMPLES     examples per operation (default 60)
#   CLUSTER=1        run the reaktor as a one-member [cluster] (it elects itself): replies
#                    then carry the epoch and the fencing sequence
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import schemathesis" 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check schemathesis
fi

BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/reaktor}
if [ ! -x "$BIN" ]; then
    cargo build -q -p reaktor
fi

WORK=$(mktemp -d)
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    [ -n "${SSE_PID:-}" ] && kill "$SSE_PID" 2>/dev/null || true
    if [ -n "${SERVER_PID:-}" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/topology.toml" <<TOML
[reaktor]
pin = false
stream_capacity = 4194304

[[listener]]
name = "http"
address = "127.0.0.1:$PORT"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "ws", "switch", "cluster"]

[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/cluster"
to = "cluster"

[[http.route]]
path = "/readyz"
to = "cluster"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[[ws.route]]
path = "/v1/ws/"
to = "switch"

[switch]
lease_ms = 600000

[switch.limits]
# An acknowledged SendMsg to n1 (which never acknowledges) answers within the request
# timeout.
ack_timeout_ms = 1000

[[switch.token]]
token = "schemathesis"
nodes = ["n1", "n2"]
admin = true
TOML
if [ "${CLUSTER:-0}" = 1 ]; then
    PEER=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >> "$WORK/topology.toml" <<TOML

[cluster]
id = 1
state_dir = "state"

[[cluster.member]]
id = 1
peer = "127.0.0.1:$PEER"
api = "http://127.0.0.1:$PORT"
TOML
fi

mkdir -p "$WORK/streams"
"$BIN" run --topology "$WORK/topology.toml" --stream-dir "$WORK/streams" 2> "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.1
done
# A cluster member serves once it has elected itself.
for _ in $(seq 100); do
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" | grep -q 200 && break
    sleep 0.1
done

# Keep node n1 online (its receiving connection, by SSE) so node calls can succeed.
curl -sS -N -H "Authorization: Bearer schemathesis" -H "Accept: text/event-stream" \
    "http://127.0.0.1:$PORT/v1/nodes/n1/messages?address=127.0.0.1:9" > /dev/null 2>&1 &
SSE_PID=$!
sleep 0.3

status=0
.venv/bin/schemathesis run docs/openapi.yaml \
    --url "http://127.0.0.1:$PORT" \
    -H "Authorization: Bearer schemathesis" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth \
    --exclude-operation-id waitMsgEvents --exclude-operation-id waitMsgWebSocket \
    --exclude-operation-id watcher --exclude-operation-id watcherWebSocket \
    --phases examples,coverage,fuzzing \
    --max-examples "${MAX_EXAMPLES:-60}" \
    --seed 1 \
    --request-timeout 10 \
    --warnings off \
    "$@" || status=$?

if [ "${CLUSTER:-0}" = 1 ]; then
    # The run was against a serving member: its replies carry the epoch.
    reply=$(curl -sS -H "Authorization: Bearer schemathesis" -d '{"nodes":["n1"]}' "http://127.0.0.1:$PORT/v1/nodes/query")
    if ! echo "$reply" | grep -q '"epoch":'; then
        echo "schemathesis.sh: CLUSTER=1 but the reply carries no epoch: $reply" >&2
        exit 1
    fi
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "schemathesis.sh: the reaktor died during the run" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi
if grep -q panicked "$WORK/server.log"; then
    echo "schemathesis.sh: the reaktor logged a panic" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi
exit $status
