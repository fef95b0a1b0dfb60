#!/usr/bin/env bash
# Runs the standard benchmark scenarios against the example server and the reference
# floor, on loopback, and refreshes the results table in BENCHMARKS.md.
#
#   bash tests/bench.sh            # RUNS=3 runs per fan-out scenario, medians reported
#   RUNS=1 bash tests/bench.sh     # quicker
#   SUBSCRIBERS="100 1000" bash tests/bench.sh   # fewer fan-out sizes
#   RATES="100" STORM=2000 bash tests/bench.sh     # fewer latency rows, a smaller storm
#   STORM_RUNS=3 bash tests/bench.sh               # fewer storm runs (default 7)
#
# The floor's publisher sends frames shaped like the ones streampod delivers (the
# template comes from streampod's run of the same scenario), so both forward the same
# bytes and server CPU per delivery compares like with like.
#
# The server runs on core 0 and the load generator on core 1 (taskset), each with one
# tokio worker. Every process the script starts is stopped, by PID, when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
STORM_RUNS=${STORM_RUNS:-7}
SUBSCRIBERS=${SUBSCRIBERS:-100 1000 5000 10000}
RATE_SECONDS=${RATE_SECONDS:-10}
RATES=${RATES:-100 1000}
STORM=${STORM:-10000}
OUT=target/bench
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
# shellcheck source=tests/bench-common.sh
. tests/bench-common.sh

PORT=18700
# start_server NAME -> sets SERVER_PID and SERVER_URL
start_server() {
    PORT=$((PORT + 1))
    case "$1" in
        streampod | streampod-local | streampod-v1) TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" --max-frames-per-second 0 --database-url none --log error >/dev/null 2>&1 & ;;
        streampod-history) TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" --max-frames-per-second 0 --database-url none \
            --room-history 1000 --log error >/dev/null 2>&1 & ;;
        floor) TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/floor --bind "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
        streampod-global | streampod-global-v1) TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" --max-frames-per-second 0 --database-url none \
            --redis "redis://127.0.0.1:$REDIS_PORT/" --log streampod::cluster=info,error >"$OUT/global.log" 2>&1 & ;;
        streampod-global-history) TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" --max-frames-per-second 0 --database-url none \
            --redis "redis://127.0.0.1:$REDIS_PORT/" --room-history 1000 --log streampod::cluster=info,error >"$OUT/global.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    SERVER_URL="ws://127.0.0.1:$PORT/websocket"
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            # A cluster node serves before Redis is connected; measure once it is.
            case "$1" in
                streampod-global*) grep -q "connected to Redis" "$OUT/global.log" && return 0 ;;
                *) return 0 ;;
            esac
        fi
        sleep 0.05
    done
    echo "server $1 did not start" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# template_for TARGET FILE: the floor publishes frames shaped like streampod's deliveries.
template_for() {
    [ "$1" = floor ] && echo "--publish-template $2" || true
}

# The generator gives up by itself after --deadline seconds and reports a partial run;
# the outer timeout only guards against a hung connect.
loadgen() {
    timeout 300 taskset -c 1 target/release/loadgen "$@" --deadline 60 || echo '{"error":"loadgen did not finish"}'
}

# run_once NAME TARGET LOADGEN-ARGS...: one run of a scenario against TARGET on a fresh
# server, its line appended to NAME's runs.
run_once() {
    local runs="$OUT/$1.jsonl" target=$2
    shift 2
    start_server "$target"
    loadgen "$@" --url "$SERVER_URL" --target "$target" --server-pid "$SERVER_PID" | tee -a "$runs"
    stop_server
}

# measure NAME TARGET LOADGEN-ARGS...: RUNS runs of one scenario against TARGET, each on
# a fresh server; the median line goes to the results.
measure() {
    : > "$OUT/$1.jsonl"
    for run in $(seq "$RUNS"); do
        run_once "$@"
    done
    target/release/loadgen median "$OUT/$1.jsonl" >> "$RESULTS"
}

# streampod runs first in each scenario: its first result line gives the template the
# floor's publisher fills in, so the floor forwards frames of exactly streampod's size.
for subscribers in $SUBSCRIBERS; do
    # 6 M deliveries per run: long enough that the first burst's buffer allocations
    # (queues, deques) do not dominate.
    messages=$((6000000 / subscribers))
    for target in streampod floor; do
        measure "burst-$target-$subscribers" "$target" burst --subscribers "$subscribers" \
            --messages "$messages" --window 200 \
            $(template_for "$target" "$OUT/burst-streampod-$subscribers.jsonl")
    done
done

for rate in $RATES; do
    for target in streampod floor; do
        measure "rate-$target-$rate" "$target" rate --subscribers 1000 --per-second "$rate" \
            --seconds "$RATE_SECONDS" $(template_for "$target" "$OUT/rate-streampod-$rate.jsonl")
    done
done

# A connection storm: every client connects and joins at once (as after a deploy), then
# pings; "joined" is its pong. Once joining the room (the example announces member
# counts to everyone in it, within its budget of 4,000 frames a second), once with only
# the ping. The generator's core runs the kernel's side of both ends of every loopback
# handshake, so these rows are generator-bound and vary by ±15 % run to run:
# STORM_RUNS runs each (default 7), the two servers taking turns so both see the same
# machine, and the accept queue as deep as a deployment expecting storms sets it (both
# servers ask for the kernel's maximum), so a run measures the servers, not a SYN
# retransmit timer. The setting is restored when the script exits; without root it
# stays as it is.
SOMAXCONN=$(sysctl -n net.core.somaxconn)
if [ "$SOMAXCONN" -lt 16384 ] && sysctl -qw net.core.somaxconn=16384 2>/dev/null; then
    RESTORE_SOMAXCONN=$SOMAXCONN
    trap 'sysctl -qw net.core.somaxconn=$RESTORE_SOMAXCONN; cleanup' EXIT
fi
echo "== storms with net.core.somaxconn=$(sysctl -n net.core.somaxconn)"
for scenario in storm-join-streampod storm-join-floor storm-ping-streampod storm-ping-floor; do
    : > "$OUT/$scenario.jsonl"
done
for run in $(seq "$STORM_RUNS"); do
    for target in streampod floor; do
        run_once "storm-join-$target" "$target" storm --subscribers "$STORM" \
            --connect-parallelism "$STORM"
        run_once "storm-ping-$target" "$target" storm --subscribers "$STORM" \
            --connect-parallelism "$STORM" --join '{"command":"ping","args":{}}'
    done
done
for scenario in storm-join-streampod storm-ping-streampod storm-join-floor storm-ping-floor; do
    target/release/loadgen median "$OUT/$scenario.jsonl" >> "$RESULTS"
done
if [ -n "${RESTORE_SOMAXCONN:-}" ]; then
    sysctl -qw net.core.somaxconn="$RESTORE_SOMAXCONN"
fi

# History vs plain (issue 17): the same room with and without history, subscribers on
# the streampod.v1 subprotocol (so history frames carry their channel and position).
for target in streampod-v1 streampod-history; do
    measure "history-$target-burst" "$target" burst --subscribers 1000 --messages 6000 \
        --window 200 --extended
done
# Recovery: 1,000 subscribers drop at once, 100 messages are posted, all come back at once.
measure recovery-streampod-history streampod-history recovery --subscribers 1000 --missed 100

# Global vs local: the same server with --redis, so every delivery goes through one
# Redis (a private redis-server on the server's core, stopped at exit).
REDIS_PORT=18699
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
PIDS+=("$!")
for target in streampod-local streampod-global; do
    measure "scope-$target-burst" "$target" burst --subscribers 1000 --messages 6000 --window 200
    measure "scope-$target-rate" "$target" rate --subscribers 1000 --per-second 100 \
        --seconds "$RATE_SECONDS"
done
# History through Redis against plain global posts, both on streampod.v1 (issue 17).
for target in streampod-global-v1 streampod-global-history; do
    measure "history-$target-burst" "$target" burst --subscribers 1000 --messages 6000 \
        --window 200 --extended
done
# The same recovery through Redis: each join reads its missed messages from there.
measure recovery-streampod-global-history streampod-global-history recovery \
    --subscribers 1000 --missed 100
# Presence (issue 17): STORM members join one room of a cluster node at once, then all
# leave at once; timed until the room's presence hash in Redis lists all, then none.
measure presence-streampod-global streampod-global presence --subscribers "$STORM" \
    --connect-parallelism "$STORM" --redis "redis://127.0.0.1:$REDIS_PORT/"

TABLE="$OUT/table.md"
{
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), medians of $RUNS runs ($STORM_RUNS for storms), with \`bash tests/bench.sh\`."
    echo
    target/release/loadgen table "$RESULTS"
} > "$TABLE"
awk -v table="$TABLE" '
    /<!-- results:start -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
    /<!-- results:end -->/ { skip = 0 }
    !skip { print }
' BENCHMARKS.md > "$OUT/BENCHMARKS.md" && mv "$OUT/BENCHMARKS.md" BENCHMARKS.md
cat "$TABLE"
