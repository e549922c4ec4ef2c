#!/usr/bin/env bash
# Proxy throughput and tail latency: wrk against one backend (bench's `http-hello`) directly,
# through reverse-proxy, through nginx (proxy_pass with upstream keepalive) and through
# HAProxy (mode http, http-reuse always), in the same run, at equal worker counts; then L4:
# reverse-proxy's [[tcp]] listener against HAProxy's mode tcp.
#
# Same work per request in each comparison: reverse-proxy with `forwarded_headers` and
# `request_id` off ("bare": it still adds Via) against the peers as plainly configured, and
# reverse-proxy with its defaults against the peers told to add the same fields (Via,
# X-Forwarded-For, -Proto, -Host, Forwarded, X-Request-Id both ways).
#
# Each target is measured ROUNDS times, alternating, each of ours next to its peers; within
# each group the order turns by one every round, and each round starts with an unrecorded
# warm-up run (the run after one against the backend alone was seen to lose a tenth). The
# table gives medians, and for each peer the medians over rounds of ours/peer in that round,
# of rps and of p99: on a shared machine, figures drift between rounds more than between
# neighbours.
#
#   bash bench/reverse-proxy.sh                      # workers 1 and 2, 3 rounds of 10 s
#   WORKERS="1" ROUNDS=1 DURATION=5s bash bench/reverse-proxy.sh
#   PIN=1 WORKERS=1 bash bench/reverse-proxy.sh      # the proxies alone on the last core
#
# PIN=1 (one worker only) gives every proxy the machine's last core to itself and the other
# cores to wrk and the backend (taskset), as a load test on separate machines would: the
# proxy is then never preempted by the load it serves, and its tail is its own.
#
# Needs wrk, nginx and haproxy (installed from Debian's packages if missing, as root).
# The backend always runs one worker; wrk runs WRK_THREADS threads and CONNECTIONS
# connections. On a small machine everything shares the same cores: compare ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-2}
WORKERS=${WORKERS:-"1 2"}
PIN=${PIN:-}

# With PIN, the command prefixes that place a process on the proxy's core or on the others.
proxy_core=()
load_cores=()
if [ -n "$PIN" ]; then
  cpus=$(nproc)
  if [ "$WORKERS" != 1 ] || ((cpus < 2)); then
    echo "PIN=1 needs WORKERS=1 and at least two cores" >&2
    exit 2
  fi
  load_list="0-$((cpus - 2))"
  proxy_core=(taskset -c "$((cpus - 1))")
  load_cores=(taskset -c "$load_list")
fi

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx-light haproxy >/dev/null
fi


cargo build --release --locked -q -p bench --bin http-hello -p reverse-proxy --bin reverse-proxy
target="${CARGO_TARGET_DIR:-target}/release"
scratch
start_hello_backend
if [ -n "$PIN" ]; then taskset -a -p -c "$load_list" "$backend_pid" >/dev/null; fi

# Starts every proxy with `workers` workers; sets the *_port variables.
start_proxies() {
  local workers=$1
  ours=$(free_port); ours_bare=$(free_port); ours_l4=$(free_port)
  nginx_port=$(free_port); nginx_fields=$(free_port)
  haproxy_port=$(free_port); haproxy_fields=$(free_port); haproxy_l4=$(free_port)
  {
    proxy_toml "$ours" "$backend" "$workers"
    printf '[[tcp]]\nlisten = "127.0.0.1:%s"\ncluster = "app"\n' "$ours_l4"
  } > "$work/ours.toml"
  "${proxy_core[@]}" "$target/reverse-proxy" --config "$work/ours.toml" &
  pids+=($!)
  proxy_toml "$ours_bare" "$backend" "$workers" | bare > "$work/ours-bare.toml"
  "${proxy_core[@]}" "$target/reverse-proxy" --config "$work/ours-bare.toml" &
  pids+=($!)

  mkdir -p "$work/nginx/logs"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
error_log $work/nginx/logs/error.log crit;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream app { server 127.0.0.1:$backend; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  # The fields reverse-proxy adds by default, added here too: the same work per request.
  server {
    listen 127.0.0.1:$nginx_fields;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\$host";
      proxy_set_header Via "1.1 nginx";
      proxy_set_header X-Request-Id \$request_id;
      add_header Via "1.1 nginx";
      add_header X-Request-Id \$request_id;
    }
  }
}
CONF
  "${proxy_core[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
  pids+=($!)

  haproxy_globals "$workers" > "$work/haproxy.cfg"
  cat >> "$work/haproxy.cfg" <<CONF
frontend http_in
  mode http
  bind 127.0.0.1:$haproxy_port
  default_backend app
frontend http_fields
  mode http
  bind 127.0.0.1:$haproxy_fields
  option forwardfor
  unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
  http-request set-header X-Request-Id %[unique-id]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded for=%[src];proto=http;host=%[req.hdr(host)]
  http-request add-header Via "1.1 haproxy"
  http-response add-header Via "1.1 haproxy"
  http-response set-header X-Request-Id %[unique-id]
  default_backend app
backend app
  mode http
  http-reuse always
  server s1 127.0.0.1:$backend
frontend tcp_in
  mode tcp
  bind 127.0.0.1:$haproxy_l4
  default_backend app_tcp
backend app_tcp
  mode tcp
  server s1 127.0.0.1:$backend
CONF
  "${proxy_core[@]}" haproxy -f "$work/haproxy.cfg" -db &
  pids+=($!)
  for port in "$ours" "$ours_bare" "$ours_l4" "$nginx_port" "$nginx_fields" "$haproxy_port" \
    "$haproxy_fields" "$haproxy_l4"; do wait_port "$port"; done
}

stop_proxies() {
  local keep=${pids[0]}
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=("$keep")
}

# One wrk run; prints "rps p99_ms".
run_wrk() {
  "${load_cores[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$1/" |
    awk '/Requests\/sec/ {rps=$2}
         /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
         END {printf "%s %s\n", rps, p99}'
}
median_col() { awk -v c="$1" '{print $c}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The median over rounds of OURS's / PEER's figure in column COLUMN (1 rps, 2 p99) of the
# same round (result files by name).
median_ratio() {
  paste "$work/results/$1" "$work/results/$2" |
    awk -v c="$3" '{printf "%.2f\n", $c / $(c + 2)}' | median_col 1
}
# Which of our targets each peer is compared with.
ours_for() {
  case $1 in
    nginx | haproxy) echo reverse-proxy-bare ;;
    nginx-same-fields | haproxy-same-fields) echo reverse-proxy ;;
    haproxy-tcp) echo reverse-proxy-l4 ;;
  esac
}

echo "| workers | target | rps (median) | p99 ms (median) | rps ours / this | p99 ours / this |"
echo "|---|---|---|---|---|---|"
for workers in $WORKERS; do
  start_proxies "$workers"
  # Groups measured together: ours and the peers doing the same work.
  groups=("reverse-proxy-bare:$ours_bare nginx:$nginx_port haproxy:$haproxy_port"
          "reverse-proxy:$ours nginx-same-fields:$nginx_fields haproxy-same-fields:$haproxy_fields"
          "reverse-proxy-l4:$ours_l4 haproxy-tcp:$haproxy_l4"
          "direct:$backend")
  targets=()
  for group in "${groups[@]}"; do for t in $group; do targets+=("$t"); done; done
  mkdir -p "$work/results"
  for t in "${targets[@]}"; do : > "$work/results/${t%%:*}"; done
  for round in $(seq "$ROUNDS"); do
    "${load_cores[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$ours_bare/" >/dev/null
    for group in "${groups[@]}"; do
      read -ra members <<< "$group"
      n=${#members[@]}
      for i in $(seq 0 $((n - 1))); do
        t=${members[$(((i + round) % n))]}
        run_wrk "${t##*:}" >> "$work/results/${t%%:*}"
        echo "workers $workers round $round ${t%%:*}: $(tail -1 "$work/results/${t%%:*}")" >&2
      done
    done
  done
  for t in "${targets[@]}"; do
    name=${t%%:*}
    result="$work/results/$name"
    ours_name=$(ours_for "$name")
    rps_ratio=${ours_name:+$(median_ratio "$ours_name" "$name" 1)}
    p99_ratio=${ours_name:+$(median_ratio "$ours_name" "$name" 2)}
    echo "| $workers | $name | $(median_col 1 < "$result") | $(median_col 2 < "$result") |" \
      "$rps_ratio | $p99_ratio |"
  done
  stop_proxies
done
