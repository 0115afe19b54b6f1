#!/usr/bin/env bash
# Every benchmark in one run, written to BENCHMARKS.md.
#
# Installs what the runs need (wrk, perf; apt-get, as root or with sudo),
# builds the release binary and the two benches once, then runs on
# 127.0.0.1 only:
#   benches/paths.rs   undo vs kubectl, completion detection, the critical
#                      paths idle and under an alert storm, footprint and
#                      growth (against the real `rollbot serve` and kubectl)
#   benches/ingest.rs  alert ingest beside a bare axum handler under the
#                      same wrk load, with a perf profile of each kind
# Numbers need a quiet machine: nothing else should run meanwhile.
# Usage: scripts/bench.sh [OUT]   (default BENCHMARKS.md)
#   RUNS=N (paths repeats, default 15), INGEST_RUNS=N (default 3),
#   INGEST_SECONDS=S (per wrk run, default 3), KUBECTL=/path/to/kubectl
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-BENCHMARKS.md}"
target="${CARGO_TARGET_DIR:-target}"
started=$(date +%s)

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v perf >/dev/null || need+=(linux-perf)
if [ "${#need[@]}" -gt 0 ]; then
  echo "==> installing ${need[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${need[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The release binary as users build it, copied aside: `cargo bench` builds
# the crate again with its dev-dependencies' features and writes its own
# `rollbot` to the same path.
echo "==> cargo build --release, then the benches (cargo bench --no-run)"
build_start=$(date +%s)
cargo build --locked --release --bin rollbot
cp "$target/release/rollbot" "$work/rollbot"
bin="$work/rollbot"
cargo bench --locked --no-run --bench paths --bench ingest
build_secs=$(( $(date +%s) - build_start ))
: > "$work/goals.md"

kubectl_args=()
if [ -n "${KUBECTL:-}" ]; then kubectl_args=(--kubectl "$KUBECTL"); fi
echo "==> paths (undo vs kubectl, completion, latency under load, footprint)"
cargo bench --locked --bench paths -- --rollbot "$bin" --out "$work/paths.md" \
  --goals "$work/goals.md" --runs "${RUNS:-15}" "${kubectl_args[@]}"
echo "==> ingest (rollbot beside a bare axum handler)"
cargo bench --locked --bench ingest -- --rollbot "$bin" --out "$work/ingest.md" \
  --goals "$work/goals.md" --runs "${INGEST_RUNS:-3}" --seconds "${INGEST_SECONDS:-3}" \
  --profile "$target/bench-profiles"
run_secs=$(( $(date +%s) - build_start - build_secs ))

kubectl_bin="${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}"
[ -x "$kubectl_bin" ] || kubectl_bin="$(command -v kubectl || echo kubectl)"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') from commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD -- src benches || echo ' (with local changes)'). Reproduce with:"
  echo
  echo '```sh'
  echo "scripts/bench.sh"
  echo '```'
  echo
  echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, Linux $(uname -r)."
  echo "- Tools: $(rustc --version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), kubectl $("$kubectl_bin" version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || echo '?') (\`$kubectl_bin\`)."
  echo "- Everything on 127.0.0.1; rollbot is the release build, its store on local disk with every acknowledged write flushed. Building took ${build_secs} s (cargo reuses what is built; from clean, the release build and the benches take over 10 minutes on 2 cores), the benchmarks ${run_secs} s."
  echo "- Medians with min–max over repeated runs; each section says what is timed. Benchmarks print figures only; nothing here is a pass/fail test."
  echo
  echo "## Goals"
  echo
  echo "| goal | target | measured (median) | verdict |"
  echo "|---|---|---|---|"
  cat "$work/goals.md"
  echo
  cat benches/FINDINGS.md
  cat "$work/paths.md"
  echo
  cat "$work/ingest.md"
} > "$out"
echo "==> wrote $out in $(( $(date +%s) - started )) s"
