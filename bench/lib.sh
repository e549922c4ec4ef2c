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
