# Sourced by the test scripts: the cargo flags scripts/test.sh builds with
# (clippy-driver as the compiler wrapper, warnings as errors), so every
# script reuses that one dev build instead of compiling another.
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
if [ -z "$clippy_driver" ]; then
  echo "error: clippy-driver not found; install it with: rustup component add clippy" >&2
  exit 1
fi
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings" RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
