#!/usr/bin/env bash
# Installs everything the test suite needs, idempotently: Debian packages for real clients
# and a Python virtualenv (.venv) with client libraries. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: real clients used by end-to-end tests; Chromium (and node/npm for
# playwright-core, which drives it) for the operator console's browser test.
APT_PACKAGES=(curl openssl chromium)
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# node and npm: any install will do (some machines have nodesource's nodejs, which carries
# its own npm and conflicts with Debian's npm package).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-test-deps: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python client libraries, in the project's own virtualenv.
PIP_PACKAGES=(websockets requests schemathesis kosoku)
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in sys.argv[1:]))" "${PIP_PACKAGES[@]}"; then
    echo "setup-test-deps: installing Python packages ${PIP_PACKAGES[*]}"
    .venv/bin/pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

# The project's own Python client (clients/python), editable, so tests and examples import the
# working tree's code.
if ! .venv/bin/python -c "import reaktor_client, sys, os; sys.exit(not os.path.realpath(reaktor_client.__file__).startswith(os.path.realpath('clients/python/src')))" 2>/dev/null; then
    echo "setup-test-deps: installing clients/python (pip install -e)"
    .venv/bin/pip install -q --disable-pip-version-check -e clients/python
fi

# The browser test's driver (tests/browser): playwright-core from the committed lock file,
# installed again only when the lock file changed. It downloads no browser: the test runs
# the system Chromium.
if [ ! -f tests/browser/node_modules/.package-lock.json ] \
    || ! cmp -s <(sed -n '/"node_modules\//,$p' tests/browser/package-lock.json) <(sed -n '/"node_modules\//,$p' tests/browser/node_modules/.package-lock.json); then
    echo "setup-test-deps: installing tests/browser (npm ci)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
