#!/usr/bin/env bash
# URL shortener throughput and latency, against nginx in the same run.
#
#  1. Redirects: GET /{code} on a cached link (`url-shortener --workers 1`) against nginx's
#     `return 302` (one worker process), the same wrk load on each, alternating, ROUNDS times.
#  2. Link creation: POST /api/v1/links with generated codes on the embedded sled store (each
#     create is flushed to disk before the 201) and on the kv-store (`--store kv://`, the
#     kv-store with `--fsync always`: the same promise), alternating, ROUNDS times.
#
# Prints Markdown tables of medians for BENCHMARKS.md, and the click counters at the end
# (every redirect is a click: queued, aggregated, flushed; dropped ones are counted).
#
#   bash bench/url-shortener.sh              # defaults: 3 rounds of 10 s, 50 connections
#   ROUNDS=5 DURATION=20s CONNECTIONS=100 bash bench/url-shortener.sh
#
# Needs wrk, nginx and curl (installed here from Debian's packages if missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-1}

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx-light curl >/dev/null
fi


cargo build --release --locked -q -p url-shortener --bin url-shortener -p kv-store --bin kv-store
bin="${CARGO_TARGET_DIR:-target}/release/url-shortener"
kv_bin="${CARGO_TARGET_DIR:-target}/release/kv-store"
work=$(mktemp -d)
ours_port=$(free_port)
ours_admin=$(free_port)
nginx_port=$(free_port)
kv_port=$(free_port)
kv_admin=$(free_port)
shared_port=$(free_port)
shared_admin=$(free_port)
target="https://example.com/a/landing/page?utm_source=bench"

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
    location = /bench-link { add_header Cache-Control no-store always; return 302 "$target"; }
  }
}
CONF

"$bin" --listen "127.0.0.1:$ours_port" --admin-listen "127.0.0.1:$ours_admin" \
  --data-dir "$work/store" --workers 1 --log-level warn &
ours_pid=$!
nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
"$kv_bin" --listen "127.0.0.1:$kv_port" --admin-listen "127.0.0.1:$kv_admin" \
  --data-dir "$work/kv" --fsync always --log-level warn &
kv_pid=$!
cleanup() {
  kill "$ours_pid" "$nginx_pid" "${shared_pid:-}" "$kv_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port "$ours_port"
wait_port "$nginx_port"
wait_port "$kv_port"
"$bin" --listen "127.0.0.1:$shared_port" --admin-listen "127.0.0.1:$shared_admin" \
  --store "kv://127.0.0.1:$kv_port" --workers 1 --log-level warn &
shared_pid=$!
wait_port "$shared_port"

curl -sf --max-time 10 -X POST "http://127.0.0.1:$ours_port/api/v1/links" -H 'Content-Type: application/json' \
  -d "{\"url\": \"$target\", \"alias\": \"bench-link\"}" >/dev/null
for port in "$ours_port" "$nginx_port"; do
  status=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$port/bench-link")
  [ "$status" = "302 $target" ] || { echo "127.0.0.1:$port answered '$status'" >&2; exit 1; }
done

cat > "$work/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"url": "https://example.com/a/landing/page?utm_source=bench"}'
LUA

# One wrk run; prints "rps p99_ms". Extra arguments go to wrk.
run_wrk() {
  local url=$1; shift
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" |
    awk '/Requests\/sec/ {rps=$2}
         /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
         / +Non-2xx or 3xx responses/ {bad=$NF}
         END {printf "%s %s %s\n", rps, p99, bad+0}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/ours"; : > "$work/nginx"; : > "$work/create"; : > "$work/create_kv"
for round in $(seq "$ROUNDS"); do
  run_wrk "http://127.0.0.1:$ours_port/bench-link" >> "$work/ours"
  run_wrk "http://127.0.0.1:$nginx_port/bench-link" >> "$work/nginx"
  echo "round $round: redirect ours $(tail -1 "$work/ours"), nginx $(tail -1 "$work/nginx")" >&2
done
for round in $(seq "$ROUNDS"); do
  run_wrk "http://127.0.0.1:$ours_port/api/v1/links" -s "$work/create.lua" >> "$work/create"
  run_wrk "http://127.0.0.1:$shared_port/api/v1/links" -s "$work/create.lua" >> "$work/create_kv"
  echo "round $round: create sled $(tail -1 "$work/create"), kv-store $(tail -1 "$work/create_kv")" >&2
done
if awk '$3 > 0 {bad=1} END {exit !bad}' "$work/ours" "$work/nginx" "$work/create" "$work/create_kv"; then
  echo "some responses were not 2xx or 3xx (third column above)" >&2; exit 1
fi

col() { cut -d' ' -f"$2" "$work/$1" | median; }
ratio=$(awk -v a="$(col ours 1)" -v b="$(col nginx 1)" 'BEGIN {printf "%.2f", a/b}')
created=$(curl -s --max-time 10 "http://127.0.0.1:$ours_admin/metrics" | awk '/^url_shortener_links_created_total/ {print $2}')
sleep 2 # one click flush interval, and some
clicks=$(curl -s --max-time 10 "http://127.0.0.1:$ours_port/api/v1/links/bench-link" | sed 's/.*"clicks":\([0-9]*\).*/\1/')
dropped=$(curl -s --max-time 10 "http://127.0.0.1:$ours_admin/metrics" | awk '/^url_shortener_clicks_dropped_total/ {print $2}')

echo
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds, medians"
echo
echo "| GET /{code}, cached link | requests/s | p99 latency (ms) |"
echo "|---|---|---|"
echo "| url-shortener (1 worker, 302 + click counted) | $(col ours 1) | $(col ours 2) |"
echo "| nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (1 worker, \`return 302\`) | $(col nginx 1) | $(col nginx 2) |"
echo "| ratio ours/nginx | $ratio | |"
echo
echo "| POST /api/v1/links, generated codes | requests/s | p99 latency (ms) |"
echo "|---|---|---|"
echo "| url-shortener, embedded sled store (flush per create) | $(col create 1) | $(col create 2) |"
echo "| url-shortener, kv-store \`--fsync always\` (one process, loopback) | $(col create_kv 1) | $(col create_kv 2) |"
echo
echo "links created: $created; clicks counted on bench-link: $clicks; clicks dropped (queue full): $dropped"
