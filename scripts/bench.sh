#!/usr/bin/env bash
# Benchmarks restock and regenerates BENCHMARKS.md (see BENCHMARKS.md's "Method").
#
#   scripts/bench.sh           full run, release build, ~25 min: writes BENCHMARKS.md
#   scripts/bench.sh --quick   CI smoke run, seconds of load: writes target/bench-quick.md
#
# Other flags go to restock-bench (`--help`). PostgreSQL rows need RESTOCK_BENCH_POSTGRES_URL
# (an account that may create databases); when unset, the local server is used if it answers
# on 127.0.0.1:5432 (and always under CI). pgbench comes with PostgreSQL's client tools.
# RESTOCK_BENCH_PROFILE=dev reuses the test build instead of building release (CI does, for
# the quick run).
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -z "${RESTOCK_BENCH_POSTGRES_URL:-}" ] && { [ -n "${CI:-}" ] || port_open 5432; }; then
  export RESTOCK_BENCH_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi

profile="${RESTOCK_BENCH_PROFILE:-release}"
case "$profile" in
  release) dir=release ;;
  dev) dir=debug ;;
  *) echo "RESTOCK_BENCH_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
if [ "$profile" = dev ]; then
  # Same targets (so the same features) as scripts/test.sh: nothing is rebuilt after it.
  cargo build --workspace --all-targets
else
  cargo build --release -p restock -p restock-bench
fi
# The Temporal CLI, installed once into .venv (the benchmark starts its own dev server).
bash scripts/install-temporal.sh >/dev/null
exec "target/$dir/restock-bench" --restock-bin "target/$dir/restock" "$@"
