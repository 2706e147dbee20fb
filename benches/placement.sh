#!/usr/bin/env bash
# Placement benchmark (issue 6): HTTPS keep-alive "Hello, World!" (tcp -> tls -> http -> echo)
# under every hand-written placement of the four stages on this machine's two cores, and under
# placement = "auto"; target: auto within 5% of the best hand placement. After each run the
# script asks the reaktor itself for the per-stage cost it measured (`reaktor plan
# --measured-stream-dir`, µs of busy time per request).
#
# Pinning (the machine has 2 cpus), two modes:
#   SERVER_CPUS="0 1" (default): the server's core threads are pinned to cpus 0 and 1 and wrk
#     (-t1) runs unpinned, sharing them; a placement that leaves a cpu idle leaves it to wrk.
#   SERVER_CPUS="0": every core thread is pinned to cpu 0 (a two-core placement becomes two
#     threads time-sharing cpu 0) and wrk is pinned to cpu $WRK_CPU (default 1): placements
#     compete for the same server cpu with a dedicated client.
#
# Placements (a kind on both cores runs as two instances; a stream goes to the instance on
# the same core first, otherwise to one chosen by connection key):
#   auto         placement = "auto", cpus = [0, 1] (the planner: everything fused on both)
#   fused2       core0: tcp tls http echo | core1: tcp tls http echo   (= auto's choice)
#   fused1       core0: tcp tls http echo                              (one core only)
#   tls-apart    core0: tcp http echo     | core1: tls
#   tcp-apart    core0: tcp               | core1: tls http echo
#   http-apart   core0: tcp tls           | core1: http echo
#   tls-split    core0: tcp tls http echo | core1: tls                 (tls1 gets traffic
#                only by key when core0's tls is absent: here it idles, a control)
#   tcp-tls-2    core0: tcp tls http echo | core1: tcp tls             (http on core 0 only)
#
# Environment: DURATION=8 CONNS=32 ROUNDS=1 WARMUP=2 PLACEMENTS="..." ADDR=127.0.0.1:8453
#   REAKTOR_BIN=<target>/release/reaktor SKIP_BUILD=1
# Results: a table on stdout, TSV lines appended to benches/results/placement.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-2}
ADDR=${ADDR:-127.0.0.1:8453}
PLACEMENTS=${PLACEMENTS:-auto fused2 fused1 tls-apart tcp-apart http-apart tls-split tcp-tls-2}
SERVER_CPUS=${SERVER_CPUS:-0 1}
WRK_CPU=${WRK_CPU:-1}
read -r -a CPUS <<<"$SERVER_CPUS"
WRK=(wrk)
if ((${#CPUS[@]} == 1)); then
    CPUS+=("${CPUS[0]}")
    WRK=(taskset -c "$WRK_CPU" wrk)
fi
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/placement.tsv}
HOST=${ADDR%:*}
PORT=${ADDR##*:}

log() { printf '%s\n' "$*" >&2; }

for tool in wrk curl openssl; do
    command -v "$tool" >/dev/null || { log "missing $tool: run scripts/install-bench-deps.sh"; exit 1; }
done
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (cargo build --release -p reaktor)..."
    (cd "$ROOT" && cargo build --release -p reaktor >&2)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/placement.XXXXXX")
SERVER=
cleanup() {
    local rc=$?
    if [[ -n $SERVER ]]; then
        kill -TERM "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    [[ -n ${KEEP_TMP:-} ]] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$ROOT/scripts/gen-cert.sh" "$WORK/certs" >/dev/null

cores_of() {
    case $1 in
    fused2) printf 'cpu0=tcp tls http echo\ncpu1=tcp tls http echo\n' ;;
    fused1) printf 'cpu0=tcp tls http echo\n' ;;
    tls-apart) printf 'cpu0=tcp http echo\ncpu1=tls\n' ;;
    tcp-apart) printf 'cpu0=tcp\ncpu1=tls http echo\n' ;;
    http-apart) printf 'cpu0=tcp tls\ncpu1=http echo\n' ;;
    tls-split) printf 'cpu0=tcp tls http echo\ncpu1=tls\n' ;;
    tcp-tls-2) printf 'cpu0=tcp tls http echo\ncpu1=tcp tls\n' ;;
    *) log "unknown placement $1"; exit 2 ;;
    esac
}

topology() {
    local name=$1
    cat <<EOF
[reaktor]
pin = true
stream_capacity = 16777216
EOF
    if [[ $name == auto ]]; then
        if [[ ${CPUS[0]} == "${CPUS[1]}" ]]; then
            printf 'placement = "auto"\ncpus = [%s]\n' "${CPUS[0]}"
        else
            printf 'placement = "auto"\ncpus = [%s, %s]\n' "${CPUS[0]}" "${CPUS[1]}"
        fi
    fi
    cat <<EOF

[[listener]]
name = "https"
address = "$ADDR"
chain = ["tcp", "tls", "http"]

[listener.tls]
cert = "$WORK/certs/server.pem"
key = "$WORK/certs/server-key.pem"

[[http.route]]
path = "/"
to = "echo"
EOF
    if [[ $name != auto ]]; then
        local line cpu kinds
        while IFS= read -r line; do
            cpu=${line%%=*}
            kinds=${line#*=}
            printf '\n[[core]]\ncpu = %s\nnuklei = [%s]\n' "${CPUS[${cpu#cpu}]}" \
                "$(printf '"%s", ' $kinds | sed 's/, $//')"
        done < <(cores_of "$name")
    fi
}

mkdir -p "$(dirname "$RESULTS_TSV")"
declare -A BEST=()
printf '%-11s %10s %8s  %s\n' placement req/s errors "measured cost (us busy per request)"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in $PLACEMENTS; do
        topology "$name" >"$WORK/$name.toml"
        "$REAKTOR_BIN" run --topology "$WORK/$name.toml" --stream-dir "$WORK/streams" \
            >"$WORK/$name.log" 2>&1 &
        SERVER=$!
        for ((i = 0; i < 200; i++)); do
            curl -sk --max-time 1 "https://$ADDR/" >/dev/null 2>&1 && break
            sleep 0.05
        done
        "${WRK[@]}" -t1 -c"$CONNS" -d"$WARMUP"s "https://$ADDR/" >/dev/null 2>&1 || true
        out=$("${WRK[@]}" -t1 -c"$CONNS" -d"$DURATION"s "https://$ADDR/" 2>&1)
        rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr -s ' ' | tr '\n' ';')
        sleep 0.6 # the stats file is rewritten twice a second
        cost=$("$REAKTOR_BIN" plan --topology "$WORK/$name.toml" \
            --measured-stream-dir "$WORK/streams/reaktor-$SERVER" 2>/dev/null |
            awk '/^\[cost\]/ {on=1; next} on && / = / {printf "%s=%s ", $1, $3}')
        kill -TERM "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=
        printf '%-11s %10s %8s  %s\n' "$name" "${rps:-0}" "${errors:-0}" "$cost"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$SERVER_CPUS" "$name" "$round" \
            "${rps:-0}" "$CONNS" "$cost" >>"$RESULTS_TSV"
        if [[ -z ${BEST[$name]:-} ]] || ((${rps:-0} > ${BEST[$name]})); then
            BEST[$name]=${rps:-0}
        fi
    done
done
best_hand=0
best_name=
for name in "${!BEST[@]}"; do
    [[ $name == auto ]] && continue
    if ((BEST[$name] > best_hand)); then
        best_hand=${BEST[$name]}
        best_name=$name
    fi
done
if [[ -n ${BEST[auto]:-} && $best_hand -gt 0 ]]; then
    awk -v a="${BEST[auto]}" -v b="$best_hand" -v n="$best_name" \
        'BEGIN {printf "auto: %d req/s, best hand placement %s: %d req/s, auto/best = %.3f\n", a, n, b, a / b}'
fi
