#!/usr/bin/env bash
# The cache-hit path: requests/s and latency of cache hits through Reprise, JSON and
# SSE, at 1, 16 and 256 connections, with the default pipeline settings.
#
#   bench/hit_path.sh [SECONDS_PER_RUN]      (after make test / make build)
#
# Every request is a real replay hit, the path a re-run experiment takes: it goes to a
# namespace of its own (/ns/<unique>/v1/...), so it reads sample 0 of a stored list
# and persists its namespace's cursor (one RocksDB read and one write per request).
# No request carries X-Reprise-Request-Id, so none waits for the batch window
# (DESIGN.md section 2). The upstream is called once, to fill the list, before the
# runs. wrk and the proxy share this machine's cores.
secs=${1:-5}
source "$(dirname "$0")/lib.sh"
start_stack

body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
stream_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":true}'
# Fill the list (sample 0) once; a streamed request shares the key (stream is not in it).
curl -sf -o /dev/null -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$proxy_port/v1/chat/completions"

# Each request in a namespace never used before: b<run>-<thread>-<counter>.
cat > "$work/hits.lua" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = "/ns/b" .. args[1] .. "-" .. tid .. "-"
  body = args[2]
  counter = 0
end
function request()
  counter = counter + 1
  return wrk.format("POST", prefix .. counter .. "/v1/chat/completions",
                    {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if status ~= 200 or headers["X-Reprise-Cache"] ~= "hit" then misses = (misses or 0) + 1 end
end
function done(summary, latency, requests)
  -- wrk runs response() in each thread's own Lua state; a non-hit there also shows as
  -- a non-2xx or a growing upstream call count (checked below).
end
LUA

calls_before=$(curl -s "http://127.0.0.1:$fake_port/_fake/stats" | sed -n 's/.*"calls":\([0-9]*\).*/\1/p')

echo "cache hits through Reprise ($(nproc) cores, ${secs}s per run, wrk -t2; each request a fresh namespace)"
printf '| %-12s | %11s | %7s | %9s | %9s | %6s |\n' mode connections "req/s" "p50 ms" "p99 ms" errors
printf '|%s|%s|%s|%s|%s|%s|\n' -------------- ------------- --------- ----------- ----------- --------
run=0
for mode in json sse; do
  b=$body; [ $mode = sse ] && b=$stream_body
  for conns in 1 16 256; do
    run=$((run + 1))
    threads=2; [ $conns -eq 1 ] && threads=1
    out=$(wrk -t$threads -c$conns -d${secs}s --latency -s "$work/hits.lua" \
          "http://127.0.0.1:$proxy_port" -- "$run" "$b")
    wrk_row "$mode" "$conns" "$out"
  done
done
calls_after=$(curl -s "http://127.0.0.1:$fake_port/_fake/stats" | sed -n 's/.*"calls":\([0-9]*\).*/\1/p')
echo
echo "upstream calls during the runs: $((calls_after - calls_before)) (0 means every request was a hit)"
