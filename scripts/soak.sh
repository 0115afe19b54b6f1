#!/usr/bin/env bash
# The long soak: `rollbot serve` under 32 concurrent connections of alerts,
# Slack votes and API reads, failing on any request or health probe slower
# than 2 s (see tests/soak.rs). `cargo test` soaks for 30 s only.
# Usage: scripts/soak.sh [SECONDS]   (default 300)
#   ROLLBOT_SOAK_SEED=N replays a run's choices; the seed is printed at the start.
set -euo pipefail
cd "$(dirname "$0")/.."

# The same flags as scripts/test.sh, so its build is reused.
. scripts/cargo-flags.sh
export ROLLBOT_SOAK_SECS="${1:-${ROLLBOT_SOAK_SECS:-300}}"
echo "==> soak: $ROLLBOT_SOAK_SECS s"
cargo test --locked --test soak -- --nocapture
