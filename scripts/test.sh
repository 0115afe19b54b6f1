#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian
# machine, then runs every check CI runs (format, lint, tests).
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# Debian packages the tests run for real.
apt_packages=()
# tests/alertmanager_real.rs runs a real Alertmanager.
if [ ! -x /usr/bin/prometheus-alertmanager ]; then apt_packages+=(prometheus-alertmanager); fi
if ((${#apt_packages[@]})); then
  echo "==> installing: ${apt_packages[*]}"
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${apt_packages[@]}"
fi

echo "==> cargo fmt"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --locked
