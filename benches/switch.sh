#!/usr/bin/env bash
# Port switch benchmarks (issue 4), peers side by side in one run. Every server is pinned to
# core $SERVER_CPU (default 0) with taskset, started fresh for each measurement; the load
# generator (benches/peers/switch-load: Rust, std only, one thread polling non-blocking
# sockets) is pinned to core $LOAD_CPU (default 1). Server CPU time per operation comes from
# /proc/PID/stat (utime+stime) before/after each run, so it stays comparable when a shared
# machine gives the server less than a whole core.
#
# Scenarios (SCENARIOS, default all; "memory" is an alias of "regport"):
#   regport       RegPort batches of 16-byte ports over WebSocket ({"op":"regport",...}):
#                 $NODES nodes x $DEPTH batches of $BATCH in flight until $REGPORT_PORTS
#                 (10,000,000) fresh ports are registered in an empty table; ports/s, then
#                 RSS per port (RssAnon and VmRSS deltas, /proc/PID/status).
#                 vs redis-server SETNX of as many 16-byte keys (value "bN") from the same
#                 client (RESP, $NODES conns x 4 x 64 in flight; ops/s and RSS per key), and
#                 redis-benchmark -P 64 -n $REDIS_BENCHMARK_N (the issue's reference command)
#   regport_http  the same RegPorts as pipelined keep-alive POST /v1/nodes/{node}/ports
#   sendmsg       SendMsg -> push: one sender node pipelines batches of $MSG_BATCH 64-byte
#                 bodies to one port of one receiving node (WebSocket), at most $WINDOW messages
#                 undelivered, for $DURATION s after $WARMUP s; the receiver checks order.
#                 vs nats-server: one publisher, one subscriber, same bodies, batch and window
#                 (NATS text protocol).
#   coord         RegPort and SendMsg (as above, for $DURATION s) with and without the
#                 coordination load beside them (issue 15): $COORD_WATCH_NODES x $COORD_WATCHES
#                 watches on one prefix getting $COORD_TRICKLE events/s, and a listing of
#                 $COORD_LIST_PORTS preloaded ports paged at $COORD_LIST_RATE pages/s of 1000
#                 (both variants preload the ports); rows reaktor-off / reaktor-on.
#                 COORD_WATCHERS=nodeless: the watchers are not nodes (/v1/ws/, issue 15's
#                 node-less watchers) instead of watcher nodes (default COORD_WATCHERS=nodes)
#   latency       RegPort round trips (one port each) at $RATE/s for $LAT_DURATION s, timed from
#                 the scheduled send (no coordinated omission); redis SETNX at the same rate
#
# Usage: scripts/install-bench-deps.sh && benches/switch.sh
#   env: DURATION=5 ROUNDS=1 SCENARIOS="regport regport_http sendmsg latency"
#        SERVER_CPU=0 LOAD_CPU=1 NODES=4 BATCH=1000 DEPTH=8 MSG_BATCH=1000 WINDOW=65536
#        RATE=2000 LAT_DURATION=10 REGPORT_PORTS=10000000 REDIS_BENCHMARK_N=2000000
#        PEERS=0 (reaktor alone, no redis/nats)
#        CLUSTER=1 (reaktor as a one-member [cluster]: it elects itself and serves as master,
#        so every reply is stamped and checked against the lease; CLUSTER_PEER_PORT=7195)
#        SWITCH_PORT=8095 REDIS_PORT=6395 NATS_PORT=4235 WARMUP=1 (sendmsg: seconds of load
#        before the measurement) REAKTOR_BIN=... SKIP_BUILD=1 KEEP_TMP=1
# Output: one line per run, then a table with ratios (reaktor / peer, per round); TSV lines are
# appended to benches/results/switch.tsv (git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NAME=switch
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-1}
SCENARIOS=${SCENARIOS:-regport regport_http sendmsg latency}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NODES=${NODES:-4}
BATCH=${BATCH:-1000}
DEPTH=${DEPTH:-8}
MSG_BATCH=${MSG_BATCH:-1000}
WINDOW=${WINDOW:-65536}
RATE=${RATE:-2000}
LAT_DURATION=${LAT_DURATION:-10}
REGPORT_PORTS=${REGPORT_PORTS:-10000000}
REDIS_BENCHMARK_N=${REDIS_BENCHMARK_N:-2000000}
SWITCH_PORT=${SWITCH_PORT:-8095}
REDIS_PORT=${REDIS_PORT:-6395}
NATS_PORT=${NATS_PORT:-4235}
WARMUP=${WARMUP:-1}
COORD_LIST_PORTS=${COORD_LIST_PORTS:-1000000}
COORD_WATCH_NODES=${COORD_WATCH_NODES:-100}
COORD_WATCHES=${COORD_WATCHES:-100}
COORD_LIST_RATE=${COORD_LIST_RATE:-50}
COORD_TRICKLE=${COORD_TRICKLE:-1}
COORD_WATCHERS=${COORD_WATCHERS:-nodes}
REAKTOR_BIN=${REAKTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/reaktor}
LOAD_DIR=$ROOT/benches/peers/switch-load
LOAD_BIN=$LOAD_DIR/target/release/switch-load
RESULTS_TSV=${RESULTS_TSV:-$ROOT/benches/results/switch.tsv}
export CLK_TCK

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switch_bench.XXXXXX")
LOG_DIR=$WORK/logs
# Stream buffers in tmpfs (the reaktor's default), not on a disk file system: file-backed
# rings on ext4 cost page-cache faults that would show up as server time.
if [[ -d /dev/shm ]]; then STREAM_DIR=/dev/shm/switch_bench.$$; else STREAM_DIR=$WORK/streams; fi
mkdir -p "$LOG_DIR" "$STREAM_DIR" "$(dirname "$RESULTS_TSV")"
cleanup() {
    stop_servers
    rm -rf "$STREAM_DIR"
    [[ -n ${KEEP_TMP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor (release) and switch-load"
    (cd "$ROOT" && cargo build --release -p reaktor --quiet)
    (cd "$LOAD_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
fi
[[ -x $REAKTOR_BIN ]] || { log "no reaktor binary at $REAKTOR_BIN"; exit 1; }
[[ -x $LOAD_BIN ]] || { log "no switch-load binary at $LOAD_BIN"; exit 1; }
ulimit -n 65536 2>/dev/null || true

sed "s/^address = \"127.0.0.1:[0-9]*\"/address = \"127.0.0.1:$SWITCH_PORT\"/" \
    "$ROOT/examples/bench-switch.toml" >"$WORK/bench-switch.toml"

# The coord scenario's background nodes: l0 (the listed ports), t0 (events), w0.. (watchers).
{
    printf '\n[[switch.token]]\ntoken = "bench-coord"\nnodes = ["l0", "t0"'
    for ((i = 0; i < ${COORD_WATCH_NODES:-100}; i++)); do printf ', "w%d"' "$i"; done
    printf ']\nwatch_ports = ["w:"]\n'
} >>"$WORK/bench-switch.toml"

if [[ ${CLUSTER:-0} == 1 ]]; then
    one_member_cluster "$WORK/raft" "$SWITCH_PORT" "${CLUSTER_PEER_PORT:-7195}" >>"$WORK/bench-switch.toml"
fi

# PEERS=0 runs reaktor alone (benches/before_after.sh compares two reaktor builds).
have() { [[ ${PEERS:-1} != 0 ]] && { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }; }
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

# start NAME: a fresh server pinned to SERVER_CPU; sets SRV_PID and SRV_PORT.
start() {
    local name=$1 p
    case $name in reaktor) p=$SWITCH_PORT ;; redis) p=$REDIS_PORT ;; nats) p=$NATS_PORT ;; esac
    if port_busy 127.0.0.1 "$p"; then
        log "port $p is already in use: set SWITCH_PORT / REDIS_PORT / NATS_PORT"
        exit 1
    fi
    case $name in
    reaktor)
        SRV_PORT=$SWITCH_PORT
        start_server reaktor "$SERVER_CPU" "$REAKTOR_BIN" run --topology "$WORK/bench-switch.toml" \
            --stream-dir "$STREAM_DIR"
        ;;
    redis)
        SRV_PORT=$REDIS_PORT
        start_server redis "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
            --save "" --appendonly no --daemonize no --io-threads 1
        ;;
    nats)
        SRV_PORT=$NATS_PORT
        start_server nats "$SERVER_CPU" "$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT"
        ;;
    esac
    SRV_PID=$STARTED_PID
    wait_port 127.0.0.1 "$SRV_PORT" 10 || { log "$name did not start:"; cat "$LOG_DIR/$name.log" >&2; exit 1; }
    if [[ $name == reaktor && ${CLUSTER:-0} == 1 ]]; then
        local i
        for i in $(seq 100); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SRV_PORT/readyz") == 200 ]] && break
            sleep 0.05
        done
    fi
    check_affinity "$name" "$SRV_PID" "$SERVER_CPU" || true
}

# load ARGS...: run switch-load on LOAD_CPU against the current server; sets OUT.
load() {
    OUT=$(taskset -c "$LOAD_CPU" "$LOAD_BIN" "$@" --port "$SRV_PORT" --pid "$SRV_PID")
}

field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<" $OUT"; }

# row ROUND SCENARIO SERVER UNIT VALUE NS_PER_OP SERVER_PCT EXTRA: print and keep one result.
ROWS=$WORK/rows
row() {
    local line
    line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(awk '{print $1}' /proc/loadavg)" "$8")
    printf '%s\n' "$line" >>"$ROWS"
    printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo -)" "$line" >>"$RESULTS_TSV"
    printf '  %-13s %-16s %12s %-10s %8s ns/op  server %3s%%  load %s  %s\n' "$2" "$3" "$5" "$4" "$6" "$7" "$(awk '{print $1}' /proc/loadavg)" "$8" >&2
}

# regport: register $REGPORT_PORTS fresh 16-byte ports from an empty table (the table's growth
# is part of the cost: a run of a fixed duration would measure a different table size for
# each server), then read the RSS: rows "regport" (ports/s) and "memory" (bytes per port).
run_regport() {
    local r=$1 proto=${2:-ws} tag scen=regport
    tag=$(printf '%02d' "$r")
    [[ $proto == ws ]] || scen=regport_$proto
    start reaktor
    load memory --proto "$proto" --nodes "$NODES" --batch "$BATCH" --depth "$DEPTH" --total "$REGPORT_PORTS" --tag "$tag"
    row "$r" "$scen" "reaktor-$proto" ports/s "$(field ports_per_s)" "$(field server_ns_per_op)" "$(field server_pct)" \
        "$(field ports) ports, batch=$BATCH depth=$DEPTH nodes=$NODES client=$(field client_pct)%"
    [[ $proto == ws ]] && row "$r" memory reaktor bytes/port "$(field anon_bytes_per_port)" - - \
        "RssAnon/port; VmRSS/port=$(field vmrss_bytes_per_port) VmRSS=$(($(field vmrss_after) / 1048576))MiB ports=$(field ports)"
    stop_servers
    [[ $proto == ws ]] || return 0
    if have redis-server; then
        start redis
        load memory --proto redis --nodes "$NODES" --batch 64 --depth 4 --total "$REGPORT_PORTS" --tag "$tag"
        row "$r" regport redis-setnx ports/s "$(field ports_per_s)" "$(field server_ns_per_op)" "$(field server_pct)" \
            "$(field ports) keys, switch-load: $NODES conns x 4 x 64 pipelined; client=$(field client_pct)%"
        row "$r" memory redis-setnx bytes/port "$(field anon_bytes_per_port)" - - \
            "RssAnon/key; VmRSS/key=$(field vmrss_bytes_per_port) VmRSS=$(($(field vmrss_after) / 1048576))MiB keys=$(field ports)"
        stop_servers
    fi
    if have redis-server && have redis-benchmark; then
        start redis
        local n c0 c1 t0 t1 out rps
        n=$REDIS_BENCHMARK_N
        c0=$(cpu_ticks "$SRV_PID")
        t0=$(date +%s%N)
        out=$(taskset -c "$LOAD_CPU" redis-benchmark -p "$REDIS_PORT" -P 64 -n "$n" -r 100000000 -c "$NODES" -q \
            SETNX 'key:__rand_int__' v 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1)
        t1=$(date +%s%N)
        c1=$(cpu_ticks "$SRV_PID")
        rps=$(sed 's/.*: \([0-9.]*\) requests.*/\1/' <<<"$out")
        row "$r" regport redis-benchmark ports/s "${rps%.*}" \
            "$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.0f", d / hz * 1e9 / n }')" \
            "$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", 100 * d / hz / (ns / 1e9) }')" \
            "redis-benchmark -P 64 -c $NODES -n $n -r 100000000 SETNX key:__rand_int__ v"
        stop_servers
    fi
}

run_sendmsg() {
    local r=$1
    start reaktor
    load sendmsg --proto ws --batch "$MSG_BATCH" --window "$WINDOW" --depth 8 --duration "$DURATION" --warmup "$WARMUP"
    row "$r" sendmsg reaktor msgs/s "$(field msgs_per_s)" "$(field server_ns_per_op)" "$(field server_pct)" \
        "batch=$MSG_BATCH window=$WINDOW pushes/frame=$(field msgs_per_frame) client=$(field client_pct)% client idle=$(field client_idle_pct)%"
    stop_servers
    if have nats-server; then
        start nats
        load sendmsg --proto nats --batch "$MSG_BATCH" --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP"
        row "$r" sendmsg nats-server msgs/s "$(field msgs_per_s)" "$(field server_ns_per_op)" "$(field server_pct)" \
            "1 pub, 1 sub, batch=$MSG_BATCH window=$WINDOW client=$(field client_pct)% client idle=$(field client_idle_pct)%"
        stop_servers
    fi
}

run_latency() {
    local r=$1 s
    start reaktor
    load latency --proto ws --rate "$RATE" --duration "$LAT_DURATION" --tag "$(printf 'l%d' $((r % 10)))"
    s="p50=$(field p50_us) p90=$(field p90_us) p99=$(field p99_us) p99.9=$(field p999_us) max=$(field max_us) us"
    row "$r" latency reaktor p50_us "$(field p50_us)" - "$(field server_pct)" "$s at $RATE/s"
    stop_servers
    if have redis-server; then
        start redis
        load latency --proto redis --rate "$RATE" --duration "$LAT_DURATION" --tag "$(printf 'l%d' $((r % 10)))"
        s="p50=$(field p50_us) p90=$(field p90_us) p99=$(field p99_us) p99.9=$(field p999_us) max=$(field max_us) us"
        row "$r" latency redis-setnx p50_us "$(field p50_us)" - "$(field server_pct)" "$s at $RATE/s"
        stop_servers
    fi
}

# coord: RegPort and SendMsg with the coordination load of issue 15 beside them ("on") and
# without it ("off"), alternating, a fresh server for each run. Both variants first preload
# $COORD_LIST_PORTS ports under "l:" (the same table); "on" adds $COORD_WATCH_NODES watcher
# nodes x $COORD_WATCHES watches on the prefix "w:" (with $COORD_TRICKLE events/s on it, each
# pushed to every watch) and a client paging through the listing of the preloaded ports at
# $COORD_LIST_RATE pages of 1000 per second (switch-load background, on the load core).
run_coord() {
    local r=$1 order variant what bgpid i
    if ((r % 2)); then order="off on"; else order="on off"; fi
    for what in regport sendmsg; do
        for variant in $order; do
            start reaktor
            local stop=$WORK/coord.stop ready=$WORK/coord.ready bg
            rm -f "$stop" "$ready"
            if [[ $variant == on ]]; then
                bg=(--watch-nodes "$COORD_WATCH_NODES" --watches "$COORD_WATCHES" --list-rate "$COORD_LIST_RATE"
                    --trickle-rate "$COORD_TRICKLE" --node-less "$([[ $COORD_WATCHERS == nodeless ]] && echo 1 || echo 0)")
            else
                bg=(--watch-nodes 0 --list-rate 0 --trickle-rate 0)
            fi
            taskset -c "$LOAD_CPU" "$LOAD_BIN" background --port "$SRV_PORT" --list-ports "$COORD_LIST_PORTS" \
                "${bg[@]}" --stop "$stop" --ready "$ready" >"$WORK/coord.out" 2>&1 &
            bgpid=$!
            for i in $(seq 1200); do
                [[ -e $ready ]] && break
                kill -0 "$bgpid" 2>/dev/null || break
                sleep 0.1
            done
            [[ -e $ready ]] || { log "coord background did not get ready:"; cat "$WORK/coord.out" >&2; exit 1; }
            if [[ $what == regport ]]; then
                load regport --proto ws --nodes "$NODES" --batch "$BATCH" --depth "$DEPTH" --duration "$DURATION" \
                    --warmup "$WARMUP" --tag "$(printf 'c%d' $((r % 10)))"
                row "$r" coord_regport "reaktor-$variant" ports/s "$(field ports_per_s)" "$(field server_ns_per_op)" \
                    "$(field server_pct)" "$(field ports) ports beside $COORD_LIST_PORTS preloaded; client=$(field client_pct)%"
            else
                load sendmsg --proto ws --batch "$MSG_BATCH" --window "$WINDOW" --depth 8 --duration "$DURATION" --warmup "$WARMUP"
                row "$r" coord_sendmsg "reaktor-$variant" msgs/s "$(field msgs_per_s)" "$(field server_ns_per_op)" \
                    "$(field server_pct)" "pushes/frame=$(field msgs_per_frame) client=$(field client_pct)%"
            fi
            touch "$stop"
            if ! wait "$bgpid"; then log "coord background failed:"; cat "$WORK/coord.out" >&2; exit 1; fi
            log "  background ($variant): $(tail -1 "$WORK/coord.out")"
            stop_servers
        done
    done
}

log "switch bench: DURATION=$DURATION ROUNDS=$ROUNDS SCENARIOS=\"$SCENARIOS\" server cpu $SERVER_CPU, load cpu $LOAD_CPU; $(uptime)"
: >"$ROWS"
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round"
    for s in $SCENARIOS; do
        case $s in
        regport | memory) run_regport "$round" ws ;;
        regport_http) run_regport "$round" http ;;
        sendmsg) run_sendmsg "$round" ;;
        latency) run_latency "$round" ;;
        coord) run_coord "$round" ;;
        *) log "unknown scenario $s"; exit 1 ;;
        esac
    done
done

# Table: ratios against the first peer of each scenario in the same round (for latency and
# memory lower is better, so the ratio is reaktor / peer of that lower-is-better figure).
echo
echo "| round | scenario | server | figure | server ns/op | server % | load | vs peer | CPU/op vs peer | notes |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '
    { key = $1 SUBSEP $2
      if ($3 ~ /^(redis-setnx|nats-server)$/) { peer[key] = $5; peerns[key] = $6 }
      n++; r[n] = $0 }
    END {
      for (i = 1; i <= n; i++) {
        split(r[i], f, "\t"); s2 = f[2]
        sub(/^regport_http$/, "regport", s2); pk = f[1] SUBSEP s2
        ratio = "-"; cpu = "-"
        if ((pk in peer) && peer[pk] > 0 && f[3] !~ /^(redis|nats)/) {
          ratio = sprintf("%.2fx", f[5] / peer[pk])
          if (peerns[pk] > 0 && f[6] > 0) cpu = sprintf("%.2fx", f[6] / peerns[pk])
        }
        printf "| %s | %s | %s | %s %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[5], f[4], f[6], f[7], f[8], ratio, cpu, f[9]
      }
    }' "$ROWS"

# Medians over rounds (with ROUNDS >= 3 these are the figures to quote).
if ((ROUNDS > 1)); then
    echo
    echo "| scenario | server | median figure | median server ns/op | rounds |"
    echo "|---|---|---|---|---|"
    awk -F'\t' '{ k = $2 "\t" $3 "\t" $4; v[k] = v[k] " " $5; c[k] = c[k] " " $6; n[k]++; if (!(k in o)) { o[k] = ++m; ks[m] = k } }
        function med(s,   a, x, i, j, t) { x = split(s, a, " "); for (i = 1; i <= x; i++) for (j = i + 1; j <= x; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (a[int((x + 1) / 2)] == "-") ? "-" : a[int((x + 1) / 2)] }
        END { for (i = 1; i <= m; i++) { k = ks[i]; split(k, f, "\t"); printf "| %s | %s | %s %s | %s | %d |\n", f[1], f[2], med(v[k]), f[3], med(c[k]), n[k] } }' "$ROWS"
fi

# coord: the "on" run against the "off" run of the same round (throughput and server CPU per
# operation), and the median of those ratios over the rounds.
if grep -q $'\tcoord_' "$ROWS"; then
    echo
    echo "| scenario | round | off | on | on/off | server ns/op off | on | on/off |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'\t' '$2 ~ /^coord_/ { k = $2 SUBSEP $1; if ($3 == "reaktor-off") { off[k] = $5; offns[k] = $6 } else { on[k] = $5; onns[k] = $6 }
                                  if (!(k in seen)) { seen[k] = 1; ks[++m] = k } }
        function med(s,   a, x, i, j, t) { x = split(s, a, " "); for (i = 1; i <= x; i++) for (j = i + 1; j <= x; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return a[int((x + 1) / 2)] }
        END { for (i = 1; i <= m; i++) { k = ks[i]; split(k, f, SUBSEP)
                if (!(k in off) || !(k in on) || off[k] == 0 || offns[k] == 0) continue
                rt = on[k] / off[k]; rc = onns[k] / offns[k]; r[f[1]] = r[f[1]] " " rt; c[f[1]] = c[f[1]] " " rc
                printf "| %s | %s | %s | %s | %.3f | %s | %s | %.3f |\n", f[1], f[2], off[k], on[k], rt, offns[k], onns[k], rc }
              for (s in r) printf "| %s | median | | | %.3f | | | %.3f |\n", s, med(r[s]), med(c[s]) }' "$ROWS"
fi
