# Shared by the bench scripts (source it): wrk present, the binaries built, and
# start_stack, which starts the fake upstream and a proxy in front of it on
# 127.0.0.1 (ports picked by the system), all stopped and removed on exit.
# After start_stack: $work (a temp dir), $fake_port, $proxy_port, $admin_port.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
[ -x build/reprise ] && [ -x build/fake_openai ] || { echo "build first: make build (or make test)"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Milliseconds from wrk's "123.45us" / "1.20ms" / "2.00s".
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", v*1000 }'; }

# One table row from wrk --latency output: label, connections, req/s, p50, p99, and
# the errors (non-2xx answers plus a socket-error line).
wrk_row() {
  local label=$1 conns=$2 out=$3
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {n+=1} END {print n+0}' <<<"$out")
  printf '| %-12s | %11s | %7s | %9s | %9s | %6s |\n' "$label" "$conns" "$rps" "$p50" "$p99" "$errors"
}

start_stack() {
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
[energy]
csv_path = "$work/energy.csv"
[log]
access_log = false
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:$fake_port/v1"
api_key_env = ""
TOML
  build/reprise --config "$work/proxy.toml" 2> "$work/proxy.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "admin listening" "$work/proxy.log" 2>/dev/null && break; sleep 0.05; done
  proxy_port=$(sed -n 's/.*proxy listening on 127.0.0.1://p' "$work/proxy.log")
  admin_port=$(sed -n 's/.*admin listening on 127.0.0.1://p' "$work/proxy.log")
}
