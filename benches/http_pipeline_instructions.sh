#!/usr/bin/env bash
# Deterministic user-space cost of the fused http+echo nuklei: instructions per request
# counted by callgrind (repeatable on a noisy machine, unlike wall-clock time).
# Usage: bash benches/http_pipeline_instructions.sh   (env: BATCHES=100 CONNS=64 DEPTH=16)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)"; exit 1; }
BATCHES=${BATCHES:-100}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
cargo bench -p nukleus-echo --bench http_pipeline --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "http_pipeline" and m.get("executable"):
        print(m["executable"])' > /tmp/http_pipeline_bin.$$
BIN=$(tail -1 /tmp/http_pipeline_bin.$$); rm -f /tmp/http_pipeline_bin.$$
measure() {
    ROUNDS=1 BATCHES=$1 CONNS=$CONNS DEPTH=$DEPTH valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --bench 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
# Two runs with different batch counts cancel out start-up and set-up costs.
small=$(measure "$BATCHES")
large=$(measure $((BATCHES * 2)))
requests=$((BATCHES * CONNS * DEPTH))
echo "http+echo: $(( (large - small) / requests )) instructions per request ($CONNS connections x $DEPTH pipelined, callgrind)"
