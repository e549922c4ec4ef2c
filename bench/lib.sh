# What the bench scripts share; each sources it from the repository root:
#   . bench/lib.sh

# A TCP port free on 127.0.0.1 at the time of the call.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits up to 10 s for something to listen on 127.0.0.1:PORT; exits the script otherwise.
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 not open" >&2
  exit 1
}

# Makes $work, a scratch directory, and $pids, for the background processes the script
# starts; when the script exits, those are stopped and the directory removed.
scratch() {
  work=$(mktemp -d)
  pids=()
  trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

# Starts bench's `http-hello` from "$target" with one worker on a free port, as the backend
# of the proxy benchmarks: sets $backend (its port) and $backend_pid, and adds it to $pids
# (after `scratch`).
start_hello_backend() {
  backend=$(free_port)
  "$target/http-hello" --listen "127.0.0.1:$backend" --admin-listen "127.0.0.1:$(free_port)" \
    --workers 1 --log-level warn &
  backend_pid=$!
  pids+=("$backend_pid")
  wait_port "$backend"
}

# HAProxy's global and defaults sections for the benchmarks, with WORKERS threads; callers
# append their frontends and backends.
haproxy_globals() {
  cat <<CONF
global
  nbthread $1
  maxconn 4096
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
CONF
}

# reverse-proxy's config for the benchmarks: LISTEN_PORT BACKEND_PORT WORKERS. One cluster,
# "app", routed from every path, with the same idle-connection cache per worker as nginx's
# 'keepalive 64' in the scripts (with fewer idle slots than wrk's connections, the excess
# would be closed and reopened on every request); access log off. Callers may append
# top-level tables ([[tcp]] listeners).
proxy_toml() {
  cat <<CONF
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$(free_port)"
log_level = "warn"
[proxy]
workers = $3
access_log = false
[[routes]]
cluster = "app"
[clusters.app]
endpoints = [{ address = "127.0.0.1:$2" }]
[clusters.app.pool]
max_idle_per_endpoint = 64
CONF
}

# Filters a `proxy_toml` config into the "bare" one: `forwarded_headers` and `request_id` off,
# so that the proxy adds only Via, as nginx and HAProxy add nothing unless told.
bare() {
  sed 's/^access_log = false$/&\nforwarded_headers = false\nrequest_id = false/'
}
