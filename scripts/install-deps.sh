#!/usr/bin/env bash
# Installs the Debian packages Reprise needs to build and test, and only the ones
# that are missing: quiet and fast (one dpkg query) when everything is there.
# Idempotent; needs root (or sudo) only when something has to be installed.
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
  nodejs npm             # the official openai SDK test client
  chromium               # headless browser: the dashboard test
  prometheus             # promtool: the unit tests validate GET /metrics with it
)
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
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# The prometheus package is here for promtool only; it also ships a server that its
# postinst would start at once and enable at boot, listening on :9090 (the admin
# listener's default port). So: no service may start during the install (a temporary
# policy-rc.d, unless one is already there, as in Docker images, which deny), and the
# service is disabled (SysV links and systemd unit) and stopped afterwards.
policy=/usr/sbin/policy-rc.d
if [[ " ${missing[*]} " == *" prometheus "* && ! -e $policy ]]; then
  printf '#!/bin/sh\n# install-deps.sh: no service starts during this install\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  $sudo update-rc.d prometheus disable >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    $sudo systemctl stop prometheus.service >/dev/null 2>&1 || true
  else
    $sudo /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
fi
echo "install-deps: done"
