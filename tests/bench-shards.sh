#!/usr/bin/env bash
# Global fan-out over one Redis against a three-master Redis Cluster (sharded pub/sub),
# with traffic on three rooms that hash to three different shards: the example server
# on core 0, the Redis processes on core 0 too, three load generators at once on core 1.
#
#   bash tests/bench-shards.sh          # RUNS=3 runs per backend, every run printed
#
# Reports, per run, all deliveries over the longest generator's time and the CPU each Redis
# process used (from /proc/PID/stat), so where the Redis work went is visible. Every
# process it starts is stopped, by PID, when it exits. Needs redis-server and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-333}
MESSAGES=${MESSAGES:-18000}
OUT=target/bench-shards
rm -rf "$OUT"
mkdir -p "$OUT"
# shellcheck source=tests/bench-common.sh
. tests/bench-common.sh

SINGLE=18800
SHARDS=(18801 18802 18803)
taskset -c 0 redis-server --port "$SINGLE" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
PIDS+=("$!")
SINGLE_PID=$!
SHARD_PIDS=()
for port in "${SHARDS[@]}"; do
    mkdir -p "$OUT/redis-$port"
    taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --dir "$OUT/redis-$port" >/dev/null 2>&1 &
    PIDS+=("$!")
    SHARD_PIDS+=("$!")
done
for port in "$SINGLE" "${SHARDS[@]}"; do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
done
redis-cli --cluster create "${SHARDS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "${SHARDS[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done

# Three rooms whose Redis channels hash into the three masters' slot ranges (as
# `--cluster create` assigns them: 0-5460, 5461-10922, 10923-16383).
ROOMS=()
for shard in 0 1 2; do
    for n in $(seq 0 200); do
        slot=$(redis-cli -p "${SHARDS[0]}" cluster keyslot "streampod-example:channel:{chat-room-bench$n}")
        if [ $((slot * 3 / 16384)) -eq "$shard" ]; then ROOMS+=("bench$n"); break; fi
    done
done
echo "rooms: ${ROOMS[*]}"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # backend flag...
    local name=$1; shift
    PORT=$((${PORT:-18900} + 1))
    TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$PORT" \
        --max-frames-per-second 0 "$@" --log streampod::cluster=info,error >"$OUT/server.log" 2>&1 &
    local server=$!
    PIDS+=("$server")
    until grep -q "global posts go out" "$OUT/server.log"; do sleep 0.05; done
    local before=()
    for pid in "$SINGLE_PID" "${SHARD_PIDS[@]}"; do before+=("$(cpu_ticks "$pid")"); done
    rm -f "$OUT/$name"-*.json
    local gens=()
    for room in "${ROOMS[@]}"; do
        timeout 300 taskset -c 1 target/release/loadgen burst --url "ws://127.0.0.1:$PORT/websocket" \
            --target "$name" --room "$room" --subscribers "$SUBSCRIBERS" --messages "$MESSAGES" \
            --window 200 --deadline 60 >"$OUT/$name-$room.json" &
        gens+=("$!")
    done
    wait "${gens[@]}"
    local used=()
    local i=0
    for pid in "$SINGLE_PID" "${SHARD_PIDS[@]}"; do
        used+=("$(( $(cpu_ticks "$pid") - before[i] ))")
        i=$((i + 1))
    done
    kill "$server"; wait "$server" 2>/dev/null || true
    local total
    total=$(cat "$OUT"/"$name"-*.json | python3 -c 'import json,sys; r=[json.loads(l) for l in sys.stdin]; print(round(sum(x["deliveries"] for x in r) / max(x["seconds"] for x in r)))')
    local complete
    complete=$(cat "$OUT"/"$name"-*.json | python3 -c 'import json,sys; r=[json.loads(l) for l in sys.stdin]; print(str(sum(x["deliveries"] for x in r)) + "/" + str(sum(x["expected"] for x in r)))')
    echo "| $name | $total | $complete | ${used[0]} | ${used[1]} / ${used[2]} / ${used[3]} |"
}

echo
echo "| backend | deliveries/s (3 rooms together) | complete | one Redis CPU ticks | shard CPU ticks |"
echo "|---|---|---|---|---|"
for _ in $(seq "$RUNS"); do
    run redis --redis "redis://127.0.0.1:$SINGLE/"
    run redis-cluster --redis-cluster "redis://127.0.0.1:${SHARDS[0]}/"
done
echo "(CPU ticks are 1/$(getconf CLK_TCK) s; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
