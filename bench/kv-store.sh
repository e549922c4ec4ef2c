#!/usr/bin/env bash
# kv-store against redis-server 7 (Debian package), side by side in one run.
#
#   bash bench/kv-store.sh            # from the workspace root
#   ROUNDS=5 REQUESTS_P16=2000000 KEYS=1000000 bash bench/kv-store.sh
#   MEMORY_ONLY=1 bash bench/kv-store.sh   # skip redis-benchmark, measure memory only
#
# Comparable persistence: Redis with appendonly yes, appendfsync everysec (no RDB snapshots);
# kv-store with --fsync everysec. Both single-threaded (kv-store's default --workers 1). The
# same redis-benchmark, 50 clients, pipelines of 1 and 16, the tests below, ROUNDS times, each
# round starting from FLUSHALL on both and alternating which server goes first; the table shows
# each test's median over the rounds (single runs on a shared machine swing by tens of percent).
# Requests per test: REQUESTS_P16 and REQUESTS_P1 (or REQUESTS for both), enough for a test to
# last about a second or more. Then the resident memory of each after loading KEYS keys with
# 100-byte values through redis-cli --pipe.
#
# Needs redis-server, redis-benchmark and redis-cli (apt-get install redis-server redis-tools,
# done here when run as root). Ports come from the kernel (bound and released), data in a
# temporary directory that is removed at exit.
set -euo pipefail

REQUESTS_P16=${REQUESTS_P16:-${REQUESTS:-1000000}}
REQUESTS_P1=${REQUESTS_P1:-${REQUESTS:-200000}}
ROUNDS=${ROUNDS:-3}
MEMORY_ONLY=${MEMORY_ONLY:-0}
KEYS=${KEYS:-1000000}
TESTS=set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
    else
        echo "needs redis-server and redis-tools (apt-get install redis-server redis-tools)" >&2
        exit 1
    fi
fi

(cd "$ROOT" && cargo build --release -q -p kv-store --bin kv-store)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_ping() {
    for _ in $(seq 1 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not answer" >&2
    exit 1
}

start_redis() {
    mkdir -p "$WORK/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
        --appendfsync everysec --save "" --logfile "$WORK/redis/log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_ping "$REDIS_PORT"
}

start_kv() {
    KV_ADMIN=$(free_port)
    "$TARGET/release/kv-store" --listen "127.0.0.1:$KV_PORT" --admin-listen "127.0.0.1:$KV_ADMIN" \
        --data-dir "$WORK/kv" --fsync everysec --log-level warn 2>"$WORK/kv.log" &
    KV_PID=$!
    PIDS+=("$KV_PID")
    wait_ping "$KV_PORT"
}

REDIS_PORT=$(free_port)
KV_PORT=$(free_port)
start_redis
start_kv

# Server CPU (user + system) consumed so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# One test at a time, so that each has its server CPU time: prints "test<TAB>rps<TAB>server CPU
# microseconds per request" (redis-benchmark --csv prints "test","rps",...). The lrange_100 test
# first runs its own LPUSH; both rows share that invocation's CPU, split by request count.
bench() {
    local port=$1 pid=$2 pipeline=$3 requests=$4 test before after
    for test in ${TESTS//,/ }; do
        before=$(cpu_ticks "$pid")
        redis-benchmark -p "$port" -c 50 -n "$requests" -P "$pipeline" -t "$test" --csv 2>/dev/null \
            >"$WORK/one.csv"
        after=$(cpu_ticks "$pid")
        awk -F'","' -v cpu_us=$(((after - before) * TICK_US)) -v n="$requests" '
            NR > 1 { gsub(/"/, "", $1); gsub(/"/, "", $2); name[++rows] = $1; rps[rows] = $2 }
            END { for (i = 1; i <= rows; i++) printf "%s\t%s\t%.2f\n", name[i], rps[i], cpu_us / (n * rows) }
        ' "$WORK/one.csv"
    done
}

# Reads "test<TAB>value..." lines, several per test; prints each test's median of column $1.
median() {
    cut -f1,"$1" | sort -t $'\t' -k1,1 -k2,2g | awk -F'\t' '
        function flush() { if (n) print name "\t" v[int((n + 1) / 2)] }
        $1 != name { flush(); name = $1; n = 0 }
        { v[++n] = $2 }
        END { flush() }'
}

echo "# redis-benchmark -c 50, one test at a time, median of $ROUNDS rounds; redis $(redis-server --version | awk '{print $3}')"
pipelines="16 1"
[ "$MEMORY_ONLY" = 1 ] && pipelines=""
for pipeline in $pipelines; do
    requests=$REQUESTS_P1
    [ "$pipeline" = 16 ] && requests=$REQUESTS_P16
    : >"$WORK/redis.tsv"
    : >"$WORK/kv.tsv"
    for round in $(seq 1 "$ROUNDS"); do
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
        redis-cli -p "$KV_PORT" flushall >/dev/null
        if [ $((round % 2)) = 1 ]; then
            bench "$REDIS_PORT" "$REDIS_PID" "$pipeline" "$requests" >>"$WORK/redis.tsv"
            bench "$KV_PORT" "$KV_PID" "$pipeline" "$requests" >>"$WORK/kv.tsv"
        else
            bench "$KV_PORT" "$KV_PID" "$pipeline" "$requests" >>"$WORK/kv.tsv"
            bench "$REDIS_PORT" "$REDIS_PID" "$pipeline" "$requests" >>"$WORK/redis.tsv"
        fi
    done
    echo
    echo "## -P $pipeline, -n $requests: requests/s, and server CPU microseconds per request"
    printf '%-36s %10s %10s %6s %8s %8s %6s\n' test redis kv-store ratio redis-us kv-us ratio
    join -t $'\t' <(median 2 <"$WORK/redis.tsv") <(median 2 <"$WORK/kv.tsv") >"$WORK/rps.tsv"
    join -t $'\t' <(median 3 <"$WORK/redis.tsv") <(median 3 <"$WORK/kv.tsv") >"$WORK/cpu.tsv"
    join -t $'\t' "$WORK/rps.tsv" "$WORK/cpu.tsv" | awk -F'\t' '{
        printf "%-36s %10.0f %10.0f %6.2f %8.2f %8.2f %6.2f\n", $1, $2, $3, $3 / $2, $4, $5, ($4 > 0 ? $5 / $4 : 0) }'
done

# Memory: KEYS keys with 100-byte values, loaded the same way into both.
awk -v n="$KEYS" 'BEGIN {
    v = sprintf("%0100d", 0)
    for (i = 0; i < n; i++) { k = sprintf("key:%012d", i); printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n", length(k), k, v }
}' >"$WORK/load.resp"
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
redis-cli -p "$REDIS_PORT" flushall >/dev/null
redis-cli -p "$KV_PORT" flushall >/dev/null
redis-cli -p "$REDIS_PORT" --pipe <"$WORK/load.resp" >/dev/null
redis-cli -p "$KV_PORT" --pipe <"$WORK/load.resp" >/dev/null
echo
echo "## resident memory with $KEYS keys of 100 bytes"
echo "redis dbsize $(redis-cli -p "$REDIS_PORT" dbsize), kv-store dbsize $(redis-cli -p "$KV_PORT" dbsize)"
report_rss() {
    local redis_rss kv_rss
    redis_rss=$(rss_kib "$REDIS_PID")
    kv_rss=$(rss_kib "$KV_PID")
    printf '%s: redis %d MiB, kv-store %d MiB, ratio %.2f\n' "$1" $((redis_rss / 1024)) \
        $((kv_rss / 1024)) "$(echo "$kv_rss / $redis_rss" | bc -l)"
}
report_rss "right after the load"
# Then until a checkpoint covers the whole log, so the image holds every key (checkpoints run
# every 60 s at the latest).
for _ in $(seq 1 180); do
    metrics=$(curl -s --max-time 5 "http://127.0.0.1:$KV_ADMIN/metrics")
    last=$(echo "$metrics" | awk '/^kv_log_last_index/ { print $2 }')
    index=$(echo "$metrics" | awk '/^kv_checkpoint_index/ { print $2 }')
    [ -n "$index" ] && [ "$index" = "$last" ] && break
    sleep 1
done
report_rss "after the checkpoints (index $index of $last)"
echo "kv-store image on disk: $(du -sh "$WORK/kv" | cut -f1)"
