#!/usr/bin/env bash
# How the scheduler treats reverse-proxy and HAProxy under the load of bench/reverse-proxy.sh
# (wrk -t2 -c50, one `http-hello` backend, the bare configs), on a machine whose cores wrk,
# the proxy and the backend share. For each proxy:
#
#   rps, p99          wrk's, over 4 s (untraced)
#   cpu us/req        CPU time of the proxy's threads per request (/proc/<pid>/task/*/schedstat)
#   wait us/req       time its threads spent runnable but waiting for a core, per request
#   backend us/req    CPU time of the backend per request (it batches less when woken more)
#   (the rest over one second of a second wrk run, traced with perf, which slows it down)
#   passes/s, ops     passes of the proxy's event loops (epoll_wait to epoll_wait), and the
#                     median count of reads and writes (recvfrom, writev, sendto) in one
#   preempted/s       times a proxy thread lost its core while runnable (sched_switch, R)
#   left<5, left>=40  of those, the share with fewer than 5 / at least 40 reads and writes
#                     still to do before the thread's next epoll_wait: the connections that
#                     wait with it
#
#   bash bench/sched-profile.sh                  # two workers, one round
#   WORKERS=1 ROUNDS=3 bash bench/sched-profile.sh
#
# Needs wrk, haproxy and perf (installed from Debian's packages if missing, as root), and
# root for perf's tracepoints.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-1}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
command -v perf >/dev/null || need+=(linux-perf)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --locked -q -p bench --bin http-hello -p reverse-proxy --bin reverse-proxy
target="${CARGO_TARGET_DIR:-target}/release"
scratch
start_hello_backend

ours=$(free_port)
proxy_toml "$ours" "$backend" "$WORKERS" | bare > "$work/ours.toml"
"$target/reverse-proxy" --config "$work/ours.toml" &
ours_pid=$!
pids+=("$ours_pid")

haproxy_port=$(free_port)
haproxy_globals "$WORKERS" > "$work/haproxy.cfg"
cat >> "$work/haproxy.cfg" <<CONF
frontend http_in
  mode http
  bind 127.0.0.1:$haproxy_port
  default_backend app
backend app
  mode http
  http-reuse always
  server s1 127.0.0.1:$backend
CONF
haproxy -f "$work/haproxy.cfg" -db &
haproxy_pid=$!
pids+=("$haproxy_pid")
for port in "$ours" "$haproxy_port"; do wait_port "$port"; done

# Sums "run_ns wait_ns" over the threads of PID.
schedstat() { cat /proc/"$1"/task/*/schedstat | awk '{r += $1; w += $2} END {print r, w}'; }

# Reads `perf script` output of one second on stdin; prints the pass and preemption columns
# for the threads TIDS.
analyse() {
  python3 -c '
import re, sys
tids = set(int(t) for t in sys.argv[1].split())
events = {t: [] for t in tids}
line_re = re.compile(r"\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)")
switch_re = re.compile(r"prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> .* next_pid=(\d+)")
for line in sys.stdin:
    m = line_re.match(line)
    if not m:
        continue
    tid, event, rest = int(m.group(1)), m.group(3), m.group(4)
    if event == "sched:sched_switch":
        s = switch_re.search(rest)
        prev, state = int(s.group(1)), s.group(2)
        if prev in tids and state.startswith("R"):
            events[prev].append("preempted")
    elif tid in tids:
        events[tid].append("wait" if "epoll" in event else "op")
ops_per_pass, left = [], []
for seq in events.values():
    ops, preempted_at = 0, []
    for e in seq:
        if e == "wait":
            ops_per_pass.append(ops)
            left.extend(ops - at for at in preempted_at)
            ops, preempted_at = 0, []
        elif e == "op":
            ops += 1
        else:
            preempted_at.append(ops)
ops_per_pass.sort()
median = ops_per_pass[len(ops_per_pass) // 2] if ops_per_pass else 0
share = lambda f: 100 * sum(1 for n in left if f(n)) / max(len(left), 1)
print(f"{len(ops_per_pass):8d} {median:4d} {len(left):8d}"
      f" {share(lambda n: n < 5):5.0f}% {share(lambda n: n >= 40):5.0f}%")
' "$1"
}

# One target: a wrk run measured from /proc (rps, p99, CPU and waits per request), then a
# second one, of which one second is traced.
profile() {
  local name=$1 port=$2 pid=$3
  local proxy0 backend0 proxy1 backend1
  proxy0=$(schedstat "$pid"); backend0=$(schedstat "$backend_pid")
  wrk -t2 -c50 -d4s --latency "http://127.0.0.1:$port/" > "$work/wrk"
  proxy1=$(schedstat "$pid"); backend1=$(schedstat "$backend_pid")
  local requests rps p99 cpu
  requests=$(awk '/requests in/ {print $1}' "$work/wrk")
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk")
  p99=$(awk '/^ +99%/ {print $2}' "$work/wrk")
  cpu=$(awk -v p0="$proxy0" -v p1="$proxy1" -v b0="$backend0" -v b1="$backend1" -v n="$requests" '
    BEGIN {split(p0, a, " "); split(p1, b, " "); split(b0, c, " "); split(b1, d, " ")
           printf "%7.1f %7.1f %7.1f", (b[1]-a[1])/n/1000, (b[2]-a[2])/n/1000, (d[1]-c[1])/n/1000}')

  wrk -t2 -c50 -d3s "http://127.0.0.1:$port/" > /dev/null &
  local wrk_pid=$! tids
  sleep 1
  tids=$(ls /proc/"$pid"/task | tr '\n' ' ')
  perf record -q -a -o "$work/perf.data" \
    -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_recvfrom \
    -e syscalls:sys_enter_writev -e syscalls:sys_enter_sendto -e sched:sched_switch \
    -- sleep 1 >/dev/null 2>&1
  wait "$wrk_pid"
  printf "%-14s %8s %7s %s %s\n" "$name" "$rps" "$p99" "$cpu" \
    "$(perf script -i "$work/perf.data" -F tid,time,event,trace 2>/dev/null | analyse "$tids")"
}

printf "%-14s %8s %7s %7s %7s %7s %8s %4s %8s %6s %6s\n" target rps p99 "cpu" "wait" "backend" \
  "passes/s" ops "preempt/s" "left<5" "left>=40"
for _ in $(seq "$ROUNDS"); do
  profile reverse-proxy "$ours" "$ours_pid"
  profile haproxy "$haproxy_port" "$haproxy_pid"
done
