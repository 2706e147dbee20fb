#!/usr/bin/env bash
# Idempotent install of the HTTP benchmark peers' tools: wrk (load generator) and nginx (peer).
# Debian/Ubuntu only. Skips what is already installed. Never starts the system nginx service:
# benches/http_hello.sh runs its own nginx with a generated config.
#
# Usage: scripts/install-bench-deps.sh [--with-shellcheck]
set -euo pipefail

want=()
command -v wrk >/dev/null 2>&1 || want+=(wrk)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    want+=(nginx-light)
fi
if [ "${1:-}" = "--with-shellcheck" ] && ! command -v shellcheck >/dev/null 2>&1; then
    want+=(shellcheck)
fi

if [ "${#want[@]}" -eq 0 ]; then
    echo "install-bench-deps: wrk and nginx already present"
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

# Keep the package's postinst from starting the system nginx (no systemd in most containers,
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

# If a service manager started nginx anyway, stop it so it does not hold port 80 / a core.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    "${SUDO[@]}" systemctl stop nginx || true
    "${SUDO[@]}" systemctl disable nginx >/dev/null 2>&1 || true
fi

echo "install-bench-deps: installed ${want[*]}"
