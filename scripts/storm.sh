#!/usr/bin/env bash
# Alert storm against a release build: `rollbot serve` (with `rollbot sim`
# as its cluster) takes Alertmanager deliveries of distinct alerts from wrk
# over C concurrent connections for S seconds, while /healthz is probed
# every 100 ms. Fails if any probe takes over 2 s or the server stops
# answering; prints deliveries/s, latencies, the slowest probe, RSS and the
# store's size. Everything runs on 127.0.0.1.
# Usage: scripts/storm.sh [CONNECTIONS] [SECONDS]   (default 32 60)
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-32}"
secs="${2:-60}"

if ! command -v wrk >/dev/null; then
  echo "==> installing wrk"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends wrk
fi
echo "==> cargo build --release"
cargo build --release --locked --bin rollbot
bin="${CARGO_TARGET_DIR:-target}/release/rollbot"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${ROLLBOT_STORM_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port="$(free_port)"
port="$(free_port)"

# Eight services, each a deployment with two revisions to roll back between.
{
  echo "server_version: v1.33.1"
  echo "namespaces: [production]"
  echo "deployments:"
  for i in 0 1 2 3 4 5 6 7; do
    cat <<SEED
  - namespace: production
    name: svc-$i
    labels: {app: svc-$i}
    replicas: 2
    container: app
    revisions:
      - image: app:v1
      - image: app:v2
SEED
  done
} > "$work/seed.yaml"
"$bin" sim --seed "$work/seed.yaml" --listen "127.0.0.1:$sim_port" \
  --kubeconfig-out "$work/kubeconfig" > "$work/sim.log" 2>&1 &
pids+=($!)

echo "storm-token" > "$work/am-token"
{
  cat <<CONF
[server]
listen = "127.0.0.1:$port"
[store]
path = "$work/db"
[groups]
sre = ["console:alice", "console:bob"]
[kubernetes]
kubeconfig = "$work/kubeconfig"
[alerts.alertmanager]
bearer_token = { file = "$work/am-token" }
[[alerts.routes]]
matchers = ["service=svc-0"]
service = "svc-0"
CONF
  for i in 0 1 2 3 4 5 6 7; do
    cat <<CONF
[services.svc-$i]
groups = ["sre"]
[services.svc-$i.kubernetes]
namespace = "production"
name = "svc-$i"
CONF
  done
} > "$work/rollbot.toml"
for _ in $(seq 1 100); do [ -s "$work/kubeconfig" ] && break; sleep 0.1; done
[ -s "$work/kubeconfig" ] || { echo "error: rollbot sim did not start:" >&2; cat "$work/sim.log" >&2; exit 1; }
ROLLBOT_LOG=warn "$bin" serve --config "$work/rollbot.toml" > "$work/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "error: rollbot serve did not become ready; its log:" >&2; tail -n 20 "$work/serve.log" "$work/sim.log" >&2; exit 1; }

# Each request: one delivery with one new alert (a counter in its labels).
cat > "$work/storm.lua" <<'LUA'
local n = 0
local thread_id = 0
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer storm-token"
end
function request()
  n = n + 1
  local body = string.format(
    '{"version":"4","status":"firing","receiver":"rollbot","groupKey":"{}:{service=\\"svc-0\\"}",' ..
    '"groupLabels":{"service":"svc-0"},"commonLabels":{},"commonAnnotations":{},' ..
    '"externalURL":"http://alertmanager.example","truncatedAlerts":0,"alerts":[{"status":"firing",' ..
    '"labels":{"alertname":"Storm","service":"svc-0","instance":"t%d-%d"},' ..
    '"annotations":{"summary":"storm"},"startsAt":"2026-11-28T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",' ..
    '"generatorURL":"http://prometheus.example/graph"}]}', id, n)
  return wrk.format(nil, "/webhooks/alertmanager", nil, body)
end
LUA

# The watchdog: /healthz every 100 ms, each with a 5 s limit.
python3 - "$port" "$secs" > "$work/probe.txt" <<'PY' &
import sys, time, urllib.request
port, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + secs + 2
worst, n, failed = 0.0, 0, 0
while time.time() < end:
    t = time.time()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
    except Exception:
        failed += 1
    d = time.time() - t
    worst = max(worst, d)
    n += 1
    time.sleep(max(0.0, 0.1 - d))
print(f"{n} {worst:.4f} {failed}")
PY
probe_pid=$!

echo "==> wrk: $conns connections, ${secs}s, one new alert per delivery"
wrk -t2 -c"$conns" -d"${secs}s" --latency --timeout 10s -s "$work/storm.lua" \
  "http://127.0.0.1:$port" | tee "$work/wrk.txt"
wait "$probe_pid"
read -r probes worst failed < "$work/probe.txt"
rss_kib="$(awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status")"
sizes="$(du -sk "$work/db" | cut -f1)"
proposals="$(curl -fsS "http://127.0.0.1:$port/api/v1/proposals?limit=500" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
echo "==> /healthz: $probes probes, slowest ${worst}s, $failed failed; RSS ${rss_kib} KiB; store ${sizes} KiB on disk; $proposals proposal(s)"
if ! kill -0 "$serve_pid" 2>/dev/null; then
  echo "error: rollbot serve died; its log:" >&2
  tail -20 "$work/serve.log" >&2
  exit 1
fi
if [ "$failed" -gt 0 ] || python3 -c "import sys; sys.exit(0 if float('$worst') > 2 else 1)"; then
  echo "error: /healthz stalled (slowest ${worst}s, $failed failed)" >&2
  exit 1
fi
echo "==> no stall"
