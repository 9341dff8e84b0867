#!/usr/bin/env bash
# Pass-through overhead: requests/s and latency of small chat completions sent
# straight to the fake upstream vs. relayed by Reprise with X-Reprise-Cache: bypass
# (no cache), at several connection counts. bench/hit_path.sh measures cache hits. Everything runs on 127.0.0.1 and is stopped at the end.
#
#   bench/passthrough.sh [SECONDS_PER_RUN]      (after make test / make build)
#
# Note: wrk, the fake and the proxy share this machine's cores, so the figures are a
# floor for what the proxy does on its own.
secs=${1:-5}
source "$(dirname "$0")/lib.sh"
start_stack

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
    wrk_row "$target" "$conns" "$out"
  done
done
