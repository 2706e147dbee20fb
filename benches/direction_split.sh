#!/usr/bin/env bash
# tcp split by direction (issue 6): does moving tcp's socket writes (`tcp.out`) to a second core
# help ONE connection? A split by connection cannot spread one connection; a split by direction
# can, because tcp's reads and writes share nothing but the socket. Side by side in one run:
#
#   whole    core0 (cpu 0): tcp http echo                     (one core: all one connection gets)
#   split    core0 (cpu 0): tcp http echo | core1 (cpu 1): tcp.out
#   auto     placement = "auto", cpus = [0, 1], connections = 1 (the planner's choice; it picks
#            the split, see `reaktor plan`)
#
# Scenarios (SCENARIOS, default both):
#   bulk      one connection POSTs $BULK_BYTES to /echo while reading the echo (both directions
#             at once); client benches/peers/bulk_echo.py (sendfile upload, recv_into download,
#             echo checked) pinned to cpu $CLIENT_CPU. MiB/s each way, server CPU per MiB.
#   pipeline  one connection, wrk -c1 pipelining $DEPTH GET / per write (benches/wrk/pipeline.lua),
#             wrk pinned to cpu $CLIENT_CPU. req/s, server CPU per request.
#
# The client shares cpu 1 with `tcp.out`: on this 2-vCPU machine there is no third cpu, so the
# split only gains what the client leaves of cpu 1. Read the ratios with that in mind.
#
# Usage: scripts/install-bench-deps.sh && benches/direction_split.sh
#   env: ROUNDS=3 DURATION=5 BULK_BYTES=2147483648 DEPTH=16 CLIENT_CPU=1 PORT=8461
#        PLACEMENTS="whole split auto" SCENARIOS="bulk pipeline" REAKTOR_BIN=... SKIP_BUILD=1
# Output: one line per run and a table of ratios (split / whole per round); TSV lines are
# appended to benches/results/direction_split.tsv (git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NAME=direction_split
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
BULK_BYTES=${BULK_BYTES:-2147483648}
DEPTH=${DEPTH:-16}
CLIENT_CPU=${CLIENT_CPU:-1}
WRK_CPU=$CLIENT_CPU
PORT=${PORT:-8461}
PLACEMENTS=${PLACEMENTS:-whole split auto}
SCENARIOS=${SCENARIOS:-bulk pipeline}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/direction_split.tsv}
PIPELINE_LUA=$ROOT/benches/wrk/pipeline.lua

WORK=$(mktemp -d "${TMPDIR:-/tmp}/direction_split.XXXXXX")
LOG_DIR=$WORK/logs
mkdir -p "$LOG_DIR" "$(dirname "$RESULTS_TSV")"
cleanup() {
    stop_wrk
    stop_servers
    [[ -n ${KEEP_TMP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (release)"
    (cd "$ROOT" && cargo build --release -q -p reaktor)
fi
command -v wrk >/dev/null || { log "wrk is missing: run scripts/install-bench-deps.sh"; exit 1; }

topology() {
    local placement=$1
    cat <<EOF
[reaktor]
pin = true
$(if [[ $placement == auto ]]; then printf 'placement = "auto"\ncpus = [0, 1]\nconnections = 1\n'; fi)

[[listener]]
name = "http"
address = "127.0.0.1:$PORT"
chain = ["tcp", "http"]

[tcp]
window = 1048576

[http]
max_body_bytes = 1099511627776
window = 1048576
max_pipelined = 64

[[http.route]]
path = "/"
to = "echo"
EOF
    case $placement in
    whole) printf '\n[[core]]\ncpu = 0\nnuklei = ["tcp", "http", "echo"]\n' ;;
    split) printf '\n[[core]]\ncpu = 0\nnuklei = ["tcp", "http", "echo"]\n\n[[core]]\ncpu = 1\nnuklei = ["tcp.out"]\n' ;;
    auto) ;;
    *) log "unknown placement $placement"; exit 1 ;;
    esac
}

start() {
    local placement=$1
    topology "$placement" >"$WORK/$placement.toml"
    start_server "$placement" 0,1 "$REAKTOR_BIN" run --topology "$WORK/$placement.toml"
    SERVER_PID=$STARTED_PID
    wait_port 127.0.0.1 "$PORT" 10 || { log "$placement did not start:"; cat "$LOG_DIR/$placement.log" >&2; exit 1; }
}

declare -A RESULT=()
echo "# direction_split: $ROUNDS round(s), client on cpu $CLIENT_CPU, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD), load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$REAKTOR_BIN" plan --topology <(topology auto) | sed 's/^/#   /' | head -8
for ((round = 1; round <= ROUNDS; round++)); do
    for scenario in $SCENARIOS; do
        for placement in $PLACEMENTS; do
            start "$placement"
            case $scenario in
            bulk)
                c0=$(cpu_ticks "$SERVER_PID")
                line=$(taskset -c "$CLIENT_CPU" python3 "$ROOT/benches/peers/bulk_echo.py" 127.0.0.1 "$PORT" "$BULK_BYTES")
                c1=$(cpu_ticks "$SERVER_PID")
                mibs=$(sed -n 's/.*mib_per_s=\([0-9.]*\).*/\1/p' <<<"$line")
                secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")
                read -r cpu_ms_per_mib server_pct < <(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v b="$BULK_BYTES" -v s="$secs" \
                    'BEGIN { cpu = d / hz; printf "%.3f %.0f\n", cpu * 1000 / (b / 1048576), 100 * cpu / s }')
                echo "round $round bulk     $placement: $mibs MiB/s each way, server $cpu_ms_per_mib ms CPU per MiB ($server_pct % of one cpu)"
                printf '%s\t%s\t%s\tbulk\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(git -C "$ROOT" rev-parse --short HEAD)" "$placement" "$round" "$mibs" "$cpu_ms_per_mib" "$server_pct" >>"$RESULTS_TSV"
                RESULT[$round/bulk/$placement]=$mibs
                ;;
            pipeline)
                SCENARIO=pipeline$DEPTH DEPTH=$DEPTH run_wrk "$placement" "http://127.0.0.1:$PORT/" 1 "${DURATION}s" "$PIPELINE_LUA" "$DEPTH" >/dev/null
                echo "round $round pipeline $placement: $LAST_RPS req/s, server $LAST_CPU_US us CPU per request ($LAST_SERVER_PCT % of one cpu), wrk $LAST_WRK_PCT %"
                RESULT[$round/pipeline/$placement]=$LAST_RPS
                ;;
            *) log "unknown scenario $scenario"; exit 1 ;;
            esac
            stop_servers
        done
    done
done

echo
echo "| round | scenario | whole | split | auto | split / whole | auto / whole |"
echo "|---|---|---|---|---|---|---|"
for ((round = 1; round <= ROUNDS; round++)); do
    for scenario in $SCENARIOS; do
        w=${RESULT[$round/$scenario/whole]:-} s=${RESULT[$round/$scenario/split]:-} a=${RESULT[$round/$scenario/auto]:-}
        ratio() { if [[ -n $1 && -n $2 ]]; then awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", x / y }'; else echo -; fi; }
        echo "| $round | $scenario | ${w:--} | ${s:--} | ${a:--} | $(ratio "$s" "$w") | $(ratio "$a" "$w") |"
    done
done
