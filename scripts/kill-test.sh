#!/usr/bin/env bash
# The full kill test: 100 incidents driven through `rollbot serve`, each
# SIGKILLed at a seeded random point and restarted on the same store (see
# tests/kill.rs). `cargo test` runs only a few of them.
# Usage: scripts/kill-test.sh [INCIDENTS]   (default 100)
#   ROLLBOT_KILL_SEED=N replays a run; the seed is printed at the start.
set -euo pipefail
cd "$(dirname "$0")/.."

# The same flags as scripts/test.sh, so its build is reused.
. scripts/cargo-flags.sh
export ROLLBOT_KILL_INCIDENTS="${1:-${ROLLBOT_KILL_INCIDENTS:-100}}"
echo "==> kill test: $ROLLBOT_KILL_INCIDENTS incidents"
cargo test --locked --test kill -- --nocapture
