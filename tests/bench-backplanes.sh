#!/usr/bin/env bash
# Three example-server nodes over each backplane — one Redis, a three-master Redis
# Cluster, one NATS server with JetStream — with every delivery crossing it: a publisher on node 0,
# subscribers on nodes 1 and 2 (one room each, one load generator each). Per backend,
# one burst run (deliveries/s, all of both rooms over the longer generator's time) and
# one rate run (publish-to-receive latency, 100 messages/s per room for 10 s).
#
#   bash tests/bench-backplanes.sh     # prints one markdown row per backend
#
# The nodes and the backend's processes share core 0, the two generators core 1. Every
# process it starts is stopped, by PID, when it exits. Needs redis-server, redis-cli and
# nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS=${SUBSCRIBERS:-500}
MESSAGES=${MESSAGES:-6000}
OUT=target/bench-backplanes
rm -rf "$OUT"
mkdir -p "$OUT"
# shellcheck source=tests/bench-common.sh
. tests/bench-common.sh
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

SINGLE=18810
SHARDS=(18811 18812 18813)
NATS=18814
taskset -c 0 redis-server --port "$SINGLE" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
PIDS+=("$!")
for port in "${SHARDS[@]}"; do
    mkdir -p "$OUT/redis-$port"
    taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --dir "$OUT/redis-$port" >/dev/null 2>&1 &
    PIDS+=("$!")
done
mkdir -p "$OUT/nats"
taskset -c 0 "$NATS_SERVER" -a 127.0.0.1 -p "$NATS" -js -sd "$OUT/nats" >/dev/null 2>&1 &
PIDS+=("$!")
for port in "$SINGLE" "${SHARDS[@]}"; do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
done
redis-cli --cluster create "${SHARDS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "${SHARDS[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
until (exec 3<>"/dev/tcp/127.0.0.1/$NATS") 2>/dev/null; do sleep 0.05; done

NODES=()
start_nodes() { # backend flag...
    NODES=()
    for n in 0 1 2; do
        local port=$((18820 + n))
        TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/example-server --bind "127.0.0.1:$port" \
            --max-frames-per-second 0 "$@" --log streampod::cluster=info,error >"$OUT/node-$n.log" 2>&1 &
        NODES+=("$!")
        PIDS+=("$!")
    done
    for n in 0 1 2; do
        until grep -q "global posts go out" "$OUT/node-$n.log"; do sleep 0.05; done
    done
}

stop_nodes() {
    for pid in "${NODES[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

generators() { # name mode args...
    local name=$1 mode=$2; shift 2
    local gens=()
    for n in 1 2; do
        timeout 300 taskset -c 1 target/release/loadgen "$mode" --url "ws://127.0.0.1:$((18820 + n))/websocket" \
            --publish-url "ws://127.0.0.1:18820/websocket" --target "$name" --room "cross$n" \
            --subscribers "$SUBSCRIBERS" --deadline 60 "$@" >"$OUT/$name-$mode-$n.json" &
        gens+=("$!")
    done
    wait "${gens[@]}"
}

run() { # name backend flag...
    local name=$1; shift
    start_nodes "$@"
    generators "$name" burst --messages "$MESSAGES" --window 200
    generators "$name" rate --per-second 100 --seconds 10
    stop_nodes
    python3 - "$OUT" "$name" <<'PY'
import json, sys
out, name = sys.argv[1], sys.argv[2]
load = lambda mode: [json.loads(open(f"{out}/{name}-{mode}-{n}.json").read().splitlines()[-1]) for n in (1, 2)]
burst, rate = load("burst"), load("rate")
rate_per_s = round(sum(r["deliveries"] for r in burst) / max(r["seconds"] for r in burst))
complete = f'{sum(r["deliveries"] for r in burst)}/{sum(r["expected"] for r in burst)}'
p50 = max(r["p50_ms"] for r in rate)
p99 = max(r["p99_ms"] for r in rate)
rate_complete = f'{sum(r["deliveries"] for r in rate)}/{sum(r["expected"] for r in rate)}'
print(f"| {name} | {rate_per_s} | {complete} | {p50:.1f} | {p99:.1f} | {rate_complete} |")
PY
}

echo
echo "| backplane (3 nodes) | deliveries/s | complete | p50 ms | p99 ms | complete (rate) |"
echo "|---|---|---|---|---|---|"
run redis --redis "redis://127.0.0.1:$SINGLE/"
run redis-cluster --redis-cluster "redis://127.0.0.1:${SHARDS[0]}/"
run nats --nats "nats://127.0.0.1:$NATS"
echo "($SUBSCRIBERS subscribers per room, 2 rooms; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
