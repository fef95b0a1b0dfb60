#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs the system
# packages the end-to-end tests drive (Chromium and its WebDriver; redis-server, which
# the cluster tests start privately on free ports, and redis-cli, which joins three of
# them into a Redis Cluster; nats-server, which the NATS tests start privately too;
# PostgreSQL, of which the chat-history test starts a
# private server), then runs every test of the workspace, then the publish API's Python
# test against the release example server.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# redis-cli builds the Redis Cluster of the sharded-backplane test.
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# nats-server (Debian installs it in /usr/sbin): the NATS backplane tests start their own.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
# PostgreSQL's server programs (initdb, pg_ctl): the chat-history test starts its own.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    missing+=(postgresql)
fi
# Node and npm: the code generator's tests type-check generated TypeScript with tsc and
# run it under node --test; the example's Node test drives its generated client.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "missing ${missing[*]}: install them (apt-get install ${missing[*]}) and rerun" >&2
        exit 1
    fi
fi

# The TypeScript compiler and the ws WebSocket (Node 20 has no global one), at the
# versions codegen/typescript/package-lock.json pins.
if [ ! -x codegen/typescript/node_modules/.bin/tsc ] || [ ! -d codegen/typescript/node_modules/ws ]; then
    echo "== npm ci in codegen/typescript"
    (cd codegen/typescript && npm ci --no-audit --no-fund)
fi

# Every test binary runs, whatever fails: the summary at the end lists all failures.
status=0
cargo test --workspace --no-fail-fast || status=$?

# The publish API as a Python backend drives it (requests, websocket-client, pinned in
# tests/python/requirements.txt) against two release example servers and a private Redis.
echo "== publish API from Python, against the release example server"
cargo build --release -p example-server
if [ ! -f target/python-deps/.installed ] || ! cmp -s tests/python/requirements.txt target/python-deps/.installed; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target target/python-deps \
        -r tests/python/requirements.txt
    cp tests/python/requirements.txt target/python-deps/.installed
fi
PYTHONPATH=target/python-deps STREAMPOD_EXAMPLE_SERVER=target/release/example-server \
    python3 tests/python/publish_api_test.py || status=$?
exit "$status"
