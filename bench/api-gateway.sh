#!/usr/bin/env bash
# Gateway overhead: wrk against one backend (bench's `http-hello`) directly, through the plain
# reverse-proxy, and through api-gateway with a policy chain on every request (an HS256 JWT
# verified, a token-bucket limit keyed by consumer that never trips), in the same run, at
# equal worker counts. Each target is measured ROUNDS times, alternating; medians are printed
# as a Markdown table with the gateway/proxy ratios.
#
#   bash bench/api-gateway.sh                    # workers 1, 3 rounds of 10 s
#   WORKERS="1 2" ROUNDS=5 DURATION=5s bash bench/api-gateway.sh
#   BREAKDOWN=1 bash bench/api-gateway.sh        # also the gateway with routing only, with
#                                                # the JWT only, with the limiter only, and
#                                                # the whole chain verifying the token on
#                                                # every request (no table of verified tokens)
#
# Needs wrk (installed from Debian's packages if missing, as root) and python3 (to mint the
# token). The decision cost of each limiter alone is `cargo bench -p api-gateway --bench limiters`.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-2}
WORKERS=${WORKERS:-1}
BREAKDOWN=${BREAKDOWN:-0}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi


cargo build --release --locked -q -p bench --bin http-hello -p reverse-proxy --bin reverse-proxy \
  -p api-gateway --bin api-gateway
target="${CARGO_TARGET_DIR:-target}/release"
scratch
start_hello_backend

# An HS256 key set and a token valid for a day, minted with the standard library.
token=$(python3 - "$work/jwks.json" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
secret = b"bench secret, thirty-two bytes or more"
json.dump({"keys": [{"kty": "oct", "kid": "bench", "alg": "HS256", "k": b64(secret)}]}, open(sys.argv[1], "w"))
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "bench"}).encode())
now = int(time.time())
claims = b64(json.dumps({"sub": "bench", "iss": "bench", "aud": "bench", "iat": now, "exp": now + 86400}).encode())
sig = b64(hmac.new(secret, f"{head}.{claims}".encode(), hashlib.sha256).digest())
print(f"{head}.{claims}.{sig}")
PY
)

start_servers() {
  local workers=$1
  proxy=$(free_port)
  proxy_toml "$proxy" "$backend" "$workers" > "$work/proxy.toml"
  cat > "$work/api-gateway.toml" <<CONF
[server]
log_level = "warn"
[gateway]
workers = $workers
access_log = false
[auth.jwt]
jwks_file = "$work/jwks.json"
issuers = ["bench"]
audiences = ["bench"]
algorithms = ["HS256"]
[consumers.bench]
[rate_limits.per_consumer]
algorithm = "token_bucket"
limit = 1000000                 # a million a second: never trips
window_ms = 1000
key = "consumer"
[[routes]]
name = "app"
path_prefix = "/"
auth = ["jwt"]
rate_limits = ["per_consumer"]
cluster = "app"
[clusters.app]
endpoints = [{ address = "127.0.0.1:$backend" }]
pool = { max_idle_per_endpoint = 64 }
CONF
  "$target/reverse-proxy" --config "$work/proxy.toml" &
  pids+=($!)
  wait_port "$proxy"
  targets=("direct:$backend" "reverse-proxy:$proxy")
  variants=(api-gateway)
  if [ "$BREAKDOWN" = 1 ]; then
    # The same config with the route's policies cut down: what each phase costs.
    sed -e '/^auth = /d' -e '/^rate_limits = /d' "$work/api-gateway.toml" > "$work/gw-routing-only.toml"
    sed -e '/^rate_limits = /d' "$work/api-gateway.toml" > "$work/gw-jwt-only.toml"
    sed -e '/^auth = /d' "$work/api-gateway.toml" > "$work/gw-limiter-only.toml"
    sed -e 's/^algorithms = \["HS256"\]$/&\nverified_cache_entries = 0/' "$work/api-gateway.toml" \
      > "$work/gw-verify-every-request.toml"
    grep -q '^verified_cache_entries = 0$' "$work/gw-verify-every-request.toml"
    variants+=(gw-routing-only gw-jwt-only gw-limiter-only gw-verify-every-request)
  fi
  for variant in "${variants[@]}"; do
    config="$work/$variant.toml"
    port=$(free_port); admin=$(free_port)
    "$target/api-gateway" --config "$config" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" &
    pids+=($!)
    wait_port "$port"
    # The policy chain must pass: a refused request would measure the refusal.
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/")
    [ "$status" = 200 ] || { echo "$variant answered $status, not 200" >&2; exit 1; }
    targets+=("$variant:$port")
  done
}

stop_servers() {
  local keep=${pids[0]}
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=("$keep")
}

# One wrk run; prints "rps p99_ms".
run_wrk() {
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$1/" |
    awk '/Requests\/sec/ {rps=$2}
         /Non-2xx/ {print "non-2xx responses: " $0 > "/dev/stderr"}
         /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
         END {printf "%s %s\n", rps, p99}'
}
median_col() { awk -v c="$1" '{print $c}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| workers | target | rps (median) | p99 ms (median) |"
echo "|---|---|---|---|"
for workers in $WORKERS; do
  start_servers "$workers"
  mkdir -p "$work/results"
  for t in "${targets[@]}"; do : > "$work/results/${t%%:*}"; done
  for round in $(seq "$ROUNDS"); do
    for t in "${targets[@]}"; do
      run_wrk "${t##*:}" >> "$work/results/${t%%:*}"
      echo "workers $workers round $round ${t%%:*}: $(tail -1 "$work/results/${t%%:*}")" >&2
    done
  done
  for t in "${targets[@]}"; do
    name=${t%%:*}
    echo "| $workers | $name | $(median_col 1 < "$work/results/$name") | $(median_col 2 < "$work/results/$name") |"
  done
  px=$(median_col 1 < "$work/results/reverse-proxy")
  for variant in "${variants[@]}"; do
    gw=$(median_col 1 < "$work/results/$variant")
    echo "| $workers | $variant / reverse-proxy | $(python3 -c "print(round($gw / $px, 2))") | |"
  done
  stop_servers
done
