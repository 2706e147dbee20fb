#!/usr/bin/env bash
# Side-by-side HTTP/1.1 "Hello, World!" benchmark (issues 2 and 18): the floor (a bare epoll
# responder), reaktor, hyper and nginx in one run, driven by two load generators in turn.
#
# Every server answers GET / with the 13-byte body "Hello, World!" (text/plain). Each server is
# pinned to core $SERVER_CPU (default 0) and the load generator to core $WRK_CPU (default 1).
# The figure to compare is the server's CPU time per request (utime+stime of the server, its
# process group and its children, from /proc), not req/s: a generator that saturates its core
# bounds req/s. Each row also shows the generator's own CPU per request, so one can see that it
# was not the bound.
#
# Servers:
#   floor     benches/peers/http-load `epoll-floor`: one thread, mio, a fixed response per head;
#             the least a server can spend per request on this kernel
#   ufloor    benches/peers/http-load `uring-floor`: the same over io_uring, with the uring
#             transport's design (multishot accept and receive, provided buffers, the sends of a
#             loop in one submit that also waits): the least an io_uring server can spend, the
#             measure of whether "io_uring ≤ 0.9× the epoll floor" can be reached at all here
#   udefer    uring-floor with --defer-taskrun (IORING_SETUP_DEFER_TASKRUN: the kernel's
#             completion work runs only inside the server's io_uring_enter), beside ufloor
#   reaktor   examples/bench.toml (tcp, http, echo fused on one core)
#   uring     the same reaktor and topology with `[tcp] transport = "io_uring"` (skipped, with
#             the reason, if the reaktor falls back to epoll)
#   hyper     benches/peers/hyper-hello (current-thread tokio, pipeline_flush)
#   nginx     Debian's, one worker
# Generators:
#   http-load benches/peers/http-load (one mio thread; measures the server's and its own CPU in
#             its measured window, after LOAD_WARMUP seconds)
#   wrk       the familiar reference (-t1; pipelining with benches/wrk/pipeline.lua); its CPU is
#             what this shell's reaped child used
# Scenarios, each server in turn (interleaved, same conditions; the order rotates each round):
#   keepalive   CONNS keep-alive connections, one request in flight per connection
#   pipelineN   CONNS connections, DEPTH requests pipelined per write
#   openR       (http-load only) open loop: RATE requests/s over CONNS connections, latency
#               from each request's due time (no coordinated omission); compare p99_us
#
# Environment:
#   DURATION=10      seconds per measured run
#   CONNS=64         connections
#   DEPTH=16         pipelined requests per write in the pipeline scenario
#   RATE=50000       requests/s of the open scenario (not in SCENARIOS by default)
#   SERVERS="floor reaktor hyper nginx"   (add `uring` for the io_uring transport)
#   GENERATORS="http-load wrk"
#   SCENARIOS="keepalive pipeline"
#   ROUNDS=1         repeat the interleaved rounds; the table shows the median and the range
#   WARMUP=2         seconds of warm-up per server before measuring; LOAD_WARMUP=1 (http-load)
#   SERVER_CPU=0 WRK_CPU=1
#   SKIP_BUILD=1     do not run cargo (use the binaries already built)
#   REAKTOR_BIN=<target>/release/reaktor   REAKTOR_TOPOLOGY=examples/bench.toml
#   REAKTOR_ADDR=127.0.0.1:8080  HYPER_ADDR=127.0.0.1:8081  NGINX_ADDR=127.0.0.1:8082
#   FLOOR_ADDR=127.0.0.1:8083  URING_ADDR=127.0.0.1:8085  UFLOOR_ADDR=127.0.0.1:8086
#   UDEFER_ADDR=127.0.0.1:8087
#   A/B in one run: the server `reaktor-b` is a second reaktor (REAKTOR_B_BIN, default
#   REAKTOR_BIN; REAKTOR_B_TOPOLOGY, default REAKTOR_TOPOLOGY; REAKTOR_B_ADDR=127.0.0.1:8084,
#   which its topology's listener must use), measured in the same rounds as the others.
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
SERVERS=${SERVERS:-floor reaktor hyper nginx}
GENERATORS=${GENERATORS:-http-load wrk}
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
FLOOR_ADDR=${FLOOR_ADDR:-127.0.0.1:8083}
REAKTOR_B_BIN=${REAKTOR_B_BIN:-$REAKTOR_BIN}
REAKTOR_B_TOPOLOGY=${REAKTOR_B_TOPOLOGY:-$REAKTOR_TOPOLOGY}
REAKTOR_B_ADDR=${REAKTOR_B_ADDR:-127.0.0.1:8084}
URING_ADDR=${URING_ADDR:-127.0.0.1:8085}
UFLOOR_ADDR=${UFLOOR_ADDR:-127.0.0.1:8086}
UDEFER_ADDR=${UDEFER_ADDR:-127.0.0.1:8087}
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

# start_reaktor NAME BIN TOPOLOGY ADDR [EXTRA]: the topology's listener is moved to ADDR (a
# copy of the file in the temp dir, so the same topology serves reaktor and reaktor-b); EXTRA
# (TOML tables) is appended to the copy.
start_reaktor() {
    local name=$1 bin=$2 topology=$3 addr=$4 extra=${5:-}
    if [[ ! -f $topology ]]; then
        skip "$name" "topology $topology does not exist yet"
        return 0
    fi
    if ! build_reaktor; then
        skip "$name" "build failed"
        return 0
    fi
    if [[ ! -x $bin ]]; then
        skip "$name" "$bin does not exist"
        return 0
    fi
    local copy=$WORK/$name.toml
    sed -E "s/^address = \"127\.0\.0\.1:[0-9]+\"/address = \"$addr\"/" "$topology" >"$copy"
    [[ -n $extra ]] && printf '\n%s\n' "$extra" >>"$copy"
    launch "$name" "$addr" "$bin" run --topology "$copy"
}

# The io_uring transport; a reaktor that fell back to epoll would measure epoll: not kept.
start_uring() {
    start_reaktor uring "$REAKTOR_BIN" "$REAKTOR_TOPOLOGY" "$URING_ADDR" $'[tcp]\ntransport = "io_uring"'
    if [[ -n ${PID[uring]:-} ]] && grep -q "falling back to epoll" "$LOG_DIR/uring.log"; then
        log "uring: $(grep -m1 "falling back to epoll" "$LOG_DIR/uring.log")"
        kill "${PID[uring]}" 2>/dev/null || true
        unset "PID[uring]"
        local kept=()
        for s in "${ACTIVE[@]}"; do [[ $s == uring ]] || kept+=("$s"); done
        ACTIVE=("${kept[@]}")
        skip uring "io_uring unavailable (the reaktor fell back to epoll)"
    fi
}

start_hyper() {
    if ! build_hyper; then
        skip hyper "build of $HYPER_DIR failed"
        return 0
    fi
    launch hyper "$HYPER_ADDR" "$HYPER_BIN" "$HYPER_ADDR"
}

start_floor() {
    if ! build_http_load; then
        skip floor "build of $HTTP_LOAD_DIR failed"
        return 0
    fi
    launch floor "$FLOOR_ADDR" "$EPOLL_FLOOR_BIN" "$FLOOR_ADDR"
}

start_ufloor() {
    if ! build_http_load; then
        skip ufloor "build of $HTTP_LOAD_DIR failed"
        return 0
    fi
    launch ufloor "$UFLOOR_ADDR" "$URING_FLOOR_BIN" "$UFLOOR_ADDR"
}

start_udefer() {
    if ! build_http_load; then
        skip udefer "build of $HTTP_LOAD_DIR failed"
        return 0
    fi
    launch udefer "$UDEFER_ADDR" "$URING_FLOOR_BIN" "$UDEFER_ADDR" --defer-taskrun
}

prepare_generators "$GENERATORS"

for s in $SERVERS; do
    case $s in
    floor) start_floor ;;
    ufloor) start_ufloor ;;
    udefer) start_udefer ;;
    reaktor) start_reaktor reaktor "$REAKTOR_BIN" "$REAKTOR_TOPOLOGY" "$REAKTOR_ADDR" ;;
    reaktor-b) start_reaktor reaktor-b "$REAKTOR_B_BIN" "$REAKTOR_B_TOPOLOGY" "$REAKTOR_B_ADDR" ;;
    uring) start_uring ;;
    hyper) start_hyper ;;
    nginx) start_nginx ;;
    *) skip "$s" "unknown server (known: floor ufloor udefer reaktor reaktor-b uring hyper nginx)" ;;
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

declare -A RPS=() CPU=() GEN=() WRKPCT=() SRVPCT=() P99=()
RATE_OPEN=${RATE:-50000}
unset RATE
scenario_label() {
    case $1 in
    keepalive) echo keepalive ;;
    pipeline) echo "pipeline$DEPTH" ;;
    open) echo "open$RATE_OPEN" ;;
    esac
}

echo "# http_hello: ${DURATION}s per run, $CONNS connections, pipeline depth $DEPTH, servers on core $SERVER_CPU, generators ($GENERATORS) on core $WRK_CPU, $ROUNDS round(s), $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((round = 0; round < ROUNDS; round++)); do
    # Rotate the server order each round so that no server always runs first or last.
    order=("${ACTIVE[@]:round % ${#ACTIVE[@]}}" "${ACTIVE[@]:0:round % ${#ACTIVE[@]}}")
    for sc in $SCENARIOS; do
        SCENARIO=$(scenario_label "$sc")
        if [[ -z $SCENARIO ]]; then
            log "unknown scenario $sc (known: keepalive pipeline open)"
            exit 1
        fi
        depth=$DEPTH
        [[ $sc == keepalive || $sc == open ]] && depth=1
        for g in $GENERATORS; do
            [[ $sc == open && $g != http-load ]] && continue
            for s in "${order[@]}"; do
                SERVER_PID=${PID[$s]}
                if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                    log "$s (pid $SERVER_PID) has exited; log tail:"
                    tail -n 20 "$LOG_DIR/$s.log" >&2 || true
                    continue
                fi
                addr=${URL[$s]#http://}
                addr=${addr%/}
                if [[ $sc == open ]]; then
                    RATE=$RATE_OPEN DEPTH=1 run_load "$s" "$addr" "$CONNS" "$DURATION" 1 || continue
                elif [[ $g == http-load ]]; then
                    DEPTH=$depth run_load "$s" "$addr" "$CONNS" "$DURATION" "$depth" || continue
                elif ((depth == 1)); then
                    DEPTH=1 run_wrk "$s" "${URL[$s]}" "$CONNS" "${DURATION}s" || continue
                else
                    run_wrk "$s" "${URL[$s]}" "$CONNS" "${DURATION}s" "$PIPELINE_LUA" "$DEPTH" || continue
                fi
                keep_last "$g/$s/$SCENARIO"
                sleep 1
            done
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Table

ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a >= b) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a <= b) }'; }
range() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR > 1) printf "%s-%s", lo, hi; else printf "-" }'; }

# target DESCRIPTION VALUE OP LIMIT
target() {
    local verdict=FAIL
    if [[ $2 == "-" ]]; then
        verdict="n/a"
    elif [[ $3 == ge ]] && ge "$2" "$4"; then
        verdict=PASS
    elif [[ $3 == le ]] && le "$2" "$4"; then
        verdict=PASS
    fi
    printf '  %-4s %-42s %s (target %s %s)\n' "$verdict" "$1" "$2" "$([[ $3 == ge ]] && echo '>=' || echo '<=')" "$4"
}

declare -A MR=() MC=()
for g in $GENERATORS; do
    echo
    echo "generator: $g"
    printf '%-9s %-11s %10s %10s %13s %5s %10s %5s %8s %8s %8s %9s %8s %9s\n' server scenario req/s cpu_us/req range srv% gen_us/req gen% x_floor x_hyper x_nginx x_reaktor rps_x_hy p99_us
    for sc in $SCENARIOS; do
        SCENARIO=$(scenario_label "$sc")
        for s in "${ACTIVE[@]}"; do
            k=$g/$s/$SCENARIO
            [[ -n ${RPS[$k]:-} ]] || continue
            MR[$k]=$(median <<<"${RPS[$k]}")
            MC[$k]=$(median <<<"${CPU[$k]}")
        done
        for s in "${ACTIVE[@]}"; do
            k=$g/$s/$SCENARIO
            [[ -n ${MR[$k]:-} ]] || continue
            # '*': the generator used >= 95% of its core, so req/s is the client's bound.
            wpct=$(median <<<"${WRKPCT[$k]}")
            mark=""
            awk -v w="$wpct" 'BEGIN { exit !(w >= 95) }' && mark="*"
            printf '%-9s %-11s %10.0f %10.3f %13s %5.0f %10.3f %4.0f%1s %8s %8s %8s %9s %8s %9s\n' "$s" "$SCENARIO" \
                "${MR[$k]}" "${MC[$k]}" "$(range <<<"${CPU[$k]}")" "$(median <<<"${SRVPCT[$k]}")" \
                "$(median <<<"${GEN[$k]}")" "$wpct" "$mark" \
                "$(ratio "${MC[$k]}" "${MC[$g/floor/$SCENARIO]:-}")" \
                "$(ratio "${MC[$k]}" "${MC[$g/hyper/$SCENARIO]:-}")" \
                "$(ratio "${MC[$k]}" "${MC[$g/nginx/$SCENARIO]:-}")" \
                "$(ratio "${MC[$k]}" "${MC[$g/reaktor/$SCENARIO]:-}")" \
                "$(ratio "${MR[$k]}" "${MR[$g/hyper/$SCENARIO]:-}")" \
                "$(tr ' ' '\n' <<<"${P99[$k]}" | grep -v '^-$' | median)"
        done
    done
    k=pipeline$DEPTH
    if [[ -n ${MC[$g/uring/keepalive]:-}${MC[$g/uring/$k]:-} ]]; then
        echo "targets (issue 18, io_uring transport, server CPU per request, medians):"
        if [[ -n ${MC[$g/uring/keepalive]:-} ]]; then
            target "uring keepalive CPU/req vs floor" "$(ratio "${MC[$g/uring/keepalive]}" "${MC[$g/floor/keepalive]:-}")" le 0.9
            target "uring keepalive CPU/req vs hyper" "$(ratio "${MC[$g/uring/keepalive]}" "${MC[$g/hyper/keepalive]:-}")" le 1.0
            target "uring keepalive CPU/req vs epoll reaktor (info)" "$(ratio "${MC[$g/uring/keepalive]}" "${MC[$g/reaktor/keepalive]:-}")" le 1.0
        fi
        if [[ -n ${MC[$g/uring/$k]:-} ]]; then
            target "uring $k CPU/req vs floor" "$(ratio "${MC[$g/uring/$k]}" "${MC[$g/floor/$k]:-}")" le 1.2
        fi
    fi
    if [[ -n ${MC[$g/ufloor/keepalive]:-} ]]; then
        echo "how far io_uring itself goes (the io_uring floor, no reaktor):"
        target "ufloor keepalive CPU/req vs floor (reachable?)" "$(ratio "${MC[$g/ufloor/keepalive]}" "${MC[$g/floor/keepalive]:-}")" le 0.9
        target "uring keepalive CPU/req vs ufloor (information)" "$(ratio "${MC[$g/uring/keepalive]:-}" "${MC[$g/ufloor/keepalive]}")" le 1.0
    fi
    if [[ -n ${MC[$g/udefer/keepalive]:-} ]]; then
        echo "io_uring with deferred task work (information):"
        target "udefer keepalive CPU/req vs floor" "$(ratio "${MC[$g/udefer/keepalive]}" "${MC[$g/floor/keepalive]:-}")" le 0.9
        target "udefer keepalive CPU/req vs ufloor" "$(ratio "${MC[$g/udefer/keepalive]}" "${MC[$g/ufloor/keepalive]:-}")" le 1.0
    fi
    if [[ -n ${MC[$g/reaktor/keepalive]:-}${MC[$g/reaktor/$k]:-} ]]; then
        echo "targets (issue 18, server CPU per request, medians):"
        if [[ -n ${MC[$g/reaktor/keepalive]:-} ]]; then
            target "keepalive CPU/req vs hyper" "$(ratio "${MC[$g/reaktor/keepalive]}" "${MC[$g/hyper/keepalive]:-}")" le 1.0
            target "keepalive CPU/req vs floor (information)" "$(ratio "${MC[$g/reaktor/keepalive]}" "${MC[$g/floor/keepalive]:-}")" le 1.0
        fi
        if [[ -n ${MC[$g/reaktor/$k]:-} ]]; then
            target "$k CPU/req vs floor" "$(ratio "${MC[$g/reaktor/$k]}" "${MC[$g/floor/$k]:-}")" le 1.2
            target "$k CPU/req vs hyper (issue 2: 0.7)" "$(ratio "${MC[$g/reaktor/$k]}" "${MC[$g/hyper/$k]:-}")" le 0.7
            target "$k req/s vs nginx (issue 2)" "$(ratio "${MR[$g/reaktor/$k]}" "${MR[$g/nginx/$k]:-}")" ge 5.0
        fi
    fi
done
echo
echo "(cpu_us/req: server CPU per request, median of the rounds, with its range; x_floor/x_hyper/"
echo " x_nginx/x_reaktor: that median over the peer's; gen_us/req, gen%: the generator's own CPU per request"
echo " and share of its core; * the generator used >= 95% of its core: req/s is then the client's"
echo " bound. srv% and gen% both well under 100: the cores were shared with something else."
echo " p99_us: median of the rounds' 99th percentile latency; in openR it counts from each"
echo " request's due time, elsewhere from its send (closed loop: coordinated omission applies).)"
echo
echo "results appended to ${RESULTS_TSV#"$ROOT"/}"
