#!/usr/bin/env bash
# Hello-world HTTP throughput: our HTTP/1.1 layer (bench's `http-hello`, one worker thread)
# against nginx `return 200` (one worker process), the same wrk run against each, alternating,
# ROUNDS times. Prints a Markdown table of medians for BENCHMARKS.md.
#
#   bash bench/http-hello.sh                 # defaults: 3 rounds of 10 s, 50 connections
#   ROUNDS=5 DURATION=20s CONNECTIONS=100 bash bench/http-hello.sh
#
# Needs wrk and nginx (installed here from Debian's packages if missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-1}

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi


cargo build --release --locked -q -p bench --bin http-hello
bin="${CARGO_TARGET_DIR:-target}/release/http-hello"
work=$(mktemp -d)
ours_port=$(free_port)
ours_admin=$(free_port)
nginx_port=$(free_port)

mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/logs/error.log crit;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 "hello, world\n"; }
  }
}
CONF

"$bin" --listen "127.0.0.1:$ours_port" --admin-listen "127.0.0.1:$ours_admin" \
  --workers 1 --log-level warn &
ours_pid=$!
nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
cleanup() { kill "$ours_pid" "$nginx_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_port "$ours_port"
wait_port "$nginx_port"

# One wrk run; prints "rps p99_ms".
run_wrk() {
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$1/" |
    awk '/Requests\/sec/ {rps=$2}
         /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
         END {printf "%s %s\n", rps, p99}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/ours"; : > "$work/nginx"
for round in $(seq "$ROUNDS"); do
  run_wrk "$ours_port" >> "$work/ours"
  run_wrk "$nginx_port" >> "$work/nginx"
  echo "round $round: ours $(tail -1 "$work/ours"), nginx $(tail -1 "$work/nginx")" >&2
done

ours_rps=$(cut -d' ' -f1 "$work/ours" | median)
ours_p99=$(cut -d' ' -f2 "$work/ours" | median)
nginx_rps=$(cut -d' ' -f1 "$work/nginx" | median)
nginx_p99=$(cut -d' ' -f2 "$work/nginx" | median)
ratio=$(awk -v a="$ours_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a/b}')

echo
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds alternating, medians"
echo
echo "| server | requests/s | p99 latency (ms) |"
echo "|---|---|---|"
echo "| http1 (http-hello, 1 worker) | $ours_rps | $ours_p99 |"
echo "| nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (1 worker, return 200) | $nginx_rps | $nginx_p99 |"
echo "| ratio ours/nginx | $ratio | |"
