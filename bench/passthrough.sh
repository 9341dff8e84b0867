#!/usr/bin/env bash
# Pass-through overhead: requests/s and latency of small chat completions sent
# straight to the fake upstream vs. relayed by Reprise with X-Reprise-Cache: bypass
# (no cache), at several connection counts. bench/hit_path.sh measures cache hits. Everything runs on 127.0.0.1 and is stopped at the end.
#
#   bench/passthrough.sh [SECONDS_PER_RUN]      (after make test / make build)
#
# Note: wrk, the fake and the proxy share this machine's cores, so the figures are a
# floor for what the proxy does on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
[ -x build/reprise ] && [ -x build/fake_openai ] || { echo "build first: make build (or make test)"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

build/fake_openai --listen 127.0.0.1:0 > "$work/fake.out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/fake.out" 2>/dev/null && break; sleep 0.05; done
fake_port=$(sed -n 's/listening 127.0.0.1://p' "$work/fake.out")

cat > "$work/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[cache]
path = "$work/cache"
[log]
access_log = false
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:$fake_port/v1"
api_key_env = ""
TOML
build/reprise --config "$work/proxy.toml" 2> "$work/proxy.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "proxy listening" "$work/proxy.log" 2>/dev/null && break; sleep 0.05; done
proxy_port=$(sed -n 's/.*proxy listening on 127.0.0.1://p' "$work/proxy.log")

cat > "$work/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Reprise-Cache"] = "bypass"
LUA

echo "pass-through of small chat completions, $(nproc) cores, ${secs}s per run"
printf '| %-12s | %11s | %7s | %9s | %9s | %6s |\n' target connections "req/s" "p50 ms" "p99 ms" errors
printf '|%s|%s|%s|%s|%s|%s|\n' -------------- ------------- --------- ----------- ----------- --------
for conns in 1 16 256; do
  for target in fake reprise; do
    port=$fake_port; [ $target = reprise ] && port=$proxy_port
    out=$(wrk -t1 -c$conns -d${secs}s --latency -s "$work/chat.lua" "http://127.0.0.1:$port/v1/chat/completions")
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", v*1000 }'; }
    p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    errors=$(awk '/Non-2xx|Socket errors/ {n++} END {print n+0}' <<<"$out")
    printf '| %-12s | %11s | %7s | %9s | %9s | %6s |\n' $target $conns "$rps" "$p50" "$p99" "$errors"
  done
done
