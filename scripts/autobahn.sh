#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance cases (with kosoku, a native driver of the Autobahn
# TestSuite case files) against the reaktor's echo endpoint, writes the reports under
# reports/autobahn/ and summarises them.
#
# Usage: scripts/autobahn.sh [--full] [kosoku -i/-x arguments...]
#   SKIP_BUILD=1: use the release binary already built (REAKTOR_BIN, default
#   ${CARGO_TARGET_DIR:-target}/release/reaktor)
#   default: sections 1-7 and 10, plus the small cases of 9 (9.1.1-9.1.3, 9.2.1-9.2.3)
#   --full:  sections 1-7, 9 and 10
# Exits non-zero if any case's behavior is FAILED (or ERROR/UNIMPLEMENTED) or its closing
# behavior is UNCLEAN or FAILED. Sections 12 and 13 (permessage-deflate) are not run: the
# server does not negotiate compression.
set -euo pipefail
cd "$(dirname "$0")/.."

full=0
extra=()
for arg in "$@"; do
    case "$arg" in
        --full) full=1 ;;
        *) extra+=("$arg") ;;
    esac
done

# kosoku, idempotently, in the shared project venv.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import kosoku" 2>/dev/null; then
    echo "autobahn: installing kosoku into .venv"
    .venv/bin/pip install -q --disable-pip-version-check kosoku
fi

target="${CARGO_TARGET_DIR:-target}"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p reaktor --quiet
fi
bin="${REAKTOR_BIN:-$target/release/reaktor}"

port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/topology.toml" <<TOML
[reaktor]
pin = false
stream_capacity = 16777216

[[listener]]
name = "http"
address = "127.0.0.1:$port"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "ws", "echo"]

[[http.route]]
path = "/ws"
to = "ws"

[ws]
max_frame_size = 16777216
max_message_size = 67108864

[[ws.route]]
path = "/ws/echo"
to = "echo"
TOML

mkdir -p "$work/streams"
REAKTOR_LOG="${REAKTOR_LOG:-warn}" "$bin" run --topology "$work/topology.toml" \
    --stream-dir "$work/streams" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
    if .venv/bin/python -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.1)" 2>/dev/null; then
        break
    fi
    sleep 0.05
done

if [ "${#extra[@]}" -gt 0 ]; then
    cases=("${extra[@]}")
elif [ "$full" -eq 1 ]; then
    cases=(-i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' -i '9.*' -i '10.*')
else
    cases=(-i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' -i '10.*'
           -i '9.1.1' -i '9.1.2' -i '9.1.3' -i '9.2.1' -i '9.2.2' -i '9.2.3')
fi

out=reports/autobahn
rm -rf "$out"
mkdir -p "$out"
start=$(date +%s)
set +e
.venv/bin/kosoku -m fuzzingclient -o "$out" "${cases[@]}" "ws://127.0.0.1:$port/ws/echo" \
    > "$out/kosoku.log" 2>&1
kosoku_status=$?
set -e
elapsed=$(( $(date +%s) - start ))
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "autobahn: the reaktor died during the run; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
cp "$work/server.log" "$out/server.log"

.venv/bin/python - "$out/index.json" "$elapsed" "$kosoku_status" <<'PY'
import collections, json, sys
path, elapsed, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    index = json.load(open(path))
except OSError:
    print(f"autobahn: no {path}; kosoku exited with {status}, see reports/autobahn/kosoku.log")
    sys.exit(1)
cases = {cid: c for agent in index.values() for cid, c in agent.items()}
behavior = collections.Counter(c["behavior"] for c in cases.values())
closing = collections.Counter(c["behaviorClose"] for c in cases.values())
print(f"autobahn: {len(cases)} cases in {elapsed} s")
print("  behavior:      " + ", ".join(f"{k} {v}" for k, v in sorted(behavior.items())))
print("  behaviorClose: " + ", ".join(f"{k} {v}" for k, v in sorted(closing.items())))
bad_behavior = {"FAILED", "ERROR", "UNIMPLEMENTED", "NO CLOSE"}
bad_close = {"UNCLEAN", "FAILED", "FAILED BY CLIENT", "WRONG CODE"}
bad = sorted(
    (cid for cid, c in cases.items()
     if c["behavior"] in bad_behavior or c["behaviorClose"] in bad_close),
    key=lambda cid: [int(p) for p in cid.split(".")],
)
for cid in bad:
    c = cases[cid]
    print(f"  {cid}: {c['behavior']} / {c['behaviorClose']} (remote close {c.get('remoteCloseCode')})")
print("  reports: reports/autobahn/index.html")
sys.exit(1 if bad else 0)
PY
