#!/usr/bin/env bash
# message-broker in Jay Kreps' 2014 setup ("Benchmarking Apache Kafka: 2 million writes per
# second on three cheap machines"), on this one machine, with Redis Streams beside it.
#
#   bash bench/message-broker.sh            # from the workspace root
#   RECORDS=10000000 LATENCY_RECORDS=20000 bash bench/message-broker.sh   # the defaults
#
# 100-byte records, one topic with 6 partitions, broker and clients on the same host:
#   1. one producer, acks leader, async batching (64 KiB batches, 5 ms linger), --flush interval
#   2. one producer, acks all, --flush always (every acknowledgment after an fdatasync)
#   3. one consumer, reading what 1 wrote
#   4. a producer and a consumer at once (acks leader)
#   5. end-to-end latency: one record at a time, 1000 a second, due time to consumer
#   6. the disk: dd of 1 GiB with fdatasync, the same run, for the MB/s ratio
#   7. Redis Streams (redis-server, appendonly everysec): XADD of the same records from one
#      client, pipelines of 64 (Redis's way of not waiting per record), and XRANGE reads of
#      1000 entries, both through redis-benchmark.
#
# Needs redis-server and redis-tools (installed here when run as root). Ports come from the
# kernel, data in a temporary directory removed at exit.
set -euo pipefail

RECORDS=${RECORDS:-10000000}
LATENCY_RECORDS=${LATENCY_RECORDS:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
B=$TARGET/release

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
    else
        echo "needs redis-server and redis-tools (apt-get install redis-server redis-tools)" >&2
        exit 1
    fi
fi

(cd "$ROOT" && cargo build --release -q -p message-broker --bin message-broker --bin broker-perf)

WORK=$(mktemp -d -p "${BENCH_DIR:-/tmp}")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a broker with an empty data directory and the given flush policy; sets BROKER.
start_broker() {
    stop_broker
    local port admin
    port=$(free_port)
    admin=$(free_port)
    rm -rf "$WORK/broker"
    "$B/message-broker" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --data-dir "$WORK/broker" --flush "$1" --log-level warn 2>>"$WORK/broker.log" &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    BROKER=127.0.0.1:$port
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "the broker did not become ready" >&2
    exit 1
}

stop_broker() {
    if [ -n "${BROKER_PID:-}" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=
    fi
}

perf() { "$B/broker-perf" --broker "$BROKER" "$@"; }

echo "== message-broker, $RECORDS records of 100 bytes, 6 partitions ($(date -u +%FT%TZ))"
start_broker interval
perf produce --topic perf --records "$RECORDS" --acks leader
perf consume --topic perf --records "$RECORDS"
perf both --topic together --records "$RECORDS"
perf latency --topic latency --records "$LATENCY_RECORDS" --rate 1000
start_broker always
perf produce --topic durable --records "$RECORDS" --acks all
stop_broker

echo "== disk: 1 GiB sequential write with fdatasync, in $WORK"
dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1
rm -f "$WORK/dd"

echo "== Redis Streams (redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), appendonly everysec)"
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
    --appendfsync everysec --save "" --logfile "$WORK/redis/log" &
PIDS+=("$!")
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
VALUE=$(printf 'x%.0s' $(seq 1 100))
# redis-benchmark -q redraws a progress line with carriage returns; keep its final figure.
final() { tr '\r' '\n' | grep 'requests per second' | sed 's/.*: \([0-9.]* requests per second.*\)/\1/'; }
echo "XADD, one client, pipelines of 64 (requests/s = records/s):"
redis-benchmark -p "$REDIS_PORT" -c 1 -P 64 -n "$RECORDS" -q XADD perf '*' v "$VALUE" | final
echo "XRANGE of 1000 entries, one client (requests/s x 1000 = records/s):"
redis-benchmark -p "$REDIS_PORT" -c 1 -n 5000 -q XRANGE perf - + COUNT 1000 | final
