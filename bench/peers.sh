#!/usr/bin/env bash
# The hot path against peers (issue 5): cache hits through Reprise vs. nginx as a
# caching reverse proxy (proxy_cache keyed on the POST body; bench/peers/nginx.conf.in)
# vs. the Portkey gateway (@portkey-ai/gateway 1.15.2 from npm, bench/peers/package.json;
# its npm build does not cache: the pass-through baseline) vs. the fake upstream called
# directly, at 1, 16 and 256 connections, JSON and SSE; the same Reprise with its energy
# CSV off, to show what that costs; the latency Reprise adds on a miss; Reprise's
# resident memory with 1M samples stored and 10k idle connections
# (bench/peers/idle_conns.mjs). Everything listens on 127.0.0.1 (Portkey, which has no
# host option, on every interface) and is stopped at the end. About 5 minutes.
#
#   bash bench/peers.sh [SECONDS_PER_RUN]   (default 2; BUILD_DIR=build, PEERS_ROUNDS=3)
#
# Every cell (contestant x mode x connections) is measured PEERS_ROUNDS times, in
# rounds that go over all cells in turn, and keeps its best round (the machine may be
# shared: other work only ever slows a run down).
#
# Writes bench/results/peers.md and bench/results/peers.png and prints the tables.
#
# Pinning: the contestant under test (Reprise with [server] threads = 1, nginx with
# worker_processes 1, Portkey's node process) and the fake upstream all run on CPU 0;
# wrk (the load generator, -t1) runs on CPU 1. On hits the fake is idle; for Portkey
# (which calls it on every request) and on the miss path it shares CPU 0 with the
# proxy. Each contestant thus gets one core, and the load generator has its own.
#
# A hit is the same body replayed with "temperature": 0: Reprise reuses sample 0 for
# it (greedy reuse), the closest analogue of nginx returning the same cached bytes for
# the same body. Before measuring, each cache is warmed and checked (Reprise answers
# X-Reprise-Cache: hit, nginx X-Cache-Status: HIT); during each hit run the fake's
# call counter must not move, and Reprise's own hit counter must grow by at least
# wrk's request count.
secs=${1:-2}
rounds=${PEERS_ROUNDS:-3}
"$(dirname "$0")/../scripts/install-deps.sh" bench
source "$(dirname "$0")/lib.sh"     # cd's to the repository root

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 11000 ] ||
  { echo "peers.sh: needs ulimit -n >= 11000 (hard limit $(ulimit -Hn))"; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "peers.sh: needs 2 cores (one for the contestants, one for wrk)"; exit 1; }

if [ ! -f bench/peers/node_modules/@portkey-ai/gateway/build/start-server.js ]; then
  echo "installing the Portkey gateway (npm ci in bench/peers)"
  (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Contestants and wrk at a raised priority when allowed (root), so that other work on a
# shared machine disturbs the measurement less; the same for all of them.
prio=()
[ "$(nice -n -10 nice 2>/dev/null)" = -10 ] && prio=(nice -n -10)
on_proxy_cpu=(${prio[@]+"${prio[@]}"} taskset -c 0)
on_load_cpu=(${prio[@]+"${prio[@]}"} taskset -c 1)
out_md=bench/results/peers.md
out_png=bench/results/peers.png
mkdir -p bench/results

# A port nobody listens on (checked by connecting; the window until the bind is small).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
json_field() {   # json_field URL FIELD: a top-level number from a JSON answer
  curl -sf "$1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]))' "$2"
}
# The same, quicker (between runs): "calls" is the fake's first key, and /admin/stats's
# keys are sorted, so its first "hits" is the top-level one (per model and namespace
# ones come later).
first_number() { curl -sf "$1" | grep -o "\"$2\":[0-9]*" | head -1 | cut -d: -f2; }
fake_calls() { first_number "http://127.0.0.1:$fake_port/_fake/stats" calls; }
reprise_hits() { first_number "http://127.0.0.1:$1/admin/stats" hits; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- the contestants
pin=("${on_proxy_cpu[@]}")
start_fake
# Every answer the same length (16 words; max_tokens 16 below): the contestants'
# answers differ only in their text and headers.
curl -sf -o /dev/null -d '{"min_words":16,"max_words":16}' "http://127.0.0.1:$fake_port/_fake/control"
start_reprise reprise "threads = 1"
reprise_port=$proxy_port reprise_pid=$proxy_pid
declare -A admin=([reprise]=$admin_port)
# The same with the energy CSV off ([energy] csv_path = ""): what one row per response
# costs (its writer thread shares the core).
start_reprise reprise-nocsv "threads = 1" "" ""
nocsv_port=$proxy_port
admin[reprise-nocsv]=$admin_port

nginx_port=$(free_port)
mkdir -p "$work/nginx"
sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@USER@|$(id -un)|" -e "s|@PORT@|$nginx_port|" \
    -e "s|@FAKE_PORT@|$fake_port|" bench/peers/nginx.conf.in > "$work/nginx/nginx.conf"
"${pin[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
nginx_pid=$!
pids+=($nginx_pid)

portkey_port=$(free_port)
(cd bench/peers && NODE_ENV=production exec "${pin[@]}" node \
  node_modules/@portkey-ai/gateway/build/start-server.js --port="$portkey_port" --headless) \
  > "$work/portkey.log" 2>&1 &
portkey_pid=$!
pids+=($portkey_pid)
wait_for "$work/portkey.log" "Ready for connections"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break; sleep 0.05; done

contestants=(fake reprise reprise-nocsv nginx portkey)
declare -A port=([fake]=$fake_port [reprise]=$reprise_port [reprise-nocsv]=$nocsv_port
                 [nginx]=$nginx_port [portkey]=$portkey_port)

prompt='{"role":"user","content":"Write a haiku about caches."}'
json_body='{"model":"gpt-4o-mini","messages":['"$prompt"'],"max_tokens":16,"temperature":0}'
sse_body='{"model":"gpt-4o-mini","messages":['"$prompt"'],"max_tokens":16,"temperature":0,"stream":true}'
# The same headers go to every contestant; the x-portkey-* ones route Portkey to the
# fake (the others ignore them).
headers=(-H 'Content-Type: application/json' -H 'Authorization: Bearer sk-bench'
         -H 'x-portkey-provider: openai' -H "x-portkey-custom-host: http://127.0.0.1:$fake_port/v1")
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.headers["x-portkey-provider"] = "openai"
wrk.headers["x-portkey-custom-host"] = "http://127.0.0.1:$fake_port/v1"
function init(args) wrk.body = args[1] end
LUA

# ---------------------------------------------- warm each cache, check every answer
echo "checking that every contestant answers correctly, and warming the caches"
declare -A resp_bytes
for mode in json sse; do
  b=$json_body; [ $mode = sse ] && b=$sse_body
  for c in "${contestants[@]}"; do
    for try in 1 2; do
      curl -sS -D "$work/h" -o "$work/b" "${headers[@]}" -d "$b" \
           "http://127.0.0.1:${port[$c]}/v1/chat/completions"
    done
    grep -q '^HTTP/1.1 200' "$work/h" || { echo "$c $mode: not a 200"; cat "$work/h" "$work/b"; exit 1; }
    if [ $mode = json ]; then
      node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1]));
               if (!r.choices[0].message.content || !r.choices[0].finish_reason) process.exit(1)' "$work/b" ||
        { echo "$c json: not a chat completion"; cat "$work/b"; exit 1; }
    else
      grep -q '^data: {' "$work/b" && [ "$(grep -v '^$' "$work/b" | tail -1)" = "data: [DONE]" ] ||
        { echo "$c sse: not a complete event stream"; cat "$work/b"; exit 1; }
    fi
    case $c in
      reprise*) grep -qi '^X-Reprise-Cache: hit' "$work/h" || { echo "$c $mode: second request not a hit"; exit 1; } ;;
      nginx) grep -qi '^X-Cache-Status: HIT' "$work/h" || { echo "nginx $mode: second request not a HIT"; exit 1; } ;;
    esac
    resp_bytes[$c.$mode]=$(wc -c < "$work/b")
  done
done

# Every contestant gets the same warm-up before the measurement (Portkey's JIT needs it).
echo "warming up: 2 s at 16 connections per contestant, JSON and SSE"
for mode in json sse; do
  b=$json_body; [ $mode = sse ] && b=$sse_body
  for c in "${contestants[@]}"; do
    "${on_load_cpu[@]}" wrk -t1 -c16 -d2s -s "$work/post.lua" "http://127.0.0.1:${port[$c]}/v1/chat/completions" -- "$b" > /dev/null
  done
done

# -------------------------------------------------------------------- cache hits
declare -A rps p50 p99 errs wrk_cpu runs steal
# /proc/stat's first line: steal ticks and all ticks (both CPUs). On a virtual machine,
# "steal" is the time the host ran something else while this guest wanted the CPU.
ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t}' /proc/stat; }
steal_pct() { awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.0f", (d > b ? 100 * (c - a) / (d - b) : 0) }'; }
# measure KEY CONNS SCRIPT URL ARGS...: one wrk run on the load CPU (-t1, $secs
# seconds); its output in $out. KEY keeps the run with the most requests/s (its p50,
# p99, and the share of its core wrk used: near 100, the load generator was the limit)
# and the sum of the errors of all its runs (non-2xx answers, socket errors).
measure() {
  local key=$1 conns=$2 script=$3 url=$4; shift 4
  local TIMEFORMAT=%P row r st0 t0 st1 t1
  read -r st0 t0 < <(ticks)
  { time "${on_load_cpu[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$script" "$url" -- "$@" \
      > "$work/wrk.out"; } 2> "$work/wrk.cpu"
  read -r st1 t1 < <(ticks)
  out=$(cat "$work/wrk.out")
  row=$(wrk_row x 0 "$out")
  r=$(awk -F'|' '{gsub(/ /,"",$4); print $4}' <<<"$row")
  errs[$key]=$(( ${errs[$key]:-0} + $(awk -F'|' '{gsub(/ /,"",$7); print $7}' <<<"$row") ))
  runs[$key]=$(( ${runs[$key]:-0} + 1 ))
  if [ -z "${rps[$key]:-}" ] || [ "$r" -gt "${rps[$key]}" ]; then
    rps[$key]=$r
    p50[$key]=$(awk -F'|' '{gsub(/ /,"",$5); print $5}' <<<"$row")
    p99[$key]=$(awk -F'|' '{gsub(/ /,"",$6); print $6}' <<<"$row")
    wrk_cpu[$key]=$(awk 'END {printf "%.0f", $1}' "$work/wrk.cpu")
    steal[$key]=$(steal_pct "$st0" "$t0" "$st1" "$t1")
  fi
  printf '  %-22s %7s req/s  p50 %7s ms  p99 %8s ms  steal %3s%%\n' "$key" "$r" \
    "$(awk -F'|' '{gsub(/ /,"",$5); print $5}' <<<"$row")" "$(awk -F'|' '{gsub(/ /,"",$6); print $6}' <<<"$row")" \
    "$(steal_pct "$st0" "$t0" "$st1" "$t1")"
}
requests_of() { awk '/requests in/ {print $1}' <<<"$1"; }
flag() { errs[$1]=$(( ${errs[$1]:-0} + $2 )); echo "  $1: $3"; }

# The rounds go over every cell in turn, so that a burst of other work on the machine
# slows different contestants in different rounds; each cell keeps its best round.
echo "cache hits: $rounds rounds of ${secs}s runs, wrk -t1 on CPU 1, contestants on CPU 0"
read -r hit_st0 hit_t0 < <(ticks)
for round in $(seq "$rounds"); do
  for mode in json sse; do
    b=$json_body; [ $mode = sse ] && b=$sse_body
    for conns in 1 16 256; do
      for c in "${contestants[@]}"; do
        k=$c.$mode.$conns
        calls0=$(fake_calls)
        [[ $c = reprise* ]] && hits0=$(reprise_hits "${admin[$c]}")
        measure "$k" "$conns" "$work/post.lua" "http://127.0.0.1:${port[$c]}/v1/chat/completions" "$b"
        calls1=$(fake_calls)
        if [[ $c = reprise* || $c = nginx ]] && [ "$calls1" -ne "$calls0" ]; then
          flag "$k" $((calls1 - calls0)) "$((calls1 - calls0)) upstream calls during a hit run"
        fi
        if [[ $c = reprise* ]]; then
          hits1=$(reprise_hits "${admin[$c]}")
          [ $((hits1 - hits0)) -ge "$(requests_of "$out")" ] ||
            flag "$k" 1 "$((hits1 - hits0)) hits for $(requests_of "$out") requests"
        fi
      done
    done
  done
done

# ---------------------------------------------------------------------- miss path
# Every request a prompt never seen: a counter in the body (and the run's number, so
# that no two runs share a prompt). Reprise relays it to the fake, streams or returns
# it, and stores the sample; "direct" is the same request sent to the fake.
cat > "$work/miss.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
function init(args) run = args[1]; stream = args[2]; counter = 0 end
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil,
    '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"miss ' .. run .. ' ' .. counter ..
    '"}],"max_tokens":16' .. stream .. '}')
end
LUA
read -r hit_st1 hit_t1 < <(ticks)
echo "miss path: each request a new prompt (Reprise and the fake on CPU 0, wrk on CPU 1)"
read -r miss_st0 miss_t0 < <(ticks)
run=0
for round in $(seq "$rounds"); do
  for mode in json sse; do
    stream=""; [ $mode = sse ] && stream=',"stream":true'
    for conns in 1 16; do
      for target in direct reprise; do
        run=$((run + 1))
        p=$fake_port; [ $target = reprise ] && p=$reprise_port
        k=miss.$target.$mode.$conns
        calls0=$(fake_calls)
        measure "$k" "$conns" "$work/miss.lua" "http://127.0.0.1:$p/v1/chat/completions" "$run" "$stream"
        calls1=$(fake_calls)
        # Every request reached the fake once (the last few may still be in flight).
        [ $((calls1 - calls0)) -ge "$(requests_of "$out")" ] ||
          flag "$k" 1 "$((calls1 - calls0)) upstream calls for $(requests_of "$out") requests"
      done
    done
  done
done

read -r miss_st1 miss_t1 < <(ticks)

# ------------------------------------------------------------------------- memory
# A Reprise of its own (threads = 1, room for 10k connections), on CPU 0: resident
# size when started, after 1M samples (7,813 distinct prompts with n = 128), and with
# 10k idle keep-alive connections that have each had one cache hit.
echo "memory: filling a fresh store with 1M samples, then 10k idle connections"
kill "$portkey_pid" "$nginx_pid" 2>/dev/null || true     # done with them
start_reprise mem "threads = 1
max_connections = 12000"
mem_pid=$proxy_pid mem_port=$proxy_port mem_admin=$admin_port
curl -sf -o /dev/null "${headers[@]}" -d "$json_body" "http://127.0.0.1:$mem_port/v1/chat/completions"
sleep 1
rss_empty=$(rss_kb "$mem_pid")
fill_requests=7813
cat > "$work/fill.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
local counter, answered = 0, 0
function init(args) limit = tonumber(args[1]) end
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil,
    '{"model":"gpt-4o-mini","n":128,"messages":[{"role":"user","content":"fill ' .. counter .. '"}]}')
end
function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then wrk.thread:stop() end
end
LUA
# Four connections, each request a distinct prompt. wrk runs until it is stopped (its
# threads stop sending after the last answer; its clock does not stop with them).
fill_start=$(date +%s.%N)
"${on_load_cpu[@]}" wrk -t1 -c4 -d600s -s "$work/fill.lua" "http://127.0.0.1:$mem_port/v1/chat/completions" \
  -- "$fill_requests" > "$work/fill.out" &
fill_pid=$!
pids+=($fill_pid)
until [ "$(json_field "http://127.0.0.1:$mem_admin/admin/stats" samples_generated)" -ge 1000000 ]; do
  kill -0 "$fill_pid" 2>/dev/null || { echo "fill: wrk ended early"; cat "$work/fill.out"; exit 1; }
  sleep 0.2
done
fill_secs=$(awk -v a="$fill_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
sleep 0.5
kill -INT "$fill_pid"
wait "$fill_pid" || true
fill_out=$(cat "$work/fill.out")
fill_errors=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {n+=1} END {print n+0}' <<<"$fill_out")
samples=$(json_field "http://127.0.0.1:$mem_admin/admin/stats" samples_generated)
sleep 2
rss_full=$(rss_kb "$mem_pid")
store_bytes=$(du -sb "$work/mem/cache" | cut -f1)
bytes_of() { find "$work/mem/cache" -name "$1" -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
sst_bytes=$(bytes_of '*.sst')
wal_bytes=$(bytes_of '*.log')
idle_conns=10000
"${on_load_cpu[@]}" node bench/peers/idle_conns.mjs "$mem_port" "$idle_conns" "$json_body" > "$work/idle.out" &
idle_pid=$!
pids+=($idle_pid)
for _ in $(seq 600); do grep -qs ready "$work/idle.out" && break; sleep 0.1; done
read -r _ idle_ok idle_failed < "$work/idle.out" || { echo "idle connections: no answer"; idle_ok=0 idle_failed=$idle_conns; }
sleep 1
rss_conns=$(rss_kb "$mem_pid")
fds=$(ls "/proc/$mem_pid/fd" | wc -l)
kill "$idle_pid" 2>/dev/null || true

# ------------------------------------------------------------------------ results
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Hot path against peers"
  echo
  cmd="bash bench/peers.sh $secs"
  [ "$rounds" = 3 ] || cmd="PEERS_ROUNDS=$rounds $cmd"
  [ "$BUILD_DIR" = build ] || cmd="BUILD_DIR=$BUILD_DIR $cmd"
  echo "\`$cmd\` on $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores ($cpu_model),"
  echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); $("$BUILD_DIR/reprise" --version 2>&1 | head -1) ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null) build in $BUILD_DIR, commit $(git rev-parse --short HEAD 2>/dev/null)),"
  echo "load average before the run: $load_before (other work on the machine skews the figures);"
  echo "$(nginx -v 2>&1 | sed 's/.*: //'), @portkey-ai/gateway $(node -p 'require("./bench/peers/node_modules/@portkey-ai/gateway/package.json").version') on node $(node --version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo
  sizes=$(for c in "${contestants[@]}"; do printf '%s %s / %s; ' "$c" "${resp_bytes[$c.json]}" "${resp_bytes[$c.sse]}"; done)
  cat <<TEXT
Pinning: every contestant (Reprise with \`[server] threads = 1\`, nginx with
\`worker_processes 1\`, Portkey's node process) and the fake upstream run on CPU 0
(\`taskset -c 0\`); wrk runs on CPU 1 with one thread (\`wrk -t1 -cN -d${secs}s --latency\`).
Each contestant thus has one core, the load generator the other. ${prio[*]:+All of them run under \`${prio[*]}\`, to be less disturbed by other work on the machine.}

Each cell was run $rounds times, in rounds that go over all cells in turn; it shows its best
round (req/s, and that round's p50 and p99) and the errors of all its rounds: non-2xx
answers, socket errors, and for the caches any upstream call made during the run (the
fake's call counter) or a Reprise hit counter that grew less than wrk's request count.
"wrk CPU %" is the load generator's use of its core in that round (near 100: wrk, not the
contestant, was the limit).

A hit is the same body replayed with \`"temperature": 0\` (Reprise reuses sample 0 in every
namespace: greedy reuse), the closest analogue of nginx returning the cached bytes of the
same body; both were warmed and checked (\`X-Reprise-Cache: hit\`, \`X-Cache-Status: HIT\`).
"reprise" is the default configuration with one I/O thread; "reprise-nocsv" the same with
\`[energy] csv_path = ""\` (no energy.csv row per response). Portkey does not cache: it
calls the fake every time (pass-through). "fake" is the fake upstream called directly (fresh
text for each call; SSE one write per event). The fake answers 16 words (\`max_tokens\` 16).
Answer sizes in bytes (JSON / SSE): ${sizes%; }.
TEXT
  echo
  echo "## Cache hits: requests/s, latency (ms)"
  echo
  echo "CPU steal (the host running something else while this machine wanted a CPU) over all"
  echo "the hit runs: $(steal_pct "$hit_st0" "$hit_t0" "$hit_st1" "$hit_t1")%; the column is that of the round shown."
  echo
  echo "| mode | connections | contestant | req/s | p50 | p99 | errors | wrk CPU % | steal % |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
  for mode in json sse; do for conns in 1 16 256; do for c in "${contestants[@]}"; do
    k=$c.$mode.$conns
    echo "| $mode | $conns | $c | ${rps[$k]} | ${p50[$k]} | ${p99[$k]} | ${errs[$k]} | ${wrk_cpu[$k]} | ${steal[$k]} |"
  done; done; done
  echo
  echo "## Ratios (req/s, this run)"
  echo
  echo "| mode | connections | Reprise / Portkey (target >= 20) | Reprise / nginx (target >= 0.5) | Reprise / fake direct | Reprise p99 ms | Reprise, csv off / nginx |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for mode in json sse; do for conns in 1 16 256; do
    r=${rps[reprise.$mode.$conns]}
    echo "| $mode | $conns | $(ratio "$r" "${rps[portkey.$mode.$conns]}") | $(ratio "$r" "${rps[nginx.$mode.$conns]}") | $(ratio "$r" "${rps[fake.$mode.$conns]}") | ${p99[reprise.$mode.$conns]} | $(ratio "${rps[reprise-nocsv.$mode.$conns]}" "${rps[nginx.$mode.$conns]}") |"
  done; done
  echo
  verdict() {   # verdict LABEL VALUE OP TARGET
    awk -v l="$1" -v v="$2" -v op="$3" -v t="$4" 'BEGIN {
      ok = (op == ">=") ? v >= t : v < t
      printf "- %s: %s (target %s %s): %s\n", l, v, op, t, ok ? "met" : sprintf("missed, by a factor of %.1f", op == ">=" ? t / v : v / t) }'
  }
  for mode in json sse; do for conns in 1 16 256; do
    at="$mode at $conns connection$([ "$conns" = 1 ] || echo s)"
    verdict "$at, Reprise / Portkey req/s" "$(ratio "${rps[reprise.$mode.$conns]}" "${rps[portkey.$mode.$conns]}")" ">=" 20
    verdict "$at, Reprise / nginx req/s" "$(ratio "${rps[reprise.$mode.$conns]}" "${rps[nginx.$mode.$conns]}")" ">=" 0.5
  done; done
  verdict "json at 16 connections, Reprise p99 ms" "${p99[reprise.json.16]}" "<" 2
  verdict "sse at 16 connections, Reprise p99 ms" "${p99[reprise.sse.16]}" "<" 2
  echo
  echo "## Miss path: what Reprise adds over calling the fake directly"
  echo
  echo "Each request a new prompt (a counter in the body), \`max_tokens\` 16, the fake with no"
  echo "latency; Reprise relays it, answers, and stores the sample. Reprise and the fake share CPU 0."
  echo "CPU steal over the miss runs: $(steal_pct "$miss_st0" "$miss_t0" "$miss_st1" "$miss_t1")%."
  echo
  echo "| mode | connections | direct req/s | Reprise req/s | direct p50 | Reprise p50 | added p50 | direct p99 | Reprise p99 | added p99 | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for mode in json sse; do for conns in 1 16; do
    d=miss.direct.$mode.$conns r=miss.reprise.$mode.$conns
    echo "| $mode | $conns | ${rps[$d]} | ${rps[$r]} | ${p50[$d]} | ${p50[$r]} | $(awk -v a="${p50[$r]}" -v b="${p50[$d]}" 'BEGIN {printf "%.3f", a - b}') | ${p99[$d]} | ${p99[$r]} | $(awk -v a="${p99[$r]}" -v b="${p99[$d]}" 'BEGIN {printf "%.3f", a - b}') | $((errs[$d] + errs[$r])) |"
  done; done
  echo
  echo "## Memory (Reprise, threads = 1, default hot_samples_mb = 64)"
  echo
  echo "| state | VmRSS MiB |"
  echo "|---|---:|"
  echo "| started, one entry stored | $(mb "$rss_empty") |"
  echo "| $samples samples stored ($fill_requests prompts x n = 128, ${fill_secs} s, $fill_errors errors) | $(mb "$rss_full") |"
  echo "| and $idle_ok idle keep-alive connections ($idle_failed failed; $fds fds open) | $(mb "$rss_conns") |"
  echo
  mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
  echo "Store on disk with $samples samples: $(mib "$store_bytes") (the RocksDB directory, \`du -sb\`): $(mib "$sst_bytes")"
  echo "in table files (*.sst), $(mib "$wal_bytes") in write-ahead logs (*.log) not yet deleted."
  echo "Per idle connection: $(awk -v a="$rss_conns" -v b="$rss_full" -v n="$idle_ok" 'BEGIN { if (n > 0) printf "%.1f KiB", (a - b) / n; else print "-" }')."
} > "$out_md"

# The chart: req/s per contestant at 1 / 16 / 256 connections, JSON and SSE.
for mode in json sse; do
  for conns in 1 16 256; do
    echo "$conns ${rps[fake.$mode.$conns]} ${rps[reprise.$mode.$conns]} ${rps[reprise-nocsv.$mode.$conns]} ${rps[nginx.$mode.$conns]} ${rps[portkey.$mode.$conns]}"
  done > "$work/chart.$mode.dat"
done
gnuplot <<GP
set terminal pngcairo size 1200,480 font ",10" noenhanced
set output "$out_png"
set multiplot layout 1,2 title "Cache hits, requests/s ($(nproc) cores: contestant on CPU 0, wrk -t1 on CPU 1)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [10:300000]
set grid ytics
set key top left horizontal maxcols 3
set xlabel "connections"
set ylabel "requests/s (log scale)"
set title "JSON"
plot "$work/chart.json.dat" using 2:xtic(1) title "fake direct" lc rgb "#999999", "" using 3 title "Reprise" lc rgb "#1b9e77", "" using 4 title "Reprise, energy.csv off" lc rgb "#66c2a5", "" using 5 title "nginx proxy_cache" lc rgb "#377eb8", "" using 6 title "Portkey (pass-through)" lc rgb "#e6ab02"
set title "SSE (stream: true)"
plot "$work/chart.sse.dat" using 2:xtic(1) title "fake direct" lc rgb "#999999", "" using 3 title "Reprise" lc rgb "#1b9e77", "" using 4 title "Reprise, energy.csv off" lc rgb "#66c2a5", "" using 5 title "nginx proxy_cache" lc rgb "#377eb8", "" using 6 title "Portkey (pass-through)" lc rgb "#e6ab02"
unset multiplot
GP
echo
cat "$out_md"
echo
echo "wrote $out_md and $out_png"
