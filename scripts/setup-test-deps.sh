#!/usr/bin/env bash
# Idempotent install of the client libraries the end-to-end tests and scripts drive, into the
# project venv .venv (shared by every script; created if missing). Plain lists: add a package
# to the list it belongs to.
#
# Usage: scripts/setup-test-deps.sh
set -euo pipefail

# Python packages, installed into .venv with pip.
PIP_PACKAGES=(
    websockets
)

# Debian packages (apt-get), for tools the tests call directly.
APT_PACKAGES=(
    python3-venv
    curl
)

cd "$(dirname "$0")/.."

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing_apt+=("$p")
done
if [ "${#missing_apt[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=()
        [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq || true
        "${SUDO[@]}" apt-get install -y -qq "${missing_apt[@]}" || echo "setup-test-deps: could not install ${missing_apt[*]} (continuing)" >&2
    else
        echo "setup-test-deps: apt-get not available; need ${missing_apt[*]}" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
missing_pip=()
for p in "${PIP_PACKAGES[@]}"; do
    .venv/bin/python -m pip show -q "$p" >/dev/null 2>&1 || missing_pip+=("$p")
done
if [ "${#missing_pip[@]}" -gt 0 ]; then
    .venv/bin/python -m pip install -q "${missing_pip[@]}"
fi
echo "setup-test-deps: ok (.venv: ${PIP_PACKAGES[*]})"
