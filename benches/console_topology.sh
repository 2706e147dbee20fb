# shellcheck shell=bash
# The topologies of the console benchmarks (benches/console.sh, benches/console_instructions.sh):
# examples/bench-switch.toml (tcp, http, ws, switch fused on one core) plus echo at / (the http
# figure), listening on $PORT; with the console placed on the same core and routed for the
# modes with a console.
#
#   console_topologies DIR PORT INTERVAL_MS   writes DIR/absent.toml and DIR/console.toml

_console_base() { # PORT EXTRA_KINDS
    sed -e "s/^address = \"127.0.0.1:[0-9]*\"/address = \"127.0.0.1:$1\"/" \
        -e "s/^nuklei = \[\"tcp\", \"http\", \"ws\", \"switch\"\]/nuklei = [\"tcp\", \"http\", \"ws\", \"switch\", \"echo\"$2]/" \
        "$BENCH_DIR/../examples/bench-switch.toml"
    printf '\n[[http.route]]\npath = "/"\nto = "echo"\n'
}

console_topologies() {
    local dir=$1 port=$2 interval_ms=$3
    _console_base "$port" "" >"$dir/absent.toml"
    {
        _console_base "$port" ', "console"'
        printf '\n[[http.route]]\npath = "/console"\nto = "console"\n\n[console]\ninterval_ms = %s\n' "$interval_ms"
    } >"$dir/console.toml"
    if ! grep -q '"echo", "console"' "$dir/console.toml"; then
        log "could not add the console to bench-switch.toml's [[core]]"
        return 1
    fi
}
