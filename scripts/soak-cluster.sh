#!/usr/bin/env bash
# The cluster soak (opt-in, not in CI; a few minutes): three reaktor members, client nodes
# racing for a small pool of ports, SOAK_FAULTS (default 100) injected faults — kill -9 of the
# master or a follower, SIGSTOP of the master, partitions through fault-injecting proxies —
# and the history checker over every reply the clients saw (one owner per port and epoch, no
# epoch going back, fencing tokens that only grow) plus the members' serving intervals (never
# overlapping). tests/cluster_soak.rs.
#
# Usage: scripts/soak-cluster.sh   env: SOAK_FAULTS=100 SOAK_NODES=6 SOAK_PORTS=16 SOAK_SEED=N
#        RELEASE=1 (a release build; default debug)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
[[ -n ${RELEASE:-} ]] && profile=(--release)
export REAKTOR_LOG=${REAKTOR_LOG:-warn,switch::serving=debug}
cargo test "${profile[@]}" -p reaktor --test cluster_soak cluster_soak -- --ignored --nocapture
