#!/usr/bin/env bash
# Port switch failover (issue 14), side by side with etcd. Runs the ignored benchmarks of
# tests/cluster_bench.rs with a release build:
#   switch_failover   three reaktor members, NODES client nodes holding PORTS ports, ROUNDS
#                     times kill -9 of the master: time from the kill to a new master answering
#                     RegPort, and until every node has registered all its ports again; no
#                     port granted to two nodes in one epoch
#   etcd_failover     three etcd members (Debian etcd-server), ETCD_ROUNDS times kill -9 of the
#                     leader: time to the first successful write, for each ETCD_CLOCKS
#                     (heartbeat/election ms: etcd's defaults, and our clocks)
#   election_thread_under_a_saturated_switch (JITTER=1): the master's election thread's
#                     wake-up lateness idle and while RegPort floods saturate its switch core;
#                     no election may happen
# Servers (reaktor members, etcd members) are pinned to core $SERVER_CPU, the clients (the
# test binary) to core $LOAD_CPU. Run it alone on the machine:
#   flock /work/bench.lock benches/failover.sh
# env: ROUNDS=20 NODES=20 PORTS=1000000 CONTENDED=500 BATCH=10000 WINDOW=1048576 ETCD_ROUNDS=20 ETCD_CLOCKS="100/1000 20/150"
#      TICK_MS=1 HEARTBEAT_MS=20 ELECTION_MS=150 JITTER=1 JITTER_SECONDS=20 BENCHES="switch etcd jitter"
#      SERVER_CPU=0 LOAD_CPU=1 SKIP_BUILD=1
# TICK_MS=1: election timeouts are drawn in whole ticks from [ELECTION_MS, 2 x ELECTION_MS); with
# 5 ms ticks two followers drew the same or a neighbouring tick often enough to split the vote
# (2 of 10 rounds in one run, each +150-200 ms; BENCHMARKS.md).
# Output: every round and a summary (p50/p99/max) per measure; also in benches/results/failover.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BENCHES=${BENCHES:-switch etcd jitter}
mkdir -p benches/results
OUT=benches/results/failover.txt

command -v etcd >/dev/null 2>&1 || [[ $BENCHES != *etcd* ]] || {
    echo "failover.sh: etcd is not installed: run scripts/install-bench-deps.sh" >&2
    exit 1
}
if [[ -z ${SKIP_BUILD:-} ]]; then
    cargo test --release -p reaktor --test cluster_bench --no-run --quiet
fi
export REAKTOR_CLUSTER_LAUNCH="taskset -c $SERVER_CPU"
# raft=info: the election's phases (pre-candidate, candidate, leader, lease) for the per-round breakdown
export REAKTOR_LOG=${REAKTOR_LOG:-warn,raft=info}
{
    echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
    for bench in $BENCHES; do
        case $bench in
        switch) filter=switch_failover ;;
        etcd) filter=etcd_failover ;;
        jitter) filter=election_thread_under_a_saturated_switch ;;
        *) echo "unknown bench $bench" >&2; exit 1 ;;
        esac
        taskset -c "$LOAD_CPU" cargo test --release -q -p reaktor --test cluster_bench "$filter" \
            -- --ignored --nocapture --test-threads 1 2>&1 | grep -vE '^(running|test result|\.|$)'
    done
} | tee -a "$OUT"
