#!/usr/bin/env bash
# Instructions per cache hit (issue 19): Reprise as bench/peers.sh runs it ([server]
# threads = 1, energy CSV on, the fake answering 16 words), the same body replayed with
# "temperature": 0 (greedy reuse: every request a hit), under callgrind. After a warm-up
# the counters are zeroed, REQUESTS hits are made one after another over one
# keep-alive connection (a node client), and the total over all threads (the energy
# CSV writer's included) is divided by the hits /admin/stats counted. Robust on a
# shared machine, unlike requests per second. Needs valgrind and node.
#
#   bench/hit_instructions.sh OUTDIR [REQUESTS]   (default 2000; BUILD_DIR=build)
#
# Prints "json: hits N Ir T per-hit P" and the same for sse; leaves json.cg and
# sse.cg in OUTDIR for callgrind_annotate (--inclusive=yes --tree=calling).
set -euo pipefail
out=$(realpath -m "$1"); n=${2:-2000}
source "$(dirname "$0")/lib.sh"     # cd's to the repository root
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
start_fake
curl -sf -o /dev/null -d '{"min_words":16,"max_words":16}' "http://127.0.0.1:$fake_port/_fake/control"
name=cg; mkdir -p $work/$name
cat > "$work/$name/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:0"
threads = 1
[admin]
listen = "127.0.0.1:0"
[cache]
path = "$work/$name/cache"
[energy]
csv_path = "$work/$name/energy.csv"
[log]
access_log = false
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:$fake_port/v1"
api_key_env = ""
TOML
mkdir -p $out
valgrind --tool=callgrind --callgrind-out-file=$out/cg.%p --dump-instr=no $BUILD_DIR/reprise --config $work/$name/proxy.toml 2> $work/$name/proxy.log &
vpid=$!; pids+=($vpid)
for _ in $(seq 600); do grep -q "admin listening" $work/$name/proxy.log && break; sleep 0.1; done
proxy_port=$(sed -n 's/.*proxy listening on 127.0.0.1://p' "$work/$name/proxy.log")
admin_port=$(sed -n 's/.*admin listening on 127.0.0.1://p' "$work/$name/proxy.log")
prompt='{"role":"user","content":"Write a haiku about caches."}'
json_body='{"model":"gpt-4o-mini","messages":['"$prompt"'],"max_tokens":16,"temperature":0}'
sse_body='{"model":"gpt-4o-mini","messages":['"$prompt"'],"max_tokens":16,"temperature":0,"stream":true}'
H=(-H 'Content-Type: application/json' -H 'Authorization: Bearer sk-bench')
for b in "$json_body" "$sse_body"; do for i in 1 2 3; do curl -sf -o /dev/null "${H[@]}" -d "$b" http://127.0.0.1:$proxy_port/v1/chat/completions; done; done
cat > $work/loop.mjs <<'JS'
import http from 'node:http';
const [port, n, body] = [process.argv[2], +process.argv[3], process.argv[4]];
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
let done = 0;
function one() {
  const r = http.request({host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent,
    headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer sk-bench', 'Content-Length': Buffer.byteLength(body)}},
    res => { if (res.headers['x-reprise-cache'] !== 'hit') { console.error('not a hit'); process.exit(1); }
             res.resume(); res.on('end', () => { if (++done < n) one(); else agent.destroy(); }); });
  r.end(body);
}
one();
JS
for mode in json sse; do
  b=$json_body; [ $mode = sse ] && b=$sse_body
  node $work/loop.mjs $proxy_port 50 "$b"   # warm
  callgrind_control -z $vpid >/dev/null
  h0=$(curl -sf http://127.0.0.1:$admin_port/admin/stats | grep -o '"hits":[0-9]*' | head -1 | cut -d: -f2)
  node $work/loop.mjs $proxy_port $n "$b"
  h1=$(curl -sf http://127.0.0.1:$admin_port/admin/stats | grep -o '"hits":[0-9]*' | head -1 | cut -d: -f2)
  callgrind_control -d $mode $vpid >/dev/null
  sleep 1
  f=$(ls -t $out/cg.$vpid.* | head -1)
  ir=$(callgrind_annotate $f 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  echo "$mode: hits $((h1-h0)) Ir $ir per-hit $((ir/(h1-h0)))" | tee -a $out/summary
  cp $f $out/$mode.cg
done
