#!/usr/bin/env bash
# Fuzzes the parsers of untrusted factory input (callback bodies, factory replies) with
# cargo fuzz (libFuzzer). Usage: scripts/fuzz.sh [SECONDS per target, default 30].
# cargo-fuzz is installed from crates.io when missing; the stable toolchain is allowed the
# nightly-only instrumentation flags through RUSTC_BOOTSTRAP (no other toolchain is fetched).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version '^0.13' >&2
fi
export RUSTC_BOOTSTRAP=1
for target in callback_body factory_reply; do
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run --fuzz-dir factory/fuzz "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
