#!/usr/bin/env bash
# Idempotent install of the benchmark peers' tools: wrk (load generator) and nginx (HTTP peer);
# redis-server + redis-tools (redis-benchmark) and nats-server (port switch peers, for
# benches/switch.sh); etcd-server (etcd and etcdctl: the failover peer of benches/failover.sh).
# Debian/Ubuntu only. Skips what is already installed. Never starts the
# system services: the benchmarks run their own nginx, redis-server and nats-server.
#
# Usage: scripts/install-bench-deps.sh [--with-shellcheck]
set -euo pipefail

want=()
command -v wrk >/dev/null 2>&1 || want+=(wrk)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    want+=(nginx-light)
fi
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || want+=(redis-tools)
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    want+=(nats-server)
fi
if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
    want+=(etcd-server etcd-client)
fi
if [ "${1:-}" = "--with-shellcheck" ] && ! command -v shellcheck >/dev/null 2>&1; then
    want+=(shellcheck)
fi

if [ "${#want[@]}" -eq 0 ]; then
    echo "install-bench-deps: wrk, nginx, redis-server, redis-benchmark, nats-server and etcd already present"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-bench-deps: need ${want[*]} but apt-get is not available; install them by hand" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

# Keep the packages' postinst from starting the system nginx / redis / nats (no systemd in most containers,
# but on a full host policy-rc.d exit 101 tells invoke-rc.d "do not start services").
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install() {
    "${SUDO[@]}" apt-get install -y --no-install-recommends "$@"
}

# Update the package lists once only if they are missing or the install cannot find a candidate.
if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null || ! install "${want[@]}"; then
    "${SUDO[@]}" apt-get update
    if ! install "${want[@]}"; then
        # nginx-light is gone from newer Debian releases; fall back to plain nginx.
        mapfile -t want < <(printf '%s\n' "${want[@]}" | sed 's/^nginx-light$/nginx/')
        install "${want[@]}"
    fi
fi

# If a service manager started a peer anyway, stop it so it does not hold a port / a core.
if command -v systemctl >/dev/null 2>&1; then
    for svc in nginx redis-server nats-server; do
        if systemctl is-active --quiet "$svc" 2>/dev/null; then
            "${SUDO[@]}" systemctl stop "$svc" || true
            "${SUDO[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
        fi
    done
fi

echo "install-bench-deps: installed ${want[*]}"
