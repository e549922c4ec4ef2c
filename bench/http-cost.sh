#!/usr/bin/env bash
# What one hello-world request costs our HTTP/1.1 layer (bench's `http-hello`, one worker) and
# nginx `return 200` (one worker), in measures that other load on the machine does not move.
# With MODE=proxy: what one proxied request costs `reverse-proxy` and nginx `proxy_pass` (one
# worker each, 64 idle upstream connections, as in bench/reverse-proxy.sh) in front of an
# `http-hello` backend that is not measured.
#
#   syscalls per request      perf's syscall tracepoints on the serving process over a wrk run
#   instructions per request  user-space instructions, counted by valgrind's callgrind over a
#                             wrk run (kernel time is not in it: compare syscalls for that)
#
# Requests per second (bench/http-hello.sh) swing by half when others compile on the machine;
# these counts stay within a percent, so compare changes with them first.
#
#   bash bench/http-cost.sh            # both servers, 5 s of wrk -t1 -c50 for each measure
#   DURATION=10s bash bench/http-cost.sh
#   MODE=proxy bash bench/http-cost.sh
#
# Needs wrk, nginx, perf and valgrind (installed here from Debian's packages if missing, as
# root).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-50}
MODE=${MODE:-hello}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v perf >/dev/null || need+=(linux-perf)
command -v valgrind >/dev/null || need+=(valgrind)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --locked -q -p bench --bin http-hello -p reverse-proxy --bin reverse-proxy
bin="${CARGO_TARGET_DIR:-target}/release/http-hello"
proxy_bin="${CARGO_TARGET_DIR:-target}/release/reverse-proxy"
work=$(mktemp -d)
pids=()
pid=
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT


# The backend of MODE=proxy, outside any measure.
if [ "$MODE" = proxy ]; then
  backend=$(free_port)
  "$bin" --listen "127.0.0.1:$backend" --admin-listen "127.0.0.1:$(free_port)" --workers 1 \
    --log-level warn >>"$work/output" 2>&1 &
  pids+=($!)
  wait_port "$backend"
fi

# What nginx answers with: the hello world, or the backend's through an upstream keepalive
# cache (the `upstream` block, in MODE=proxy only).
nginx_upstream() {
  [ "$MODE" = proxy ] &&
    echo "upstream app { server 127.0.0.1:$backend; keepalive 64; keepalive_requests 1000000; }"
  true
}
nginx_location() {
  case $MODE in
    proxy) echo "proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";" ;;
    *) echo "return 200 \"hello, world\\n\";" ;;
  esac
}

# The same nginx as bench/http-hello.sh (bench/reverse-proxy.sh with MODE=proxy);
# `master_process off` keeps it to one process, so that the process valgrind starts is the one
# that serves.
nginx_conf() {
  mkdir -p "$work/logs"
  cat > "$work/nginx.conf" <<CONF
worker_processes 1;
master_process off;
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
  $(nginx_upstream)
  server {
    listen 127.0.0.1:$1;
    location / { $(nginx_location) }
  }
}
CONF
}

# Starts SERVER (ours or nginx) on PORT, under the command prefix given after them, and sets
# `pid`. (Not `pid=$(start ...)`: the command substitution would wait for the server, which
# holds its output open.)
start() {
  local server=$1 port=$2
  shift 2
  case $server/$MODE in
    ours/proxy)
      proxy_toml "$port" "$backend" 1 > "$work/proxy.toml"
      "$@" "$proxy_bin" --config "$work/proxy.toml" >>"$work/output" 2>&1 & ;;
    ours/*) "$@" "$bin" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)" \
            --workers 1 --log-level warn >>"$work/output" 2>&1 & ;;
    nginx/*) nginx_conf "$port"; "$@" nginx -p "$work" -c "$work/nginx.conf" >>"$work/output" 2>&1 & ;;
  esac
  pid=$!
  pids+=("$pid")
}

# Requests answered by one wrk run.
load() { wrk -t1 -c"$CONNECTIONS" -d"$1" "http://127.0.0.1:$2/" | awk '/requests in/ {print $1}'; }

syscalls() {
  local server=$1 port pid requests
  port=$(free_port)
  start "$server" "$port" env
  wait_port "$port"
  load 1s "$port" >/dev/null # warm up: connections, buffers, the Date cache
  perf stat -x, -o "$work/perf" -p "$pid" -e 'raw_syscalls:sys_enter' \
    -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait' \
    -e 'syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_setsockopt' &
  local perf_pid=$!
  sleep 0.5
  requests=$(load "$DURATION" "$port")
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$server: syscalls per request over $requests requests"
  awk -F, -v r="$requests" '$1 ~ /^[0-9]+$/ { sub(/.*:sys_enter_?/, "", $3);
    printf "  %-12s %.3f\n", ($3 == "" ? "all" : $3), $1 / r }' "$work/perf"
}

instructions() {
  local server=$1 port pid requests out="$work/callgrind.$1"
  port=$(free_port)
  start "$server" "$port" valgrind -q --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out"
  wait_port "$port"
  load 2s "$port" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  requests=$(load "$DURATION" "$port")
  callgrind_control -d "$pid" >/dev/null 2>&1 # written to $out.1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$server: $((total / requests)) user-space instructions per request over $requests requests"
}

for server in ours nginx; do
  syscalls "$server"
  instructions "$server"
done
