#!/usr/bin/env bash
# Side-by-side HTTP/1.1 "Hello, World!" benchmark (issue 2): reaktor vs hyper vs nginx, one run.
#
# Every server answers GET / with the 13-byte body "Hello, World!" (text/plain). Each server is
# pinned to core $SERVER_CPU (default 0) and wrk to core $WRK_CPU (default 1). Because wrk can
# saturate its own core, the server's CPU time per request is reported too: utime+stime from
# /proc/PID/stat (of the server, its process group and its children) read before and after each
# wrk run, divided by the requests wrk counted.
#
# Scenarios, each server in turn (interleaved, same conditions):
#   keepalive   CONNS keep-alive connections, one request in flight per connection
#   pipelineN   CONNS connections, DEPTH requests pipelined per write (benches/wrk/pipeline.lua)
#
# Environment:
#   DURATION=10      seconds per measured wrk run
#   CONNS=64         connections
#   DEPTH=16         pipelined requests per write in the pipeline scenario
#   SERVERS="reaktor hyper nginx"
#   SCENARIOS="keepalive pipeline"
#   ROUNDS=1         repeat the interleaved rounds; the table shows the median of the rounds
#   WARMUP=2         seconds of warm-up per server before measuring
#   SERVER_CPU=0 WRK_CPU=1
#   SKIP_BUILD=1     do not run cargo (use the binaries already built)
#   REAKTOR_BIN=<target>/release/reaktor   REAKTOR_TOPOLOGY=examples/bench.toml
#   REAKTOR_ADDR=127.0.0.1:8080  HYPER_ADDR=127.0.0.1:8081  NGINX_ADDR=127.0.0.1:8082
#   KEEP_TMP=1       keep the temp dir (server logs, nginx config) after the run
#
# Results: a table on stdout; one TSV line per run appended to benches/results/http_hello.tsv.
# Prerequisites: scripts/install-bench-deps.sh (wrk, nginx), cargo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=http_hello
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
# How launch (benches/lib.sh) checks that a server answers.
SCHEME=http
CHECK_FN=http_check
CHECK_WHAT='did not answer 200 "Hello, World!"'

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
SERVERS=${SERVERS:-reaktor hyper nginx}
SCENARIOS=${SCENARIOS:-keepalive pipeline}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
REAKTOR_TOPOLOGY=${REAKTOR_TOPOLOGY:-$ROOT/examples/bench.toml}
REAKTOR_ADDR=${REAKTOR_ADDR:-127.0.0.1:8080}
HYPER_ADDR=${HYPER_ADDR:-127.0.0.1:8081}
NGINX_ADDR=${NGINX_ADDR:-127.0.0.1:8082}
HYPER_DIR=$ROOT/benches/peers/hyper-hello
HYPER_BIN=$HYPER_DIR/target/release/hyper-hello
PIPELINE_LUA=$ROOT/benches/wrk/pipeline.lua
RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/http_hello.tsv}
export WRK_CPU RESULTS_TSV BENCH_NAME

WORK=$(mktemp -d "${TMPDIR:-/tmp}/http_hello.XXXXXX")
chmod 755 "$WORK" # nginx's worker may run as another user
LOG_DIR=$WORK/logs
mkdir -p "$LOG_DIR"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_wrk
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

for tool in wrk taskset setsid pgrep; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "missing $tool: run scripts/install-bench-deps.sh"
        exit 1
    fi
done
if ((SERVER_CPU == WRK_CPU)) || (($(nproc) < 2)); then
    log "WARNING: server and wrk share a core (nproc=$(nproc)); the figures will not mean much"
fi

# ---------------------------------------------------------------------------------------------
# Build and start

declare -A PID=() URL=()
ACTIVE=()


# http_check HOST PORT: one request with Connection: close must get 200 and the body.
http_check() {
    local resp
    resp=$(
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf 'GET / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$1" "$2" >&3
        timeout 2 cat <&3 || true
    ) || return 1
    [[ $resp == "HTTP/1.1 200"* && $resp == *"Hello, World!"* ]]
}


build_hyper() {
    [[ -n ${SKIP_BUILD:-} ]] && return 0
    log "building hyper-hello (release)..."
    (cd "$HYPER_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
}

build_reaktor() {
    [[ -n ${SKIP_BUILD:-} ]] && return 0
    log "building reaktor (cargo build --release -p reaktor)..."
    if ! (cd "$ROOT" && cargo build --release -p reaktor --quiet) >"$LOG_DIR/reaktor-build.log" 2>&1; then
        log "reaktor build failed (it may still be being written); last lines:"
        tail -n 15 "$LOG_DIR/reaktor-build.log" >&2 || true
        return 1
    fi
}

nginx_bin() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

start_nginx() {
    local bin dir=$WORK/nginx
    if ! bin=$(nginx_bin); then
        skip nginx "nginx not installed (scripts/install-bench-deps.sh)"
        return 0
    fi
    mkdir -p "$dir"
    # One worker, master kept (its CPU is counted with the worker's), no access log, a
    # keep-alive limit that the benchmark never reaches; all paths inside the temp dir.
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

    server {
        listen $NGINX_ADDR;
        location / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
    }
}
EOF
    launch nginx "$NGINX_ADDR" "$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
}

start_reaktor() {
    if [[ ! -f $REAKTOR_TOPOLOGY ]]; then
        skip reaktor "topology $REAKTOR_TOPOLOGY does not exist yet"
        return 0
    fi
    if ! build_reaktor; then
        skip reaktor "build failed"
        return 0
    fi
    if [[ ! -x $REAKTOR_BIN ]]; then
        skip reaktor "$REAKTOR_BIN does not exist"
        return 0
    fi
    launch reaktor "$REAKTOR_ADDR" "$REAKTOR_BIN" run --topology "$REAKTOR_TOPOLOGY"
}

start_hyper() {
    if ! build_hyper; then
        skip hyper "build of $HYPER_DIR failed"
        return 0
    fi
    launch hyper "$HYPER_ADDR" "$HYPER_BIN" "$HYPER_ADDR"
}

for s in $SERVERS; do
    case $s in
    reaktor) start_reaktor ;;
    hyper) start_hyper ;;
    nginx) start_nginx ;;
    *) skip "$s" "unknown server (known: reaktor hyper nginx)" ;;
    esac
done

if ((${#ACTIVE[@]} == 0)); then
    log "no server to benchmark"
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# Measure

log "warm-up: ${WARMUP}s per server"
for s in "${ACTIVE[@]}"; do
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${URL[$s]}" >/dev/null 2>&1 || true
done

declare -A RPS=() CPU=() WRKPCT=() SRVPCT=()
scenario_label() {
    case $1 in
    keepalive) echo keepalive ;;
    pipeline) echo "pipeline$DEPTH" ;;
    esac
}

echo "# http_hello: ${DURATION}s per run, $CONNS connections, pipeline depth $DEPTH, servers on core $SERVER_CPU, wrk on core $WRK_CPU, $ROUNDS round(s), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for ((round = 0; round < ROUNDS; round++)); do
    # Rotate the server order each round so that no server always runs first or last.
    order=("${ACTIVE[@]:round % ${#ACTIVE[@]}}" "${ACTIVE[@]:0:round % ${#ACTIVE[@]}}")
    for sc in $SCENARIOS; do
        SCENARIO=$(scenario_label "$sc")
        if [[ -z $SCENARIO ]]; then
            log "unknown scenario $sc (known: keepalive pipeline)"
            exit 1
        fi
        for s in "${order[@]}"; do
            SERVER_PID=${PID[$s]}
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                log "$s (pid $SERVER_PID) has exited; log tail:"
                tail -n 20 "$LOG_DIR/$s.log" >&2 || true
                continue
            fi
            if [[ $sc == keepalive ]]; then
                DEPTH=1 run_wrk "$s" "${URL[$s]}" "$CONNS" "${DURATION}s" || continue
            else
                run_wrk "$s" "${URL[$s]}" "$CONNS" "${DURATION}s" "$PIPELINE_LUA" "$DEPTH" || continue
            fi
            RPS[$s/$SCENARIO]+="$LAST_RPS "
            CPU[$s/$SCENARIO]+="$LAST_CPU_US "
            WRKPCT[$s/$SCENARIO]+="$LAST_WRK_PCT "
            SRVPCT[$s/$SCENARIO]+="$LAST_SERVER_PCT "
            sleep 1
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Table

ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a >= b) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a <= b) }'; }

echo
printf '%-8s %-11s %12s %10s %6s %6s %10s %12s %10s\n' server scenario req/s cpu_us/req srv% wrk% x_hyper cpu_x_hyper x_nginx
declare -A MR=() MC=()
for sc in $SCENARIOS; do
    SCENARIO=$(scenario_label "$sc")
    for s in "${ACTIVE[@]}"; do
        [[ -n ${RPS[$s/$SCENARIO]:-} ]] || continue
        MR[$s/$SCENARIO]=$(median <<<"${RPS[$s/$SCENARIO]}")
        MC[$s/$SCENARIO]=$(median <<<"${CPU[$s/$SCENARIO]}")
    done
    for s in "${ACTIVE[@]}"; do
        k=$s/$SCENARIO
        [[ -n ${MR[$k]:-} ]] || continue
        wpct=$(median <<<"${WRKPCT[$k]}")
        spct=$(median <<<"${SRVPCT[$k]}")
        # '*' marks runs where wrk used >= 95% of its core: req/s is then client-bound and
        # CPU/request is the figure to compare.
        mark=""
        awk -v w="$wpct" 'BEGIN { exit !(w >= 95) }' && mark="*"
        printf '%-8s %-11s %12.0f %10.3f %6.0f %5.0f%1s %10s %12s %10s\n' "$s" "$SCENARIO" "${MR[$k]}" "${MC[$k]}" \
            "$spct" "$wpct" "$mark" "$(ratio "${MR[$k]}" "${MR[hyper/$SCENARIO]:-}")" \
            "$(ratio "${MC[$k]}" "${MC[hyper/$SCENARIO]:-}")" "$(ratio "${MR[$k]}" "${MR[nginx/$SCENARIO]:-}")"
    done
done
echo "(srv%/wrk%: share of its core the server/wrk used during the run; * wrk >= 95%: req/s is"
echo " bounded by the client, compare cpu_us/req. Both well under 100: a core was shared with"
echo " something else (rerun on a quiet machine, or ROUNDS=3) or the server stalls.)"

# Targets from issue 2, checked when reaktor and the peers were measured.
target() { # DESCRIPTION VALUE OP LIMIT
    local verdict=FAIL
    if [[ $2 == "-" ]]; then
        verdict="n/a"
    elif [[ $3 == ge ]] && ge "$2" "$4"; then
        verdict=PASS
    elif [[ $3 == le ]] && le "$2" "$4"; then
        verdict=PASS
    fi
    printf '  %-4s %-38s %s (target %s %s)\n' "$verdict" "$1" "$2" "$([[ $3 == ge ]] && echo '>=' || echo '<=')" "$4"
}
if [[ -n ${MR[reaktor/keepalive]:-}${MR[reaktor/pipeline$DEPTH]:-} ]]; then
    echo
    echo "targets (issue 2):"
    if [[ -n ${MR[reaktor/keepalive]:-} ]]; then
        target "keepalive req/s vs hyper" "$(ratio "${MR[reaktor/keepalive]}" "${MR[hyper/keepalive]:-}")" ge 1.0
        target "keepalive CPU/req vs hyper" "$(ratio "${MC[reaktor/keepalive]}" "${MC[hyper/keepalive]:-}")" le 1.0
    fi
    k=pipeline$DEPTH
    if [[ -n ${MR[reaktor/$k]:-} ]]; then
        target "$k req/s vs hyper" "$(ratio "${MR[reaktor/$k]}" "${MR[hyper/$k]:-}")" ge 1.2
        target "$k req/s vs nginx" "$(ratio "${MR[reaktor/$k]}" "${MR[nginx/$k]:-}")" ge 5.0
        target "$k CPU/req vs hyper" "$(ratio "${MC[reaktor/$k]}" "${MC[hyper/$k]:-}")" le 0.7
    fi
fi
echo
echo "results appended to ${RESULTS_TSV#"$ROOT"/}"
