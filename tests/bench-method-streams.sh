#!/usr/bin/env bash
# Fan-out through the streaming method `chat.messages` (Serverpod 2.1+ clients,
# `/v1/websocket`) against the same room joined on the legacy `/websocket` stream: the
# same example server, publisher and messages; RUNS runs each (default 3), medians
# printed as a table. Issue 19.
#
#   bash tests/bench-method-streams.sh
#   SUBSCRIBERS=100 RUNS=1 bash tests/bench-method-streams.sh
#
# The server runs on core 0 and the load generator on core 1 (taskset), each with one
# tokio worker. Every process the script starts is stopped, by PID, when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
OUT=target/bench-method-streams
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
# shellcheck source=tests/bench-common.sh
. tests/bench-common.sh

PORT=18800
for subscribers in $SUBSCRIBERS; do
    messages=$((6000000 / subscribers))
    for style in legacy-stream streaming-method; do
        runs="$OUT/$style-$subscribers.jsonl"
        : > "$runs"
        for _ in $(seq "$RUNS"); do
            PORT=$((PORT + 1))
            TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" \
                --max-frames-per-second 0 --database-url none --log error >/dev/null 2>&1 &
            SERVER_PID=$!
            PIDS+=("$SERVER_PID")
            for _ in $(seq 100); do
                (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
                sleep 0.05
            done
            flag=()
            [ "$style" = streaming-method ] && flag=(--method-stream)
            timeout 300 taskset -c 1 target/release/loadgen burst --url "ws://127.0.0.1:$PORT/websocket" \
                --target "$style" --server-pid "$SERVER_PID" --subscribers "$subscribers" \
                --messages "$messages" --window 200 --deadline 60 "${flag[@]}" | tee -a "$runs"
            kill "$SERVER_PID" 2>/dev/null || true
            wait "$SERVER_PID" 2>/dev/null || true
        done
        target/release/loadgen median "$runs" >> "$RESULTS"
    done
done
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), medians of $RUNS runs, with \`bash tests/bench-method-streams.sh\`."
echo
target/release/loadgen table "$RESULTS" | sed -n '/^| target/,$p'
