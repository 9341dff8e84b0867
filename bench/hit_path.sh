#!/usr/bin/env bash
# The cache-hit path: requests/s and latency of cache hits through Reprise, per dialect
# (Chat Completions, Responses, Anthropic Messages, Gemini), JSON and SSE, at 1, 16 and
# 256 connections, with the default pipeline settings.
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
start_fake
# The fake speaks every dialect; one upstream of each kind in front of it.
start_reprise reprise "" "
[[upstreams]]
name = \"anthropic\"
kind = \"anthropic\"
base_url = \"http://127.0.0.1:$fake_port/v1\"
api_key_env = \"\"
[[upstreams]]
name = \"gemini\"
kind = \"gemini\"
base_url = \"http://127.0.0.1:$fake_port/v1beta\"
api_key_env = \"\"
[[models]]
match = \"claude*\"
backend = \"anthropic\"
[[models]]
match = \"gemini*\"
backend = \"gemini\"
[[models]]
match = \"*\"
backend = \"fake\""

# Per dialect: the JSON path and body, the streamed path and body (the stream flag is
# not in the key, so both read the same stored sample).
chat_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
responses_body='{"model":"gpt-4o-mini","input":"hello","max_output_tokens":16}'
messages_body='{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}'
gemini_body='{"contents":[{"role":"user","parts":[{"text":"hello"}]}],"generationConfig":{"maxOutputTokens":16}}'
streamed() { sed 's/}$/,"stream":true}/' <<<"$1"; }
declare -A json_path=([chat]=/v1/chat/completions [responses]=/v1/responses [messages]=/v1/messages
                      [gemini]=/v1beta/models/gemini-2.0-flash:generateContent)
declare -A sse_path=([chat]=/v1/chat/completions [responses]=/v1/responses [messages]=/v1/messages
                     [gemini]='/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse')
declare -A json_body=([chat]=$chat_body [responses]=$responses_body [messages]=$messages_body [gemini]=$gemini_body)
declare -A sse_body=([chat]=$(streamed "$chat_body") [responses]=$(streamed "$responses_body")
                     [messages]=$(streamed "$messages_body") [gemini]=$gemini_body)
dialects=(chat responses messages gemini)
# Fill each list (sample 0) once.
for d in "${dialects[@]}"; do
  curl -sf -o /dev/null -H 'Content-Type: application/json' -d "${json_body[$d]}" "http://127.0.0.1:$proxy_port${json_path[$d]}" ||
    { echo "the first $d request failed"; exit 1; }
done

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
  path = args[3]
  counter = 0
end
function request()
  counter = counter + 1
  return wrk.format("POST", prefix .. counter .. path, {["Content-Type"] = "application/json"}, body)
end
LUA

calls_before=$(curl -s "http://127.0.0.1:$fake_port/_fake/stats" | sed -n 's/.*"calls":\([0-9]*\).*/\1/p')

echo "cache hits through Reprise ($(nproc) cores, ${secs}s per run, wrk -t2; each request a fresh namespace)"
printf '| %-18s | %11s | %7s | %9s | %9s | %6s |\n' "dialect mode" connections "req/s" "p50 ms" "p99 ms" errors
printf '|%s|%s|%s|%s|%s|%s|\n' -------------------- ------------- --------- ----------- ----------- --------
run=0
label_width=18
for d in "${dialects[@]}"; do
  for mode in json sse; do
    if [ $mode = json ]; then b=${json_body[$d]}; p=${json_path[$d]}; else b=${sse_body[$d]}; p=${sse_path[$d]}; fi
    for conns in 1 16 256; do
      run=$((run + 1))
      threads=2; [ $conns -eq 1 ] && threads=1
      out=$(wrk -t$threads -c$conns -d${secs}s --latency -s "$work/hits.lua" \
            "http://127.0.0.1:$proxy_port" -- "$run" "$b" "$p")
      wrk_row "$d $mode" "$conns" "$out"
    done
  done
done
calls_after=$(curl -s "http://127.0.0.1:$fake_port/_fake/stats" | sed -n 's/.*"calls":\([0-9]*\).*/\1/p')
echo
echo "upstream calls during the runs: $((calls_after - calls_before)) (0 means every request was a hit)"
