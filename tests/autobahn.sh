#!/usr/bin/env bash
# Runs the Autobahn test suite's fuzzing client (cases 1-7, 9, 10, and 12-13 for
# permessage-deflate) against the codec's echo target (tests/src/bin/ws_echo.rs:
# streampod's own frame reader and writer, accepting permessage-deflate as the server
# does), using the runner in ../shared/autobahn. Prints one line per case group and
# exits non-zero when a case FAILED. Loopback only; the echo target is stopped by its
# PID.
#
#   bash tests/autobahn.sh            # every case
#   bash tests/autobahn.sh --no-perf  # without the large 9.* cases
set -euo pipefail
cd "$(dirname "$0")/.."
runner=../shared/autobahn/run.sh
if [ ! -x "$runner" ]; then
    echo "no Autobahn runner at $runner" >&2
    exit 2
fi
cargo build --release -p streampod-tests --bin ws_echo
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/ws_echo --bind "127.0.0.1:$port" > /dev/null &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done
# The runner's virtualenv and reports stay in this checkout's target directory.
VENV="${VENV:-$PWD/target/autobahn-venv}" REPORT_DIR="${REPORT_DIR:-$PWD/target/autobahn-report}" \
    "$runner" "ws://127.0.0.1:$port" --agent streampod --deflate "$@"
