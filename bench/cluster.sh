#!/usr/bin/env bash
# Many machines (issue 19): cache hits through one Reprise replica whose store is a
# Redis Cluster (3 primaries + 3 replicas on loopback) against the same replica with its
# local RocksDB store, at 1, 16 and 64 connections; the same cluster with
# wait_replicas = 0 (what the WAIT costs); greedy (temperature 0) hits as in
# bench/peers.sh; hits and misses per second with 1, 2 and 3 replicas sharing the
# cluster; and what one shard costs per take (Redis CPU and INFO commandstats), from
# which cluster.md works out the shards N replicas need. Everything listens on
# 127.0.0.1 and is stopped at the end (also on Ctrl-C or an error). About 4 minutes.
#
#   bash bench/cluster.sh [SECONDS_PER_RUN]   (default 2; BUILD_DIR=build, CLUSTER_ROUNDS=3)
#
# Writes bench/results/cluster.md and bench/results/cluster.png and prints the tables.
#
# Pinning (2 cores): every Reprise replica ([server] threads = 1) and the fake upstream
# on CPU 0, as in peers.sh, so that one replica has the same one core in local and in
# cluster mode. The six redis-server processes and wrk (-t1) on CPU 1: the cluster is,
# in production, other machines; here it competes with the load generator, so the
# cluster rows are a lower bound. One extra row set moves the redis-servers to CPU 0
# (taskset -a -p), sharing the replica's core instead: everything of one replica and
# its cluster on one core, the other extreme. On hits the fake is idle.
#
# A cursor hit: the key's list is filled first with $samples samples (requests with
# "n": 128 in a namespace of their own); each measured request then reads the next
# sample of one of $spaces namespaces, round robin (X-Reprise-Namespace, new names for
# every run), so every request moves a cursor in the cluster (one FCALL reprise_take and
# its WAIT) and reads a sample this replica already holds in memory. Each run's
# requests must stay under spaces x samples: past it a namespace's cursor would leave
# the list and the request would be a miss, which the checks below catch. No request
# carries X-Reprise-Request-Id (none waits for the batch window).
#
# Checks, per run: the fake's call counter must not move during a hit run, and the
# replicas' hit counters must grow by at least wrk's request count; on a miss run the
# fake must have been called once per request. Any failure is counted in the table's
# "errors" column, as are non-2xx answers and socket errors.
secs=${1:-2}
rounds=${CLUSTER_ROUNDS:-3}
source "$(dirname "$0")/lib.sh"     # cd's to the repository root; stops everything on exit
trap 'exit 130' INT TERM            # so that the EXIT trap (lib.sh's cleanup) runs
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "cluster.sh: needs redis-server and redis-cli (make deps)"; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "cluster.sh: needs 2 cores"; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
prio=()
[ "$(nice -n -10 nice 2>/dev/null)" = -10 ] && prio=(nice -n -10)
on_proxy_cpu=(${prio[@]+"${prio[@]}"} taskset -c 0)
on_load_cpu=(${prio[@]+"${prio[@]}"} taskset -c 1)
out_md=bench/results/cluster.md
out_png=bench/results/cluster.png
mkdir -p bench/results
spaces=64        # namespaces per run
samples=4096     # samples in the hit key's list (32 requests of n = 128)
scale_conns=48   # connections spread over the replicas in the scaling runs

# A port nobody listens on, nor on port + 10000 (a cluster node's bus port).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null && continue
    [[ " ${redis_ports[*]:-} " = *" $p "* ]] && continue
    echo "$p"; return
  done
}
# bounded_until SECONDS WHAT CMD...: CMD until it succeeds, for at most SECONDS.
bounded_until() {
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 10))); do "$@" && return 0; sleep 0.1; done
  echo "timed out after ${limit}s waiting for $what" >&2; return 1
}

# ------------------------------------------------------------------ the cluster
# Three primaries and three replicas, the flags of design/distributed.md section 7
# (AOF with appendfsync always; a primary refuses writes without a replica). Not
# daemonized: each is a child of this script, stopped by lib.sh's cleanup.
redis_ports=() redis_pids=()
echo "starting a Redis Cluster of 6 nodes (3 primaries, 3 replicas) on CPU 1"
for i in 0 1 2 3 4 5; do
  p=$(free_port)
  redis_ports+=("$p")
  mkdir -p "$work/redis/$p"
  "${on_load_cpu[@]}" redis-server --port "$p" --bind 127.0.0.1 --dir "$work/redis/$p" \
    --logfile "$work/redis/$p/log" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000 --appendonly yes --appendfsync always --save '' \
    --maxmemory-policy noeviction --min-replicas-to-write 1 --min-replicas-max-lag 2 \
    --cluster-allow-replica-migration no --cluster-require-full-coverage no &
  redis_pids+=($!)
  pids+=($!)
done
rcli() { local p=$1; shift; redis-cli -h 127.0.0.1 -p "$p" "$@"; }
for p in "${redis_ports[@]}"; do bounded_until 10 "redis on $p" rcli "$p" ping >/dev/null 2>&1; done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${redis_ports[@]}") --cluster-replicas 1 --cluster-yes \
  > "$work/cluster-create.log" 2>&1 || { cat "$work/cluster-create.log"; exit 1; }
cluster_ok() { for p in "${redis_ports[@]}"; do rcli "$p" cluster info | grep -q '^cluster_state:ok' || return 1; done; }
replicas_up() {
  for p in "${redis_ports[@]}"; do
    local info; info=$(rcli "$p" info replication)
    grep -q '^role:slave' <<<"$info" && ! grep -q '^master_link_status:up' <<<"$info" && return 1
    # and the primary's side: its replica online (what WAIT and min-replicas count)
    grep -q '^role:master' <<<"$info" && ! grep -q '^slave0:.*state=online' <<<"$info" && return 1
    # and the map the replicas read (CLUSTER SHARDS): all six nodes "online" (the client
    # refuses durable writes to a shard whose replica it does not see online)
    [ "$(rcli "$p" cluster shards | grep -cx online)" -eq 6 ] || return 1
  done
  return 0
}
bounded_until 30 "cluster_state:ok on every node" cluster_ok
bounded_until 30 "every replica online, seen from both ends" replicas_up
declare -A role_of primary_of
for i in "${!redis_ports[@]}"; do
  p=${redis_ports[$i]}
  info=$(rcli "$p" info replication | tr -d '\r')
  role_of[$p]=$(sed -n 's/^role://p' <<<"$info")
  [ "${role_of[$p]}" = slave ] && primary_of[$p]=$(sed -n 's/^master_port://p' <<<"$info")
done
redis_pid_of() { local i; for i in "${!redis_ports[@]}"; do [ "${redis_ports[$i]}" = "$1" ] && echo "${redis_pids[$i]}"; done; }
# Moves every redis-server (all its threads) to CPU $1.
redis_to_cpu() { local pid; for pid in "${redis_pids[@]}"; do taskset -a -p -c "$1" "$pid" >/dev/null; done; }
nodes_toml=$(printf '"127.0.0.1:%s", ' "${redis_ports[@]}")
nodes_toml="[${nodes_toml%, }]"

# ------------------------------------------------------------- the fake and Reprise
pin=("${on_proxy_cpu[@]}")
start_fake --latency-ms 0
# Every answer the same length (16 words).
curl -sf -o /dev/null -d '{"min_words":16,"max_words":16}' "http://127.0.0.1:$fake_port/_fake/control"

# start_replica NAME CACHE_KEYS [OTHER_TOML]: a Reprise replica (one I/O thread) in
# front of the fake on CPU 0, its files under $work/NAME; CACHE_KEYS are more lines of
# its [cache] table. Sets port[NAME], admin[NAME], proxy_pid_of[NAME].
declare -A port admin proxy_pid_of
start_replica() {
  local name=$1 cache_keys=$2 other=${3:-}
  mkdir -p "$work/$name"
  cat > "$work/$name/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:0"
threads = 1
[admin]
listen = "127.0.0.1:0"
[cache]
path = "$work/$name/cache"
$cache_keys
[energy]
csv_path = "$work/$name/energy.csv"
[log]
access_log = false
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:$fake_port/v1"
api_key_env = ""
$other
TOML
  "${on_proxy_cpu[@]}" "$BUILD_DIR/reprise" --config "$work/$name/proxy.toml" 2> "$work/$name/proxy.log" &
  proxy_pid_of[$name]=$!
  pids+=($!)
  wait_for "$work/$name/proxy.log" "admin listening"
  port[$name]=$(sed -n 's/.*proxy listening on 127.0.0.1://p' "$work/$name/proxy.log")
  admin[$name]=$(sed -n 's/.*admin listening on 127.0.0.1://p' "$work/$name/proxy.log")
}
cluster_replica() {   # cluster_replica NAME WAIT_REPLICAS
  start_replica "$1" 'store = "redis-cluster"' "
[cache.redis]
nodes = $nodes_toml
timeout_ms = 2000
wait_replicas = $2"
}
echo "starting the replicas: local (RocksDB), cluster (wait_replicas = \"all\") x 3, cluster (wait_replicas = 0)"
start_replica local ""
cluster_replica cluster '"all"'
cluster_replica cluster-w0 0
cluster_replica cluster2 '"all"'
cluster_replica cluster3 '"all"'

url() { echo "http://127.0.0.1:${port[$1]}/v1/chat/completions"; }
# first_number JSON FIELD: the first "FIELD": <number> in JSON. "calls" is the fake's
# first key; /admin/stats's keys are sorted, so its first "hits" is the top-level one
# (per model and namespace ones come later), and round_trips, commands are the store's.
first_number() { [[ $1 =~ \"$2\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}"; }
fake_calls() { first_number "$(curl -sf "http://127.0.0.1:$fake_port/_fake/stats")" calls; }
replica_stats() { curl -sf "http://127.0.0.1:${admin[$1]}/admin/stats"; }
replica_hits() { first_number "$(replica_stats "$1")" hits; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks

hit_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write a haiku about caches."}],"max_tokens":16}'
fill_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write a haiku about caches."}],"max_tokens":16,"n":128}'
greedy_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write a haiku about caches."}],"max_tokens":16,"temperature":0}'

# ------------------------------------------------- fill the hit key, check a hit
# The cluster replicas share one list: filled once through "cluster"; the local replica
# fills its own. Then each replica reads every sample once (in a namespace of its own),
# so that all of them are in its memory before the measurement, and answers a hit.
echo "filling the hit key with $samples samples (local store and cluster), warming each replica"
for r in local cluster; do
  for _ in $(seq $((samples / 128))); do
    curl -sf -o /dev/null -H 'Content-Type: application/json' -H 'X-Reprise-Namespace: fill' -d "$fill_body" "$(url $r)" ||
      { echo "$r: a fill request failed"; cat "$work/$r/proxy.log"; exit 1; }
  done
  curl -sf -o /dev/null -H 'Content-Type: application/json' -d "$greedy_body" "$(url $r)"
done
# Explicit-index reads (X-Reprise-Sample: i, which moves no cursor) of samples 0 to
# LIMIT - 1, round robin, until LIMIT answers have come back.
cat > "$work/warm.lua" <<'LUA'
wrk.method = "POST"
local headers = {["Content-Type"] = "application/json"}
local sent, answered = 0, 0
function init(args)
  limit = tonumber(args[1])
  wrk.body = args[2]
end
function request()
  headers["X-Reprise-Sample"] = tostring(sent % limit)
  sent = sent + 1
  return wrk.format(nil, nil, headers)
end
function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then wrk.thread:stop() end
end
LUA
cat > "$work/hits.lua" <<'LUA'
-- Request i reads the next sample of namespace <prefix>-(i mod spaces).
wrk.method = "POST"
local headers = {["Content-Type"] = "application/json"}
function init(args)
  prefix = args[1] .. "-"
  spaces = tonumber(args[2])
  wrk.body = args[3]
  counter = 0
end
function request()
  counter = counter + 1
  headers["X-Reprise-Namespace"] = prefix .. (counter % spaces)
  return wrk.format(nil, nil, headers)
end
LUA
cat > "$work/greedy.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function init(args) wrk.body = args[1] end
LUA
# Each request a key never seen: a counter and the run's number in the prompt.
cat > "$work/miss.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function init(args) run = args[1]; counter = 0 end
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil,
    '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"miss ' .. run .. ' ' .. counter .. '"}],"max_tokens":16}')
end
LUA
calls_filled=$(fake_calls)
read_all() { [ "$(replica_hits "$1")" -ge "$samples" ]; }
for r in local cluster cluster-w0 cluster2 cluster3; do
  # Every sample read once by this replica. wrk's clock runs on after it stopped.
  "${on_load_cpu[@]}" wrk -t1 -c16 -d120s -s "$work/warm.lua" "$(url $r)" -- "$samples" "$hit_body" > /dev/null &
  warm_pid=$!
  bounded_until 120 "$r reading the list once" read_all "$r"
  kill -INT "$warm_pid"; wait "$warm_pid" || true
  curl -sS -D "$work/h" -o "$work/b" -H 'Content-Type: application/json' -H "X-Reprise-Namespace: check-$r" \
    -d "$hit_body" "$(url $r)"
  grep -q '^HTTP/1.1 200' "$work/h" && grep -qi '^X-Reprise-Cache: hit' "$work/h" ||
    { echo "$r: a cursor read of a filled key is not a hit"; cat "$work/h" "$work/b"; exit 1; }
  grep -q '"content":"[^"]' "$work/b" ||
    { echo "$r: not a chat completion"; cat "$work/b"; exit 1; }
  echo "  $r: warm ($(date -u +%T))"
done
[ "$(fake_calls)" -eq "$calls_filled" ] || { echo "the warm-up called the upstream: not all hits"; exit 1; }

# ----------------------------------------------------------------- measurements
declare -A rps p50 p99 errs runs
ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t}' /proc/stat; }
field() { awk -F'|' -v f="$2" '{gsub(/ /, "", $f); print $f}' <<<"$1"; }
requests_of() { awk '/requests in/ {print $1}' <<<"$1"; }
flag() { errs[$1]=$(( ${errs[$1]:-0} + $2 )); echo "  $1: $3"; }
# keep KEY OUT: records a wrk run's req/s, p50, p99 and errors under KEY (best round).
keep() {
  local key=$1 out=$2 row r
  row=$(wrk_row x 0 "$out")
  r=$(field "$row" 4)
  errs[$key]=$(( ${errs[$key]:-0} + $(field "$row" 7) ))
  runs[$key]=$(( ${runs[$key]:-0} + 1 ))
  if [ -z "${rps[$key]:-}" ] || [ "$r" -gt "${rps[$key]}" ]; then
    rps[$key]=$r p50[$key]=$(field "$row" 5) p99[$key]=$(field "$row" 6)
  fi
  printf '  %-26s %7s req/s  p50 %7s ms  p99 %8s ms\n' "$key" "$r" "$(field "$row" 5)" "$(field "$row" 6)"
}
run=0
# hit_cell REPLICA KIND CONNS [PREFIX]: one hit run (KIND cursor or greedy) through
# REPLICA, kept under the key [PREFIX]REPLICA.KIND.CONNS.
hit_cell() {
  local r=$1 kind=$2 conns=$3 key="${4:-}$1.$2.$3" calls0 hits0 calls1 hits1 n out
  run=$((run + 1))
  calls0=$(fake_calls) hits0=$(replica_hits "$r")
  if [ "$kind" = cursor ]; then
    "${on_load_cpu[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/hits.lua" "$(url "$r")" \
      -- "r$run" "$spaces" "$hit_body" > "$work/wrk.out"
  else
    "${on_load_cpu[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/greedy.lua" "$(url "$r")" \
      -- "$greedy_body" > "$work/wrk.out"
  fi
  out=$(cat "$work/wrk.out")
  calls1=$(fake_calls) hits1=$(replica_hits "$r") n=$(requests_of "$out")
  keep "$key" "$out"
  [ "$calls1" -eq "$calls0" ] || flag "$key" $((calls1 - calls0)) "$((calls1 - calls0)) upstream calls during a hit run"
  [ $((hits1 - hits0)) -ge "$n" ] || flag "$key" 1 "$((hits1 - hits0)) hits for $n requests"
  [ "$kind" = greedy ] || [ "$n" -le $((spaces * samples)) ] || flag "$key" 1 "$n requests: more than the list holds"
}
# spread_cell KIND N [PREFIX]: KIND (cursor hits or misses) over the first N replicas
# of $scale_replicas, $scale_conns connections split evenly, one wrk process per
# replica (all on CPU 1); kept under [PREFIX]scale.KIND.N.
scale_replicas=(cluster cluster2 cluster3)
spread_cell() {
  local kind=$1 n=$2 key="${3:-}scale.$1.$2" i r calls0 calls1 hits0=0 hits1=0 total=0 sum=0 worst50=0 worst99=0 wrk_pids=()
  run=$((run + 1))
  calls0=$(fake_calls)
  for r in "${scale_replicas[@]:0:$n}"; do hits0=$((hits0 + $(replica_hits "$r"))); done
  for i in $(seq 0 $((n - 1))); do
    r=${scale_replicas[$i]}
    if [ "$kind" = hit ]; then
      "${on_load_cpu[@]}" wrk -t1 -c$((scale_conns / n)) -d"${secs}s" --latency -s "$work/hits.lua" "$(url "$r")" \
        -- "s$run.$i" "$spaces" "$hit_body" > "$work/wrk.$i.out" &
    else
      "${on_load_cpu[@]}" wrk -t1 -c$((scale_conns / n)) -d"${secs}s" --latency -s "$work/miss.lua" "$(url "$r")" \
        -- "s$run.$i" > "$work/wrk.$i.out" &
    fi
    wrk_pids+=($!)
  done
  wait "${wrk_pids[@]}"
  calls1=$(fake_calls)
  for r in "${scale_replicas[@]:0:$n}"; do hits1=$((hits1 + $(replica_hits "$r"))); done
  # The sum of the replicas' req/s; the worst replica's p50 and p99.
  local row e=0
  for i in $(seq 0 $((n - 1))); do
    row=$(wrk_row x 0 "$(cat "$work/wrk.$i.out")")
    sum=$((sum + $(field "$row" 4)))
    total=$((total + $(requests_of "$(cat "$work/wrk.$i.out")")))
    e=$((e + $(field "$row" 7)))
    worst50=$(awk -v a="$worst50" -v b="$(field "$row" 5)" 'BEGIN {print (b > a ? b : a)}')
    worst99=$(awk -v a="$worst99" -v b="$(field "$row" 6)" 'BEGIN {print (b > a ? b : a)}')
  done
  keep "$key" "$(printf 'Requests/sec: %s\n50%% %sms\n99%% %sms\nNon-2xx or 3xx responses: %s\n' "$sum" "$worst50" "$worst99" "$e")"
  if [ "$kind" = hit ]; then
    [ "$calls1" -eq "$calls0" ] || flag "$key" $((calls1 - calls0)) "$((calls1 - calls0)) upstream calls during a hit run"
    [ $((hits1 - hits0)) -ge "$total" ] || flag "$key" 1 "$((hits1 - hits0)) hits for $total requests"
  else
    [ $((calls1 - calls0)) -ge "$total" ] || flag "$key" 1 "$((calls1 - calls0)) upstream calls for $total requests"
  fi
}

echo "warming up: ${secs}s at 16 connections per replica"
for r in local cluster cluster-w0; do hit_cell "$r" cursor 16 > /dev/null; done
unset rps p50 p99 errs runs; declare -A rps p50 p99 errs runs

hit_replicas=(local cluster cluster-w0)
conn_counts=(1 16 64)
read -r st0 t0 < <(ticks)
for round in $(seq "$rounds"); do
  echo "round $round of $rounds: cursor hits (redis-servers on CPU 1, with wrk)"
  for conns in "${conn_counts[@]}"; do
    for r in "${hit_replicas[@]}"; do hit_cell "$r" cursor "$conns"; done
  done
  echo "round $round: greedy hits (temperature 0)"
  for conns in "${conn_counts[@]}"; do
    for r in local cluster; do hit_cell "$r" greedy "$conns"; done
  done
  echo "round $round: cursor hits with the redis-servers on CPU 0 (the replica's core)"
  redis_to_cpu 0
  for conns in "${conn_counts[@]}"; do
    for r in cluster cluster-w0; do hit_cell "$r" cursor "$conns" cpu0.; done
  done
  redis_to_cpu 1
  echo "round $round: cursor hits with appendfsync everysec on every node (what the fsync per write costs)"
  for p in "${redis_ports[@]}"; do rcli "$p" config set appendfsync everysec >/dev/null; done
  for conns in "${conn_counts[@]}"; do hit_cell cluster cursor "$conns" everysec.; done
  for p in "${redis_ports[@]}"; do rcli "$p" config set appendfsync always >/dev/null; done
  echo "round $round: hits and misses with 1, 2, 3 replicas ($scale_conns connections spread over them)"
  for n in 1 2 3; do spread_cell hit "$n"; spread_cell miss "$n"; done
  scale_replicas=(local)   # the reference: the local store, one replica
  spread_cell hit 1 local.; spread_cell miss 1 local.
  scale_replicas=(cluster cluster2 cluster3)
done
read -r st1 t1 < <(ticks)

# --------------------------------------------------------- what one take costs
# A longer run (2 x SECONDS) of cursor hits at 16 connections through "local" and
# through "cluster": the CPU each process used (utime + stime from /proc/PID/stat) per
# hit, and the cluster's own account (INFO commandstats, reset before the run) of the
# commands it ran. Every take of the hit key goes to one shard (its slot's primary),
# the "hot" primary below; the epoch reads (GET, once per namespace per 250 ms) go to
# whichever shard holds each namespace.
echo "profile: 16 connections, $((2 * secs))s, local and cluster, CPU per hit"
clk=$(getconf CLK_TCK)
us_per() { awk -v t="$1" -v n="$2" -v c="$clk" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / c / n; else print "-" }'; }
profile_run() {   # profile_run REPLICA: sets prof_hits and prof_secs
  local r=$1
  run=$((run + 1))
  "${on_load_cpu[@]}" wrk -t1 -c16 -d"$((2 * secs))s" --latency -s "$work/hits.lua" "$(url "$r")" \
    -- "p$run" "$spaces" "$hit_body" > "$work/prof.out"
  prof_hits=$(requests_of "$(cat "$work/prof.out")")
  prof_rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/prof.out")
}
pt0=$(cpu_ticks "${proxy_pid_of[local]}")
profile_run local
local_ticks=$(( $(cpu_ticks "${proxy_pid_of[local]}") - pt0 )) local_prof_hits=$prof_hits local_prof_rps=$prof_rps

for p in "${redis_ports[@]}"; do rcli "$p" config resetstat >/dev/null; done
declare -A rt0 rt1
for p in "${redis_ports[@]}"; do rt0[$p]=$(cpu_ticks "$(redis_pid_of "$p")"); done
s0=$(replica_stats cluster)
pt0=$(cpu_ticks "${proxy_pid_of[cluster]}")
profile_run cluster
cluster_ticks=$(( $(cpu_ticks "${proxy_pid_of[cluster]}") - pt0 )) cluster_prof_hits=$prof_hits cluster_prof_rps=$prof_rps
s1=$(replica_stats cluster)
for p in "${redis_ports[@]}"; do rt1[$p]=$(cpu_ticks "$(redis_pid_of "$p")"); done
round_trips=$(( $(first_number "$s1" round_trips) - $(first_number "$s0" round_trips) ))
commands=$(( $(first_number "$s1" commands) - $(first_number "$s0" commands) ))
# cmdstat NODE COMMAND FIELD: calls / usec / usec_per_call of COMMAND on NODE (0 if none).
cmdstat() {
  rcli "$1" info commandstats | tr -d '\r' |
    awk -F'[:,=]' -v c="cmdstat_$2" -v f="$3" '$1 == c { for (i = 2; i < NF; i += 2) if ($i == f) v = $(i + 1) } END { print v + 0 }'
}
hot=""; hot_calls=0
for p in "${redis_ports[@]}"; do
  [ "${role_of[$p]}" = master ] || continue
  c=$(cmdstat "$p" fcall calls)
  [ "$c" -gt "$hot_calls" ] && hot=$p hot_calls=$c
done
hot_replica=""
for p in "${redis_ports[@]}"; do [ "${primary_of[$p]:-}" = "$hot" ] && hot_replica=$p; done
takes=$hot_calls
hot_us=$(us_per $((rt1[$hot] - rt0[$hot])) "$takes")
hot_replica_us=$(us_per $((rt1[$hot_replica] - rt0[$hot_replica])) "$takes")
others_ticks=0
for p in "${redis_ports[@]}"; do
  [ "$p" = "$hot" ] || [ "$p" = "$hot_replica" ] || others_ticks=$((others_ticks + rt1[$p] - rt0[$p]))
done
others_us=$(us_per "$others_ticks" "$takes")
fcall_usec=$(cmdstat "$hot" fcall usec_per_call)
waits=$(cmdstat "$hot" wait calls)
gets=0
for p in "${redis_ports[@]}"; do [ "${role_of[$p]}" = master ] && gets=$((gets + $(cmdstat "$p" get calls))); done
rcli "$hot" info commandstats | tr -d '\r' | grep '^cmdstat' > "$work/hot.cmdstats"
rcli "$hot_replica" info commandstats | tr -d '\r' | grep '^cmdstat' > "$work/replica.cmdstats"
# Where the primary's time goes besides CPU: with appendfsync always, Redis calls
# fdatasync on the AOF in its one thread before it answers (and the replica before its
# ACK, which the WAIT waits for). One more run of the same kind with strace attached to
# the hot primary and its replica counts those calls and their wall time (strace
# slows every syscall of the traced processes: this run is not in any table).
fsync_stats() {   # fsync_stats FILE: "<calls> <µs per call>" of fdatasync in a strace -c -w summary
  awk '$NF == "fdatasync" {print $4, $3; found = 1} END {if (!found) print "0 -"}' "$1"
}
if command -v strace >/dev/null; then
  for p in "$hot" "$hot_replica"; do
    timeout -s INT $((2 * secs + 2)) strace -f -c -w -e trace=fdatasync -o "$work/strace.$p" -p "$(redis_pid_of "$p")" 2>/dev/null &
  done
  sleep 0.5
  profile_run cluster
  strace_hits=$prof_hits strace_rps=$prof_rps
  wait_for_straces() { for p in "$hot" "$hot_replica"; do [ -s "$work/strace.$p" ] || return 1; done; }
  bounded_until 10 "strace's summaries" wait_for_straces || true
  read -r hot_fsyncs hot_fsync_us < <(fsync_stats "$work/strace.$hot")
  read -r replica_fsyncs replica_fsync_us < <(fsync_stats "$work/strace.$hot_replica")
else
  strace_hits=0 strace_rps=0 hot_fsyncs=- hot_fsync_us=- replica_fsyncs=- replica_fsync_us=-
fi
local_us=$(us_per "$local_ticks" "$local_prof_hits")
cluster_us=$(us_per "$cluster_ticks" "$cluster_prof_hits")

# ------------------------------------------------------------------------ results
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
steal_pct() { awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.0f", (d > b ? 100 * (c - a) / (d - b) : 0) }'; }
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
fs=$(df -T "$work" | awk 'NR == 2 {print $2 " on " $1}')
# The capacity arithmetic (see the text): takes/s one shard's primary sustains on one
# core, hits/s one replica sustains on one core, and shards for N replicas.
shard_cpu_cap=$(awk -v u="$hot_us" 'BEGIN { if (u > 0) printf "%.0f", 1e6 / u; else print 0 }')
# The primary's one thread per take: its CPU plus its share of an fdatasync (the thread
# waits in it), at this run's batching.
takes_per_fsync=$(awk -v t="$strace_hits" -v f="$hot_fsyncs" 'BEGIN { if (f > 0) printf "%.1f", t / f; else print "-" }')
hot_thread_us=$(awk -v u="$hot_us" -v k="$takes_per_fsync" -v f="$hot_fsync_us" 'BEGIN { if (k > 0 && f > 0) printf "%.1f", u + f / k; else printf "%.1f", u }')
shard_cap=$(awk -v u="$hot_thread_us" 'BEGIN { if (u > 0) printf "%.0f", 1e6 / u; else print 0 }')
replica_cap=$(awk -v u="$cluster_us" 'BEGIN { if (u > 0) printf "%.0f", 1e6 / u; else print 0 }')
shards_for() { awk -v n="$1" -v h="$replica_cap" -v s="$shard_cap" 'BEGIN { x = n * h / s; c = int(x); if (c < x) c++; if (c < 1) c = 1; print c }'; }
{
  echo "# Many machines: cache hits through a Redis Cluster store"
  echo
  cmd="bash bench/cluster.sh $secs"
  [ "$rounds" = 3 ] || cmd="CLUSTER_ROUNDS=$rounds $cmd"
  [ "$BUILD_DIR" = build ] || cmd="BUILD_DIR=$BUILD_DIR $cmd"
  echo "\`$cmd\` (or \`make bench-cluster\`) on $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores ($cpu_model),"
  echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); $("$BUILD_DIR/reprise" --version 2>&1 | head -1) ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null) build in $BUILD_DIR, commit $(git rev-parse --short HEAD 2>/dev/null));"
  echo "$(redis-server --version | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); the nodes' AOF on $fs."
  echo "**Load average before the run: $load_before; after: $load_after** (the machine is shared; other"
  echo "work only slows a run down). CPU steal over the measured runs: $(steal_pct "$st0" "$t0" "$st1" "$t1")%."
  echo
  cat <<TEXT
Pinning (2 cores): every Reprise replica (\`[server] threads = 1\`) and the fake upstream
on CPU 0, as in bench/peers.sh, so that a replica has the same one core in local and in
cluster mode; the six redis-server processes (3 primaries, 3 replicas; the flags of
design/distributed.md section 7: AOF with \`appendfsync always\`, \`min-replicas-to-write 1\`)
and wrk (\`-t1 --latency\`, ${secs} s runs) on CPU 1. In production the cluster is other
machines; here it shares a core with the load generator, and 6 Redis processes, the
replica and wrk share 2 cores: **every cluster figure is a lower bound**. The "redis on
CPU 0" rows move all six redis-servers onto the replica's core instead (\`taskset -a -p\`):
one core for the replica and its whole cluster, the other extreme. ${prio[*]:+Everything runs under \`${prio[*]}\`.}

A **cursor hit** reads the next sample of a namespace: the hit key's list holds $samples
samples (filled first with \`"n": 128\` requests), and each measured request reads the next
one in one of $spaces namespaces, round robin (\`X-Reprise-Namespace\`, new names every run),
so every request moves a cursor: in cluster mode one \`FCALL reprise_take\` on the key's
shard and, with wait_replicas = "all", its \`WAIT\` (pipelined by the client), then the
sample from the replica's memory (every replica read each sample once before: explicit
\`X-Reprise-Sample\` reads). A **greedy hit** is bench/peers.sh's: \`"temperature": 0\`, sample
0 reused in every namespace. Each cell ran $rounds times, in rounds over all cells; it shows
its best round and the errors of all its rounds: non-2xx answers, socket errors, an upstream
call during a hit run (the fake's counter), or hit counters that grew less than wrk's
request count. Latency in ms.
TEXT
  echo
  echo "## Cursor hits through one replica: local store against the cluster"
  echo
  echo "| store | connections | req/s | p50 | p99 | errors | / local |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  label() {
    case $1 in
      local) echo "local (RocksDB)" ;;
      cluster) echo "cluster, wait_replicas = \"all\"" ;;
      cluster-w0) echo "cluster, wait_replicas = 0" ;;
      cpu0.cluster) echo "cluster, \"all\", redis on CPU 0" ;;
      cpu0.cluster-w0) echo "cluster, 0, redis on CPU 0" ;;
      everysec.cluster) echo "cluster, \"all\", appendfsync everysec" ;;
    esac
  }
  for conns in "${conn_counts[@]}"; do
    for r in local cluster cluster-w0 cpu0.cluster cpu0.cluster-w0 everysec.cluster; do
      k=$r.cursor.$conns
      echo "| $(label "$r") | $conns | ${rps[$k]} | ${p50[$k]} | ${p99[$k]} | ${errs[$k]} | $(ratio "${rps[$k]}" "${rps[local.cursor.$conns]}") |"
    done
  done
  echo
  echo "## Greedy hits (temperature 0, as bench/peers.sh)"
  echo
  echo "| store | connections | req/s | p50 | p99 | errors | / local |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for conns in "${conn_counts[@]}"; do
    for r in local cluster; do
      k=$r.greedy.$conns
      echo "| $(label "$r") | $conns | ${rps[$k]} | ${p50[$k]} | ${p99[$k]} | ${errs[$k]} | $(ratio "${rps[$k]}" "${rps[local.greedy.$conns]}") |"
    done
  done
  echo
  verdict() {   # verdict LABEL VALUE OP TARGET
    awk -v l="$1" -v v="$2" -v op="$3" -v t="$4" 'BEGIN {
      ok = (op == ">=") ? v >= t : v < t
      printf "- %s: %s (target %s %s): %s\n", l, v, op, t, ok ? "met" : sprintf("missed, by a factor of %.1f", op == ">=" ? t / v : v / t) }'
  }
  echo "Targets (issue 19), cursor hits at 16 connections:"
  echo
  for r in cluster cpu0.cluster; do
    verdict "$(label "$r"): hits/s / local" "$(ratio "${rps[$r.cursor.16]}" "${rps[local.cursor.16]}")" ">=" 0.5
    verdict "$(label "$r"): p99 ms" "${p99[$r.cursor.16]}" "<" 5
  done
  echo
  echo "## Replicas sharing the cluster: hits and misses per second"
  echo
  echo "1, 2, 3 replicas (all on CPU 0: they share one core) on the same cluster (redis-servers on"
  echo "CPU 1), $scale_conns connections split evenly over them, one wrk process per replica (all on"
  echo "CPU 1); req/s is the sum over the replicas, p50 and p99 the worst replica's. Hits: cursor"
  echo "hits as above. Misses: each request a new key (a counter in the prompt), the fake with"
  echo "\`--latency-ms 0\` on CPU 0: a take that issues a ticket, the upstream call, a \`fill\` and"
  echo "its WAIT. On 2 cores the replicas cannot add CPU: the table shows what a replica costs"
  echo "the cluster and each other, not the scaling of N machines (for that, see below)."
  echo
  echo "| replicas | hits/s | p50 | p99 | errors | misses/s | p50 | p99 | errors |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in 1 2 3 local; do
    h=scale.hit.$n m=scale.miss.$n label=$n
    [ "$n" = local ] && h=local.scale.hit.1 m=local.scale.miss.1 label="1, local store (reference)"
    echo "| $label | ${rps[$h]} | ${p50[$h]} | ${p99[$h]} | ${errs[$h]} | ${rps[$m]} | ${p50[$m]} | ${p99[$m]} | ${errs[$m]} |"
  done
  echo
  echo "## On paper: what one shard sustains, and the shards N replicas need"
  echo
  cat <<TEXT
Measured in a separate $((2 * secs)) s run of cursor hits at 16 connections through one replica
(redis on CPU 1), with \`CONFIG RESETSTAT\` before it and the CPU time of every process
(utime + stime from /proc) around it:

| quantity | value |
|---|---:|
| hits (= takes on the key's shard) in the run | $cluster_prof_hits ($cluster_prof_rps/s) |
| replica CPU per hit, cluster mode | $cluster_us µs |
| replica CPU per hit, local mode (same run, $local_prof_rps/s) | $local_us µs |
| hot primary: CPU per take (all of redis-server: I/O, FCALL, AOF write + fsync, replication) | $hot_us µs |
| hot primary: \`FCALL\` usec_per_call (the function alone; wall time, so preemption on a shared core counts) | $fcall_usec µs |
| its replica: CPU per take | $hot_replica_us µs |
| the other 4 nodes: CPU per take (epoch GETs: $gets in the run) | $others_us µs |
| WAITs on the hot primary / takes | $waits / $takes |
| client round trips / commands (all nodes) | $round_trips / $commands |
| with strace on both (another run, $strace_hits hits at $strace_rps/s): primary's fdatasync calls, µs each (wall) | $hot_fsyncs, $hot_fsync_us µs |
| the same on its replica | $replica_fsyncs, $replica_fsync_us µs |

One shard's primary is one single-threaded redis-server. Its CPU alone ($hot_us µs per take)
would allow 1,000,000 / $hot_us = $shard_cpu_cap takes/s on one core; but with \`appendfsync always\`
its thread also waits in fdatasync once per event-loop turn ($takes_per_fsync takes per
fdatasync in this run, $hot_fsync_us µs each), so it is busy $hot_us + $hot_fsync_us / $takes_per_fsync = $hot_thread_us µs
per take: **about $shard_cap takes/s (= cursor hits/s) per shard** at this batching, its replica
needing $hot_replica_us µs of CPU per take on another core. Deeper batches (more load, more
replicas pipelining into the shard) spread each fdatasync over more takes, so this is a
floor and $shard_cpu_cap/s the ceiling on this CPU (the client pipelined $(ratio "$commands" "$round_trips") commands
per round trip here). One Reprise replica with one core spends $cluster_us µs per cluster hit
(local mode: $local_us µs), so it makes at most 1,000,000 / $cluster_us = **$replica_cap hits/s**
per core. N replicas at full load on one core each then need N x $replica_cap / $shard_cap shards,
rounded up: $(for n in 1 2 4 8 16 32; do printf '%s replica%s: %s; ' "$n" "$([ "$n" = 1 ] || echo s)" "$(shards_for "$n")"; done | sed 's/; $//')
(for R cores per replica, multiply N by R). This assumes the keys spread evenly
over the shards (16384 slots by CRC16 of the key): all takes of **one** key go to its one
shard, so a single hot key is capped at $shard_cap hits/s whatever the number of shards.
Misses cost more per request (a take, a fill, two WAITs) but are bounded by the upstream, far
below these rates.

The hot primary's INFO commandstats for the run:

\`\`\`
$(cat "$work/hot.cmdstats")
\`\`\`

Its replica's:

\`\`\`
$(cat "$work/replica.cmdstats")
\`\`\`
TEXT
} > "$out_md"

# The chart: cursor hits/s per store at 1 / 16 / 64 connections; and hits and misses
# per second with 1, 2, 3 replicas.
for conns in "${conn_counts[@]}"; do
  echo "$conns ${rps[local.cursor.$conns]} ${rps[cluster.cursor.$conns]} ${rps[cluster-w0.cursor.$conns]} ${rps[cpu0.cluster.cursor.$conns]} ${rps[everysec.cluster.cursor.$conns]}"
done > "$work/chart.hits.dat"
for n in 1 2 3; do echo "$n ${rps[scale.hit.$n]} ${rps[scale.miss.$n]}"; done > "$work/chart.scale.dat"
gnuplot <<GP
set terminal pngcairo size 1200,480 font ",10" noenhanced
set output "$out_png"
set multiplot layout 1,2 title "Reprise on a Redis Cluster (3+3 nodes, loopback, 2 cores; load average $load_before)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set grid ytics
set yrange [0:*]
set key below maxcols 3
set xlabel "connections"
set ylabel "cursor hits/s (one replica, threads = 1, CPU 0)"
set title "Cursor hits: local store vs cluster"
plot "$work/chart.hits.dat" using 2:xtic(1) title "local (RocksDB)" lc rgb "#1b9e77", \
     "" using 3 title "cluster, wait all" lc rgb "#377eb8", \
     "" using 4 title "cluster, wait 0" lc rgb "#80b1d3", \
     "" using 5 title "cluster, wait all, redis on CPU 0" lc rgb "#e6ab02", \
     "" using 6 title "cluster, wait all, appendfsync everysec" lc rgb "#999999"
set style data linespoints
set xlabel "replicas (all on CPU 0; $scale_conns connections over them)"
set ylabel "requests/s (sum over replicas)"
set xrange [0.5:3.5]
set xtics 1
set logscale y
set yrange [*:*]
set title "Replicas sharing the cluster"
plot "$work/chart.scale.dat" using 1:2 title "cursor hits" lw 2 pt 7 lc rgb "#377eb8", \
     "" using 1:3 title "misses (fake upstream, 0 ms)" lw 2 pt 5 lc rgb "#d95f02", \
     ${rps[local.scale.hit.1]} title "hits, local store, 1 replica" dt 2 lw 1 lc rgb "#377eb8", \
     ${rps[local.scale.miss.1]} title "misses, local store, 1 replica" dt 2 lw 1 lc rgb "#d95f02"
unset multiplot
GP
echo
cat "$out_md"
echo
echo "wrote $out_md and $out_png"
