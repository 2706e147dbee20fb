#!/usr/bin/env bash
# Client libraries vs the raw protocol (issue 16), side by side in one run: the same RegPort
# and SendMsg workloads through
#   raw     benches/peers/switch-load (hand-written WebSocket client, one polling thread),
#   rust    the Rust client (clients/rust, bench `client_load`, current-thread tokio),
#   rust-spin  the same, with a task that never lets the runtime park (it spins on its
#           core as switch-load does; opt-in: add it to CLIENTS),
#   rust-base  a client_load binary built from another commit (RUST_BASE_BIN=path), for a
#           before/after of a client change in the same run (opt-in: add it to CLIENTS),
#   python  the Python client (clients/python/benches/client_load.py, asyncio),
# each against a fresh reaktor (examples/bench-switch.toml) pinned to core $SERVER_CPU
# (default 0), the load on core $LOAD_CPU (default 1). Server CPU per operation from
# /proc/PID/stat as in benches/switch.sh.
#
# Scenarios (SCENARIOS, default "regport sendmsg"):
#   regport  $NODES nodes x $DEPTH RegPort batches of $BATCH 16-byte fresh ports in flight
#            until $REGPORT_PORTS are registered (raw: switch-load regport --total)
#   sendmsg  one sender -> one receiver, $MSG_BATCH 64-byte messages per SendMsg, $DEPTH
#            batches in flight, at most $WINDOW undelivered, $DURATION s after $WARMUP s;
#            the receiver checks order
#
# Usage: flock /work/bench.lock benches/clients.sh
#   env: ROUNDS=3 SCENARIOS="regport sendmsg" CLIENTS="raw rust python" REGPORT_PORTS=4000000
#        NODES=4 BATCH=1000 DEPTH=8 MSG_BATCH=1000 WINDOW=65536 DURATION=5 WARMUP=1
#        SERVER_CPU=0 LOAD_CPU=1 SWITCH_PORT=8096 SKIP_BUILD=1 REAKTOR_BIN=... PYTHON=...
# Output: one line per run, then a table with each client's figure / raw in the same round.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NAME=clients
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-regport sendmsg}
CLIENTS=${CLIENTS:-raw rust python}
REGPORT_PORTS=${REGPORT_PORTS:-4000000}
NODES=${NODES:-4}
BATCH=${BATCH:-1000}
DEPTH=${DEPTH:-8}
MSG_BATCH=${MSG_BATCH:-1000}
WINDOW=${WINDOW:-65536}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SWITCH_PORT=${SWITCH_PORT:-8096}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REAKTOR_BIN=${REAKTOR_BIN:-$TARGET/release/reaktor}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
LOAD_DIR=$ROOT/benches/peers/switch-load
RAW_BIN=$LOAD_DIR/target/release/switch-load
export CLK_TCK

WORK=$(mktemp -d "${TMPDIR:-/tmp}/clients_bench.XXXXXX")
LOG_DIR=$WORK/logs
if [[ -d /dev/shm ]]; then STREAM_DIR=/dev/shm/clients_bench.$$; else STREAM_DIR=$WORK/streams; fi
mkdir -p "$LOG_DIR" "$STREAM_DIR"
cleanup() {
    stop_servers
    rm -rf "$STREAM_DIR" "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building reaktor, the Rust client's bench and switch-load (release)"
    (cd "$ROOT" && cargo build --release -p reaktor --quiet && cargo bench --no-run -p reaktor-client --bench client_load --quiet)
    (cd "$LOAD_DIR" && env -u CARGO_TARGET_DIR cargo build --release --quiet)
    bash "$ROOT/scripts/setup-test-deps.sh"
fi
RUST_BIN=$(ls -t "$TARGET"/release/deps/client_load-* 2>/dev/null | grep -v '\.d$' | head -1)
[[ -x $REAKTOR_BIN && -x $RAW_BIN && -x ${RUST_BIN:-/nonexistent} ]] || { log "missing a binary (reaktor $REAKTOR_BIN, switch-load $RAW_BIN, client_load $RUST_BIN)"; exit 1; }

sed "s/^address = \"127.0.0.1:[0-9]*\"/address = \"127.0.0.1:$SWITCH_PORT\"/" \
    "$ROOT/examples/bench-switch.toml" >"$WORK/bench-switch.toml"

start_reaktor() {
    if port_busy 127.0.0.1 "$SWITCH_PORT"; then log "port $SWITCH_PORT in use: set SWITCH_PORT"; exit 1; fi
    start_server reaktor "$SERVER_CPU" "$REAKTOR_BIN" run --topology "$WORK/bench-switch.toml" --stream-dir "$STREAM_DIR"
    SRV_PID=$STARTED_PID
    wait_port 127.0.0.1 "$SWITCH_PORT" 10 || { log "reaktor did not start"; cat "$LOG_DIR/reaktor.log" >&2; exit 1; }
}

# load CLIENT MODE ARGS...: run the load of CLIENT on LOAD_CPU; sets OUT.
load() {
    local client=$1 mode=$2
    shift 2
    local -a cmd
    case $client in
    raw) cmd=("$RAW_BIN" "$mode" --proto ws) ;;
    rust) cmd=("$RUST_BIN" "$mode") ;;
    rust-spin) cmd=("$RUST_BIN" "$mode" --spin 1) ;;
    rust-base) cmd=("${RUST_BASE_BIN:?rust-base needs RUST_BASE_BIN}" "$mode") ;;
    python) cmd=("$PYTHON" "$ROOT/clients/python/benches/client_load.py" "$mode") ;;
    esac
    OUT=$(taskset -c "$LOAD_CPU" "${cmd[@]}" "$@" --port "$SWITCH_PORT" --pid "$SRV_PID")
}

field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<" $OUT"; }

ROWS=$WORK/rows
: >"$ROWS"
log "clients bench: ROUNDS=$ROUNDS SCENARIOS=\"$SCENARIOS\" CLIENTS=\"$CLIENTS\" server cpu $SERVER_CPU, load cpu $LOAD_CPU; $(uptime)"
for ((round = 1; round <= ROUNDS; round++)); do
    for s in $SCENARIOS; do
        for c in $CLIENTS; do
            start_reaktor
            case $s in
            regport)
                load "$c" regport --nodes "$NODES" --batch "$BATCH" --depth "$DEPTH" --total "$REGPORT_PORTS"
                value=$(field ports_per_s) unit=ports/s ;;
            sendmsg)
                load "$c" sendmsg --batch "$MSG_BATCH" --depth "$DEPTH" --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP"
                value=$(field msgs_per_s) unit=msgs/s ;;
            *) log "unknown scenario $s"; exit 1 ;;
            esac
            stop_servers
            cns=$(field client_ns_per_op)
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$c" "$value" "$unit" "$(field server_ns_per_op)" \
                "$(field server_pct)" "$(field client_pct)" "${cns:--}" >>"$ROWS"
            printf '  round %d %-8s %-9s %12s %-8s server %5s ns/op %4s%%  client %4s%% %5s ns/op\n' "$round" "$s" "$c" "$value" "$unit" \
                "$(field server_ns_per_op)" "$(field server_pct)" "$(field client_pct)" "${cns:--}" >&2
        done
    done
done

echo
# client ns/op: the client process's CPU per operation (not shown for raw: it spins, so its
# CPU is its share of the core, not its work).
echo "| round | scenario | client | figure | server ns/op | server % | client core % | client ns/op | vs raw |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '{ if ($3 == "raw") raw[$1 SUBSEP $2] = $4; n++; r[n] = $0 }
    END { for (i = 1; i <= n; i++) { split(r[i], f, "\t"); k = f[1] SUBSEP f[2]
          ratio = (k in raw && raw[k] > 0) ? sprintf("%.3f", f[4] / raw[k]) : "-"
          printf "| %s | %s | %s | %s %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], ratio } }' "$ROWS"
if ((ROUNDS > 1)); then
    echo
    echo "| scenario | client | median figure | median vs raw (per round) |"
    echo "|---|---|---|---|"
    awk -F'\t' '{ if ($3 == "raw") raw[$1 SUBSEP $2] = $4; n++; r[n] = $0 }
        function med(s,   a, x, i, j, t) { x = split(s, a, " "); for (i = 1; i <= x; i++) for (j = i + 1; j <= x; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return a[int((x + 1) / 2)] }
        END { for (i = 1; i <= n; i++) { split(r[i], f, "\t"); k = f[2] "\t" f[3]; v[k] = v[k] " " f[4]
                  if ((f[1] SUBSEP f[2]) in raw) q[k] = q[k] " " sprintf("%.3f", f[4] / raw[f[1] SUBSEP f[2]])
                  if (!(k in o)) { o[k] = ++m; ks[m] = k } }
              for (i = 1; i <= m; i++) { k = ks[i]; split(k, f, "\t"); printf "| %s | %s | %s | %s |\n", f[1], f[2], med(v[k]), med(q[k]) } }' "$ROWS"
fi
