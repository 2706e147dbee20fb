#!/usr/bin/env bash
# Generates a self-signed CA and a server certificate for localhost / 127.0.0.1 / ::1, for
# trying TLS listeners locally (examples/tls.toml). Not for production.
#
#   scripts/gen-cert.sh [DIR]      (default DIR: certs/ at the workspace root)
#
# Writes DIR/ca.pem, DIR/ca-key.pem, DIR/server.pem (the server certificate followed by the
# CA, i.e. the chain) and DIR/server-key.pem. Idempotent: existing files are kept, so running
# it again never replaces a CA that clients already trust; delete DIR to start over.
# Clients trust the CA with e.g. `curl --cacert DIR/ca.pem https://localhost:8443/`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/certs}
DAYS=${DAYS:-825}

command -v openssl >/dev/null || { echo "gen-cert.sh: openssl is not installed" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"

if [[ ! -s ca.pem || ! -s ca-key.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca-key.pem -out ca.pem -days "$DAYS" -subj "/CN=reaktor local CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    rm -f server.pem server-key.pem # a new CA invalidates the old server certificate
    echo "created $DIR/ca.pem"
fi

if [[ ! -s server.pem || ! -s server-key.pem ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout server-key.pem -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
    cat >"$tmp/ext.cnf" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
    openssl x509 -req -in "$tmp/server.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -out "$tmp/leaf.pem" -days "$DAYS" -extfile "$tmp/ext.cnf" 2>/dev/null
    cat "$tmp/leaf.pem" ca.pem >server.pem
    rm -f ca.srl
    echo "created $DIR/server.pem and $DIR/server-key.pem (localhost, 127.0.0.1, ::1)"
fi
chmod 600 ca-key.pem server-key.pem
echo "certificates in $DIR (CA: $DIR/ca.pem)"
