#!/usr/bin/env bash
# permessage-deflate against plain frames (issue 35): the example server's chat room
# with 1,000 subscribers, for a 100-byte chat message and a ~2 KB JSON dashboard update,
# each sent plain (the subscribers offer nothing) and compressed (they offer
# permessage-deflate as browsers do and inflate every frame). Reports the bytes a
# delivery takes on the wire and the server's CPU per delivery; RUNS runs each (default
# 3), medians printed as a table.
#
#   bash tests/bench-compression.sh
#   SUBSCRIBERS=100 RUNS=1 bash tests/bench-compression.sh
#
# The server runs on core 0 and the load generator on core 1 (taskset), each with one
# tokio worker. The compressed 100-byte run uses `--compress-from 0` (the default, 512,
# would send it plain). Every process the script starts is stopped, by PID, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
MESSAGES=${MESSAGES:-2000}
OUT=target/bench-compression
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
# shellcheck source=tests/bench-common.sh
. tests/bench-common.sh

PORT=18900
# name, padding bytes (JSON text), server's --compress-from, loadgen's deflate offer
for case in "chat-100B 80 0" "dashboard-2KB 1700 512"; do
    read -r name padding compress_from <<< "$case"
    for style in plain deflate; do
        runs="$OUT/$style-$name.jsonl"
        : > "$runs"
        for _ in $(seq "$RUNS"); do
            PORT=$((PORT + 1))
            TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" \
                --max-frames-per-second 0 --database-url none --log error \
                --compress-from "$compress_from" >/dev/null 2>&1 &
            SERVER_PID=$!
            PIDS+=("$SERVER_PID")
            for _ in $(seq 100); do
                (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
                sleep 0.05
            done
            flag=()
            [ "$style" = deflate ] && flag=(--deflate)
            timeout 300 taskset -c 1 target/release/loadgen burst --url "ws://127.0.0.1:$PORT/websocket" \
                --target "$style-$name" --server-pid "$SERVER_PID" --subscribers "$SUBSCRIBERS" \
                --messages "$MESSAGES" --window 200 --deadline 120 --json-padding --padding "$padding" \
                "${flag[@]}" | tee -a "$runs"
            kill "$SERVER_PID" 2>/dev/null || true
            wait "$SERVER_PID" 2>/dev/null || true
        done
        target/release/loadgen median "$runs" >> "$RESULTS"
    done
done
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), medians of $RUNS runs, with \`bash tests/bench-compression.sh\`."
echo
target/release/loadgen table "$RESULTS" | sed -n '/^| target/,$p'
