#!/usr/bin/env bash
# Side-by-side HTTPS "Hello, World!" benchmark (issue 5): reaktor (tcp -> tls -> http -> echo)
# vs nginx, one run, same certificate, TLS 1.3, keep-alive.
#
# Each server answers GET / with the 13-byte body "Hello, World!" over TLS 1.3 (both serve the
# same ECDSA P-256 certificate from scripts/gen-cert.sh; wrk's OpenSSL negotiates
# TLS_AES_256_GCM_SHA384 with both). Each server is pinned to core $SERVER_CPU (default 0),
# nginx with one worker; the load generator runs on core $WRK_CPU (default 1) with CONNS
# keep-alive connections, one request in flight each (handshakes happen once per connection,
# during the warm-up). Server CPU time per request: utime+stime from /proc (benches/lib.sh).
#
# Load generators (GENERATORS, each its own table; every figure has the generator's own CPU
# per request beside it):
#   http-load benches/peers/http-load with --tls-ca (one mio thread, a rustls client per
#             connection, TLS 1.3): it checks the certificate like curl and measures the
#             server's CPU and its own in its window.
#   wrk       the familiar reference (OpenSSL). It spends more CPU per HTTPS request than
#             either server, so the servers run below saturation under it.
#
# Environment:
#   DURATION=10  CONNS=64  ROUNDS=1  WARMUP=2  SERVERS="reaktor nginx"
#   GENERATORS="http-load wrk"
#   SERVER_CPU=0 WRK_CPU=1
#   SKIP_BUILD=1     do not run cargo (use REAKTOR_BIN as it is)
#   REAKTOR_BIN=<target>/release/reaktor
#   REAKTOR_ADDR=127.0.0.1:8443  NGINX_ADDR=127.0.0.1:8444
#   KEEP_TMP=1       keep the temp dir (logs, configs, certificates)
#
# Results: a table on stdout; one TSV line per run appended to benches/results/https_hello.tsv.
# Prerequisites: scripts/install-bench-deps.sh (wrk, nginx), openssl, cargo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=https_hello
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
# How launch (benches/lib.sh) checks that a server answers.
SCHEME=https
CHECK_FN=https_check
CHECK_WHAT='did not answer 200 "Hello, World!" over TLS 1.3'

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-2}
SERVERS=${SERVERS:-reaktor nginx}
GENERATORS=${GENERATORS:-http-load wrk}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
REAKTOR_ADDR=${REAKTOR_ADDR:-127.0.0.1:8443}
NGINX_ADDR=${NGINX_ADDR:-127.0.0.1:8444}
RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/https_hello.tsv}
export WRK_CPU RESULTS_TSV BENCH_NAME

WORK=$(mktemp -d "${TMPDIR:-/tmp}/https_hello.XXXXXX")
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

for tool in wrk taskset setsid pgrep openssl curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "missing $tool: run scripts/install-bench-deps.sh"
        exit 1
    fi
done
if ((SERVER_CPU == WRK_CPU)) || (($(nproc) < 2)); then
    log "WARNING: server and wrk share a core (nproc=$(nproc)); the figures will not mean much"
fi

CERTS=$WORK/certs
"$ROOT/scripts/gen-cert.sh" "$CERTS" >/dev/null
chmod 644 "$CERTS"/*.pem # nginx's worker reads them as another user

declare -A PID=() URL=()
ACTIVE=()


# https_check HOST PORT: GET / over TLS 1.3 must answer 200 "Hello, World!".
https_check() {
    local body
    body=$(curl -sS --max-time 5 --tlsv1.3 --cacert "$CERTS/ca.pem" \
        --resolve "localhost:$2:$1" "https://localhost:$2/") || return 1
    [[ $body == "Hello, World!" ]]
}


start_reaktor() {
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "building reaktor (cargo build --release -p reaktor)..."
        if ! (cd "$ROOT" && cargo build --release -p reaktor --quiet) >"$LOG_DIR/reaktor-build.log" 2>&1; then
            log "reaktor build failed; last lines:"
            tail -n 15 "$LOG_DIR/reaktor-build.log" >&2 || true
            skip reaktor "build failed"
            return 0
        fi
    fi
    if [[ ! -x $REAKTOR_BIN ]]; then
        skip reaktor "$REAKTOR_BIN does not exist"
        return 0
    fi
    # The whole stack fused on one core; taskset pins the process.
    cat >"$WORK/reaktor.toml" <<EOF
[reaktor]
pin = false

[[listener]]
name = "https"
address = "$REAKTOR_ADDR"
chain = ["tcp", "tls", "http"]

[listener.tls]
cert = "$CERTS/server.pem"
key = "$CERTS/server-key.pem"

[[core]]
nuklei = ["tcp", "tls", "http", "echo"]

[[http.route]]
path = "/"
to = "echo"
EOF
    launch reaktor "$REAKTOR_ADDR" "$REAKTOR_BIN" run --topology "$WORK/reaktor.toml"
}

start_nginx() {
    local bin dir=$WORK/nginx
    bin=$(command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }) || {
        skip nginx "nginx not installed (scripts/install-bench-deps.sh)"
        return 0
    }
    mkdir -p "$dir"
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
        listen $NGINX_ADDR ssl;
        ssl_certificate $CERTS/server.pem;
        ssl_certificate_key $CERTS/server-key.pem;
        ssl_protocols TLSv1.3;
        location / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
    }
}
EOF
    launch nginx "$NGINX_ADDR" "$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
}

prepare_generators "$GENERATORS"
# http-load checks the servers' certificate (issued for localhost) against the bench's CA.
export LOAD_TLS_CA=$CERTS/ca.pem LOAD_TLS_NAME=localhost

for s in $SERVERS; do
    case $s in
    reaktor) start_reaktor ;;
    nginx) start_nginx ;;
    *) skip "$s" "unknown server (known: reaktor nginx)" ;;
    esac
done
if ((${#ACTIVE[@]} == 0)); then
    log "no server to benchmark"
    exit 1
fi

log "warm-up: ${WARMUP}s per server"
for s in "${ACTIVE[@]}"; do
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${URL[$s]}" >/dev/null 2>&1 || true
done

declare -A RPS=() CPU=() WRKPCT=() SRVPCT=() GEN=() P99=()
SCENARIO=keepalive
echo "# https_hello: ${DURATION}s per run, $CONNS keep-alive connections, TLS 1.3, servers on core $SERVER_CPU, load generators ($GENERATORS) on core $WRK_CPU, $ROUNDS round(s), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for ((round = 0; round < ROUNDS; round++)); do
    order=("${ACTIVE[@]:round % ${#ACTIVE[@]}}" "${ACTIVE[@]:0:round % ${#ACTIVE[@]}}")
    for g in $GENERATORS; do
        for s in "${order[@]}"; do
            SERVER_PID=${PID[$s]}
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                log "$s (pid $SERVER_PID) has exited; log tail:"
                tail -n 20 "$LOG_DIR/$s.log" >&2 || true
                continue
            fi
            if [[ $g == http-load ]]; then
                addr=${URL[$s]#https://}
                addr=${addr%/}
                run_load "$s" "$addr" "$CONNS" "$DURATION" 1 || continue
            else
                DEPTH=1 run_wrk "$s" "${URL[$s]}" "$CONNS" "${DURATION}s" || continue
            fi
            keep_last "$g/$s"
            sleep 1
        done
    done
done

declare -A MR=() MC=()
for g in $GENERATORS; do
    echo
    echo "generator: $g"
    printf '%-8s %-10s %12s %10s %13s %6s %10s %6s %10s %12s\n' server scenario req/s cpu_us/req rounds srv% gen_us/req gen% x_nginx cpu_x_nginx
    for s in "${ACTIVE[@]}"; do
        k=$g/$s
        [[ -n ${RPS[$k]:-} ]] || continue
        MR[$k]=$(median <<<"${RPS[$k]}")
        MC[$k]=$(median <<<"${CPU[$k]}")
    done
    for s in "${ACTIVE[@]}"; do
        k=$g/$s
        [[ -n ${MR[$k]:-} ]] || continue
        wpct=$(median <<<"${WRKPCT[$k]}")
        spct=$(median <<<"${SRVPCT[$k]}")
        mark=""
        awk -v w="$wpct" 'BEGIN { exit !(w >= 95) }' && mark="*"
        printf '%-8s %-10s %12.0f %10.3f %13s %6.0f %10.3f %5.0f%1s %10s %12s\n' "$s" "$SCENARIO" "${MR[$k]}" "${MC[$k]}" \
            "$(tr ' ' '\n' <<<"${CPU[$k]}" | awk 'NF' | sort -g | paste -sd/ -)" \
            "$spct" "$(median <<<"${GEN[$k]}")" "$wpct" "$mark" "$(ratio "${MR[$k]}" "${MR[$g/nginx]:-}")" "$(ratio "${MC[$k]}" "${MC[$g/nginx]:-}")"
    done
    if [[ -n ${MC[$g/reaktor]:-} && -n ${MC[$g/nginx]:-} ]]; then
        c=$(ratio "${MC[$g/reaktor]}" "${MC[$g/nginx]}")
        verdict=FAIL
        awk -v a="$c" 'BEGIN { exit !(a <= 0.8) }' && verdict=PASS
        echo "target (issue 18, $g): $verdict keepalive CPU/req vs nginx $c (target <= 0.8)"
    fi
done
echo
echo "(srv%/gen%: share of its core the server/load generator used; gen_us/req: the generator's"
echo " own CPU per request; rounds: the server's CPU per request in each round, sorted;"
echo " * generator >= 95%: req/s is bounded by the client, compare cpu_us/req.)"
