# shellcheck shell=bash
# Shared helpers for the side-by-side benchmarks in benches/. Source it:
#   . "$(dirname "$0")/lib.sh"
#
# Functions:
#   cpu_ticks PID           utime+stime (clock ticks) of PID, its process group and its children
#   wait_port HOST PORT [S] wait up to S seconds (default 10) until HOST:PORT accepts TCP
#   check_affinity NAME PID CPUS  warn if any thread of the server may run outside CPUS
#   start_server NAME CPU CMD...  start CMD pinned to CPU in its own session; sets STARTED_PID
#   stop_servers            SIGTERM then SIGKILL every process group started by start_server
#   stop_wrk                end the wrk that run_wrk is running, if any (for traps)
#   one_member_cluster STATE_DIR API_PORT PEER_PORT
#       print the topology lines that make a switch topology a one-member [cluster] (append
#       them to examples/bench-switch.toml's copy): it elects itself and serves as master;
#       clocks CLUSTER_TICK_MS=5 CLUSTER_HEARTBEAT_MS=20 CLUSTER_ELECTION_TIMEOUT_MS=150 (the
#       example cluster's)
#   run_wrk NAME URL CONNS DURATION [LUA [LUA_ARGS...]]
#       run wrk pinned to $WRK_CPU (default 1) against the server whose pid is $SERVER_PID,
#       print one result line, append one TSV line to $RESULTS_TSV and set
#       LAST_RPS, LAST_REQUESTS, LAST_CPU_US, LAST_SERVER_PCT, LAST_WRK_PCT, LAST_GEN_CPU_US
#       (the load generator's own CPU per request), LAST_ERRORS.
#   run_load NAME ADDR CONNS DURATION_S DEPTH
#       (LOAD_TLS_CA=CA.pem [LOAD_TLS_NAME=localhost]: over TLS 1.3, the certificate checked)
#       the same with benches/peers/http-load (HTTP_LOAD_BIN) instead of wrk: DEPTH 1 is
#       keep-alive, more is pipelined, RATE=R (with DEPTH 1) the open loop at R requests/s;
#       it measures the server's and its own CPU in its window. Also sets LAST_P99_US.
#       With SYSCALLS=1 it also counts the server's system calls (perf stat on tracepoints,
#       which slows every call a little: take CPU figures from runs without it) in the middle
#       of the window and prints them per request (LAST_SYSCALLS).
#
# Variables read by run_wrk: SERVER_PID (required), SCENARIO (label, default "-"),
#   DEPTH (pipeline depth recorded in the TSV, default 1), WRK_CPU (default 1),
#   RESULTS_TSV (default benches/results/<bench>.tsv), BENCH_NAME (default "bench").

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLK_TCK=$(getconf CLK_TCK)
: "${WRK_CPU:=1}"
: "${BENCH_NAME:=bench}"

log() { printf '%s\n' "$*" >&2; }

# utime+stime of one process, in clock ticks; 0 if it is gone. Fields 14 and 15 of
# /proc/PID/stat; the command name (field 2) may hold spaces, so count from the last ')'.
proc_ticks() {
    local line rest
    if ! { read -r line <"/proc/$1/stat"; } 2>/dev/null; then
        echo 0
        return
    fi
    rest=${line##*) }
    # rest starts at field 3 (state): utime is field 14 = word 12, stime field 15 = word 13.
    local -a f
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

# cpu_ticks PID: CPU time of a server in clock ticks, summed over PID, every process in its
# process group (start_server makes PID a group leader) and its direct children. nginx's
# worker is a child of the master, so this counts master + worker.
cpu_ticks() {
    local pid=$1 total=0 p
    local -A seen=()
    for p in "$pid" $(pgrep -g "$pid" 2>/dev/null) $(pgrep -P "$pid" 2>/dev/null); do
        [[ -n ${seen[$p]:-} ]] && continue
        seen[$p]=1
        total=$((total + $(proc_ticks "$p")))
    done
    echo "$total"
}

# wait_port HOST PORT [TIMEOUT_S]: 0 once a TCP connect succeeds, 1 on timeout.
wait_port() {
    local host=$1 port=$2 timeout=${3:-10} i
    for ((i = 0; i < timeout * 20; i++)); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# port_busy HOST PORT: 0 if something already listens there.
port_busy() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# check_affinity NAME PID CPUS: every thread of PID (and of its group/children) must be
# allowed on CPUS only (e.g. "0"). A server that pins its own threads elsewhere with
# sched_setaffinity would otherwise silently share wrk's core.
check_affinity() {
    local name=$1 pid=$2 want=$3 p t allowed bad=0
    for p in "$pid" $(pgrep -g "$pid" 2>/dev/null) $(pgrep -P "$pid" 2>/dev/null); do
        for t in /proc/"$p"/task/*; do
            allowed=$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status" 2>/dev/null) || continue
            [[ -z $allowed ]] && continue
            if [[ $allowed != "$want" ]]; then
                log "WARNING: $name thread ${t##*/} (pid $p) may run on CPUs $allowed, not $want"
                bad=1
            fi
        done
    done
    return "$bad"
}

# start_server NAME CPU CMD...: start CMD pinned to CPU in a new session (so it is its own
# process group, which cpu_ticks and stop_servers use). Sets STARTED_PID; output goes to
# $LOG_DIR/NAME.log (LOG_DIR defaults to a temp dir).
declare -a _SERVER_PGIDS=()
start_server() {
    local name=$1 cpu=$2
    shift 2
    : "${LOG_DIR:=$(mktemp -d)}"
    # In a non-interactive shell the background child is not a group leader, so setsid
    # execs in place: $! is the server itself, and its pid is its process group id.
    setsid taskset -c "$cpu" "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
    STARTED_PID=$!
    _SERVER_PGIDS+=("$STARTED_PID")
}

# one_member_cluster STATE_DIR API_PORT PEER_PORT: a one-member [cluster] for a switch topology.
# The member's election (the raft kind, added by the planner) and the cluster kind (for
# /readyz) get threads of their own; the benchmarks pin the whole process to one cpu.
one_member_cluster() {
    cat <<TOML

[[core]]
nuklei = ["cluster"]

[[http.route]]
path = "/readyz"
to = "cluster"

[cluster]
id = 1
state_dir = "$1"
tick_ms = ${CLUSTER_TICK_MS:-5}
heartbeat_ms = ${CLUSTER_HEARTBEAT_MS:-20}
election_timeout_ms = ${CLUSTER_ELECTION_TIMEOUT_MS:-150}

[[cluster.member]]
id = 1
peer = "127.0.0.1:$3"
api = "http://127.0.0.1:$2"
TOML
}

# stop_wrk: end a wrk that run_wrk is waiting for (call from a signal/EXIT trap).
WRK_PID=
stop_wrk() {
    if [[ -n ${WRK_PID:-} ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        WRK_PID=
    fi
}

stop_servers() {
    local pg i alive
    ((${#_SERVER_PGIDS[@]} == 0)) && return 0
    for pg in "${_SERVER_PGIDS[@]}"; do
        kill -TERM -- "-$pg" 2>/dev/null || true
    done
    for ((i = 0; i < 40; i++)); do
        alive=0
        for pg in "${_SERVER_PGIDS[@]}"; do
            kill -0 -- "-$pg" 2>/dev/null && alive=1
        done
        ((alive == 0)) && break
        sleep 0.05
    done
    for pg in "${_SERVER_PGIDS[@]}"; do
        kill -KILL -- "-$pg" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    _SERVER_PGIDS=()
}

# CPU time (ticks) of this shell's reaped children: wrk's CPU after it has been waited for.
_children_ticks() {
    local line rest
    read -r line <"/proc/$$/stat"
    rest=${line##*) }
    local -a f
    read -r -a f <<<"$rest"
    # cutime field 16 = word 14, cstime field 17 = word 15.
    echo $((f[13] + f[14]))
}

_now_ns() { date +%s%N; }
_us() { if [[ $1 == - ]]; then echo -; else echo "${1}us"; fi; }

# wrk latency like "1.23ms", "850.00us", "2.01s" -> microseconds (integer).
_lat_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000;
        else if (u == "m") m = 60000000; else { print "-"; exit }
        printf "%.0f", n * m }'
}

TSV_HEADER=$'time\tgit\tbench\tserver\tscenario\tconns\tdepth\tduration_s\trequests\treq_per_s\tserver_cpu_s\tcpu_us_per_req\tserver_cpu_pct\twrk_cpu_pct\tp50_us\tp99_us\terrors\tgenerator\tgen_cpu_us_per_req'

# _record NAME SCENARIO CONNS DEPTH WALL_S REQUESTS RPS P50 P99 ERRORS GENERATOR: print the
# result line and append the TSV line of the LAST_* figures.
_record() {
    local name=$1 scenario=$2 conns=$3 depth=$4 wall_s=$5 requests=$6 rps=$7 p50=$8 p99=$9
    local errors=${10} generator=${11}
    printf '%-8s %-10s %-8s %12s req/s  %8s us CPU/req  server CPU %4s%%  %s %8s us/req %4s%%  p50 %8s  p99 %9s  errors %s\n' \
        "$name" "$scenario" "$generator" "$rps" "$LAST_CPU_US" "$LAST_SERVER_PCT" "$generator" \
        "$LAST_GEN_CPU_US" "$LAST_WRK_PCT" "$(_us "$p50")" "$(_us "$p99")" "$errors"
    mkdir -p "$(dirname "$RESULTS_TSV")"
    [[ -s $RESULTS_TSV ]] || printf '%s\n' "$TSV_HEADER" >"$RESULTS_TSV"
    local rev
    rev=$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo -)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$rev" "$BENCH_NAME" "$name" "$scenario" "$conns" "$depth" \
        "$wall_s" "$requests" "$rps" "$LAST_CPU_S" "$LAST_CPU_US" "$LAST_SERVER_PCT" "$LAST_WRK_PCT" \
        "$p50" "$p99" "$errors" "$generator" "$LAST_GEN_CPU_US" >>"$RESULTS_TSV"
}

# http-load (benches/peers/http-load), built by build_http_load.
HTTP_LOAD_DIR=$BENCH_DIR/peers/http-load
HTTP_LOAD_BIN=${HTTP_LOAD_BIN:-$HTTP_LOAD_DIR/target/release/http-load}
EPOLL_FLOOR_BIN=${EPOLL_FLOOR_BIN:-$HTTP_LOAD_DIR/target/release/epoll-floor}
URING_FLOOR_BIN=${URING_FLOOR_BIN:-$HTTP_LOAD_DIR/target/release/uring-floor}
build_http_load() {
    [[ -n ${SKIP_BUILD:-} && -x $HTTP_LOAD_BIN ]] && return 0
    log "building http-load and epoll-floor (release)..."
    (cd "$HTTP_LOAD_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
}

# prepare_generators "GENERATORS": checks each load generator's name (http-load, wrk) and
# builds http-load if it is one of them; exits on an unknown name or a failed build.
prepare_generators() {
    local g
    for g in $1; do
        case $g in
        http-load)
            if ! build_http_load; then
                log "build of $HTTP_LOAD_DIR failed"
                exit 1
            fi
            ;;
        wrk) ;;
        *)
            log "unknown generator $g (known: http-load wrk)"
            exit 1
            ;;
        esac
    done
}

# keep_last KEY: appends the last run's figures (LAST_RPS, LAST_CPU_US, LAST_GEN_CPU_US,
# LAST_WRK_PCT, LAST_SERVER_PCT, LAST_P99_US; set by run_load and run_wrk) to the caller's
# global associative arrays RPS, CPU, GEN, WRKPCT, SRVPCT and P99 under KEY, space-separated
# (read back with `median`).
keep_last() {
    RPS[$1]+="$LAST_RPS "
    CPU[$1]+="$LAST_CPU_US "
    GEN[$1]+="$LAST_GEN_CPU_US "
    WRKPCT[$1]+="$LAST_WRK_PCT "
    SRVPCT[$1]+="$LAST_SERVER_PCT "
    P99[$1]+="${LAST_P99_US:--} "
}

# _kv KEY LINE: the value of KEY=value in a line of http-load's output.
_kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' <<<"$2"; }

run_load() {
    local name=$1 addr=$2 conns=$3 duration=$4 depth=$5
    : "${SERVER_PID:?run_load needs SERVER_PID}"
    local scenario=${SCENARIO:--}
    : "${RESULTS_TSV:=$BENCH_DIR/results/$BENCH_NAME.tsv}"
    local outf out rc=0
    outf=$(mktemp "${LOG_DIR:-${TMPDIR:-/tmp}}/load.XXXXXX")
    # In the background and waited for, like wrk in run_wrk (so a trapped Ctrl-C ends it).
    local -a rate=() tls=()
    [[ -n ${RATE:-} ]] && rate=(--rate "$RATE")
    [[ -n ${LOAD_TLS_CA:-} ]] && tls=(--tls-ca "$LOAD_TLS_CA" --tls-name "${LOAD_TLS_NAME:-localhost}")
    taskset -c "$WRK_CPU" "$HTTP_LOAD_BIN" --addr "$addr" --conns "$conns" --depth "$depth" \
        --duration "$duration" --warmup "${LOAD_WARMUP:-1}" --server-pid "$SERVER_PID" "${rate[@]}" \
        "${tls[@]}" >"$outf" 2>&1 &
    WRK_PID=$!
    local perf_out="" perf_s=0
    if [[ -n ${SYSCALLS:-} ]]; then
        perf_out=$(mktemp "${LOG_DIR:-${TMPDIR:-/tmp}}/perf.XXXXXX")
        perf_s=$(awk -v d="$duration" 'BEGIN { s = d - 1; if (s < 1) s = 1; print s }')
        sleep "$(awk -v w="${LOAD_WARMUP:-1}" 'BEGIN { print w + 0.5 }')"
        perf stat -x, -o "$perf_out" -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sched_yield,context-switches \
            -p "$(pgrep -d, -g "$SERVER_PID")" -- sleep "$perf_s" >/dev/null 2>&1 || true
    fi
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    out=$(grep '^http-load ' "$outf" || true)
    if ((rc != 0)) || [[ -z $out ]]; then
        log "http-load failed for $name ($rc):"
        log "$(<"$outf")"
        rm -f "$outf"
        return 1
    fi
    rm -f "$outf"
    local requests errors
    requests=$(_kv requests "$out")
    errors=$(($(_kv errors "$out") + $(_kv non2xx "$out")))
    # shellcheck disable=SC2034
    {
        LAST_RPS=$(_kv rps "$out")
        LAST_REQUESTS=$requests
        LAST_ERRORS=$errors
        LAST_CPU_S=$(_kv server_cpu_s "$out")
        LAST_CPU_US=$(_kv server_cpu_us_per_req "$out")
        LAST_SERVER_PCT=$(_kv server_cpu_pct "$out")
        LAST_WRK_PCT=$(_kv cpu_pct "$out")
        LAST_GEN_CPU_US=$(_kv cpu_us_per_req "$out")
        LAST_P99_US=$(_kv p99_us "$out")
    }
    if [[ -z $requests || $requests -eq 0 ]]; then
        log "http-load counted no responses from $name: $out"
        return 1
    fi
    _record "$name" "$scenario" "$conns" "$depth" "$(_kv duration_s "$out")" "$requests" "$LAST_RPS" \
        "$(_kv p50_us "$out")" "$(_kv p99_us "$out")" "$errors" http-load
    if [[ -n $perf_out ]]; then
        # Per request: each counter over the requests answered while perf counted (at the
        # window's rate; the server is slowed a little by the counting itself).
        LAST_SYSCALLS=$(awk -F, -v rps="$LAST_RPS" -v s="$perf_s" '
            $3 ~ /sys_enter|context-switches/ && $1 ~ /^[0-9]+$/ {
                name = $3; sub(/^.*sys_enter_?/, "", name); if (name == "") name = "all"
                printf "%s%s=%.3f", sep, name, $1 / (rps * s); sep = " " }' "$perf_out")
        printf '%-8s %-10s syscalls per request: %s\n' "$name" "$scenario" "$LAST_SYSCALLS"
        rm -f "$perf_out"
    fi
}

run_wrk() {
    local name=$1 url=$2 conns=$3 duration=$4
    shift 4
    local -a script=() script_args=()
    if (($# > 0)); then
        script=(-s "$1")
        shift
        # wrk wants the URL before `--`; what follows `--` goes to the script's init(args).
        (($# > 0)) && script_args=(-- "$@")
    fi
    : "${SERVER_PID:?run_wrk needs SERVER_PID}"
    local scenario=${SCENARIO:--} depth=${DEPTH:-1}
    : "${RESULTS_TSV:=$BENCH_DIR/results/$BENCH_NAME.tsv}"

    local t0 t1 c0 c1 w0 w1 out rc=0
    c0=$(cpu_ticks "$SERVER_PID")
    w0=$(_children_ticks)
    t0=$(_now_ns)
    # wrk runs in the background and we `wait` for it: unlike a foreground command, `wait`
    # returns as soon as a trapped signal (Ctrl-C) arrives, so the caller's trap can stop the
    # servers and wrk (stop_wrk) at once. Being reaped by this shell, its CPU shows in cutime.
    local outf
    outf=$(mktemp "${LOG_DIR:-${TMPDIR:-/tmp}}/wrk.XXXXXX")
    taskset -c "$WRK_CPU" wrk -t1 -c"$conns" -d"$duration" --latency "${script[@]}" "$url" "${script_args[@]}" >"$outf" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    t1=$(_now_ns)
    out=$(<"$outf")
    rm -f "$outf"
    w1=$(_children_ticks)
    c1=$(cpu_ticks "$SERVER_PID")
    if ((rc != 0)); then
        log "wrk failed for $name ($rc):"
        log "$out"
        return 1
    fi
    [[ -n ${WRK_VERBOSE:-} ]] && log "$out"

    local requests rps p50 p99 errors
    requests=$(awk '/requests in/ {print $1; exit}' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ {print $2; exit}' <<<"$out")
    # wrk's latency histogram is meaningless with pipelining (it records one sample per
    # write and prints 0.00us for the upper percentiles), so keep it only for depth 1.
    p50=- p99=-
    if ((depth <= 1)); then
        p50=$(_lat_us "$(awk '$1 == "50%" {print $2; exit}' <<<"$out")")
        p99=$(_lat_us "$(awk '$1 == "99%" {print $2; exit}' <<<"$out")")
    fi
    # Socket errors (connect/read/write/timeout) and non-2xx responses, summed.
    errors=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                  /Non-2xx or 3xx responses:/ { s += $NF }
                  END { print s + 0 }' <<<"$out")
    if [[ -z $requests || -z $rps || $requests -eq 0 ]]; then
        log "could not parse wrk output for $name:"
        log "$out"
        return 1
    fi

    local dticks=$((c1 - c0)) dwrk=$((w1 - w0)) wall_ns=$((t1 - t0))
    read -r LAST_CPU_S LAST_CPU_US LAST_SERVER_PCT LAST_WRK_PCT LAST_GEN_CPU_US < <(awk \
        -v d="$dticks" -v w="$dwrk" -v hz="$CLK_TCK" -v n="$requests" -v ns="$wall_ns" 'BEGIN {
            cpu = d / hz; wall = ns / 1e9
            printf "%.2f %.3f %.0f %.0f %.3f\n", cpu, cpu * 1e6 / n, 100 * cpu / wall, 100 * (w / hz) / wall,
                (w / hz) * 1e6 / n }')
    # Results for the caller (read after run_wrk returns).
    # shellcheck disable=SC2034
    {
        LAST_P99_US=$p99
        LAST_RPS=$rps
        LAST_REQUESTS=$requests
        LAST_ERRORS=$errors
    }
    _record "$name" "$scenario" "$conns" "$depth" "$(awk -v ns="$wall_ns" 'BEGIN {printf "%.2f", ns / 1e9}')" \
        "$requests" "$rps" "$p50" "$p99" "$errors" wrk
}

# ---- shared by the side-by-side wrk benchmarks (http_hello.sh, https_hello.sh) ---------------

skip() { log "SKIP $1: $2"; }

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR] = $1} END {
    if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }

# launch NAME ADDR CMD...: start CMD pinned to $SERVER_CPU, wait for ADDR to listen, check the
# answer with the caller's "$CHECK_FN HOST PORT" (described by $CHECK_WHAT), check affinity, and
# record PID[NAME], URL[NAME] ($SCHEME://ADDR/) and ACTIVE. A server that fails is skipped.
launch() {
    local name=$1 addr=$2
    shift 2
    local host=${addr%:*} port=${addr##*:}
    if port_busy "$host" "$port"; then
        skip "$name" "something already listens on $addr (stop it or set ${name^^}_ADDR)"
        return 0
    fi
    start_server "$name" "$SERVER_CPU" "$@"
    local pid=$STARTED_PID
    if ! wait_port "$host" "$port" 15; then
        skip "$name" "did not listen on $addr within 15 s; log tail:"
        tail -n 20 "$LOG_DIR/$name.log" >&2 || true
        kill -TERM -- "-$pid" 2>/dev/null || true
        return 0
    fi
    if ! "$CHECK_FN" "$host" "$port"; then
        skip "$name" "$SCHEME://$addr/ $CHECK_WHAT"
        kill -TERM -- "-$pid" 2>/dev/null || true
        return 0
    fi
    check_affinity "$name" "$pid" "$SERVER_CPU" || true
    # PID and URL are the calling script's associative arrays.
    # shellcheck disable=SC2034,SC2004
    PID[$name]=$pid
    # shellcheck disable=SC2034,SC2004
    URL[$name]="$SCHEME://$addr/"
    ACTIVE+=("$name")
    log "started $name: pid $pid on $addr, core $SERVER_CPU"
}
