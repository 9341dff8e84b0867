# Shared by the bench scripts (source it): wrk present, the binaries built, and
# start_stack, which starts the fake upstream and a proxy in front of it on
# 127.0.0.1 (ports picked by the system), all stopped and removed on exit.
# After start_stack: $work (a temp dir), $fake_port, $proxy_port, $admin_port.
# The binaries come from $BUILD_DIR (default build). The pieces of start_stack,
# start_fake and start_reprise, can be used on their own; both run their program
# behind the command in the array $pin (empty by default; e.g. pin=(taskset -c 0)).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
[ -x "$BUILD_DIR/reprise" ] && [ -x "$BUILD_DIR/fake_openai" ] ||
  { echo "build first: make build (or make test), or set BUILD_DIR"; exit 1; }

work=$(mktemp -d)
pids=()
pin=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
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
  printf "| %-${label_width:-12}s | %11s | %7s | %9s | %9s | %6s |\n" "$label" "$conns" "$rps" "$p50" "$p99" "$errors"
}

# wait_for FILE PATTERN: up to 10 s for PATTERN to appear in FILE.
wait_for() {
  for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2 || true; return 1
}

# start_fake [FLAGS...]: the fake upstream; sets $fake_port and $fake_pid.
start_fake() {
  ${pin[@]+"${pin[@]}"} "$BUILD_DIR/fake_openai" --listen 127.0.0.1:0 "$@" > "$work/fake.out" &
  fake_pid=$!
  pids+=($fake_pid)
  wait_for "$work/fake.out" listening
  fake_port=$(sed -n 's/listening 127.0.0.1://p' "$work/fake.out")
}

# start_reprise [NAME [SERVER_KEYS [OTHER_TOML [CSV_PATH]]]]: a proxy in front of the
# fake, its store and files under $work/NAME (default reprise); SERVER_KEYS are more
# lines of its [server] table, OTHER_TOML more tables; CSV_PATH its energy CSV (default
# $work/NAME/energy.csv, "" for none). Sets $proxy_port, $admin_port, $proxy_pid.
start_reprise() {
  local name=${1:-reprise} server_keys=${2:-} other=${3:-}
  local csv=$work/${1:-reprise}/energy.csv
  [ $# -ge 4 ] && csv=$4
  mkdir -p "$work/$name"
  cat > "$work/$name/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:0"
$server_keys
[admin]
listen = "127.0.0.1:0"
[cache]
path = "$work/$name/cache"
[energy]
csv_path = "$csv"
[log]
access_log = false
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:$fake_port/v1"
api_key_env = ""
$other
TOML
  ${pin[@]+"${pin[@]}"} "$BUILD_DIR/reprise" --config "$work/$name/proxy.toml" 2> "$work/$name/proxy.log" &
  proxy_pid=$!
  pids+=($proxy_pid)
  wait_for "$work/$name/proxy.log" "admin listening"
  proxy_port=$(sed -n 's/.*proxy listening on 127.0.0.1://p' "$work/$name/proxy.log")
  admin_port=$(sed -n 's/.*admin listening on 127.0.0.1://p' "$work/$name/proxy.log")
}

start_stack() {
  start_fake
  start_reprise
}
