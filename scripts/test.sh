#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and integration tests against SQLite,
# PostgreSQL and MariaDB through a real gRPC gateway.
#
# PostgreSQL and MariaDB: RESTOCK_TEST_POSTGRES_URL / RESTOCK_TEST_MYSQL_URL (an account that may
# create databases). When unset, the local servers are used if they answer on their standard
# ports (and always under CI); otherwise those tests print SKIPPED.
#
# The console's browser test needs Debian's chromium and chromedriver: installed here by
# scripts/install-chromium.sh (root or sudo); without them it prints SKIPPED, except under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! scripts/install-chromium.sh && [ -n "${CI:-}" ]; then
  echo "test.sh: CI must run the browser tests, and chromium could not be installed" >&2
  exit 1
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -z "${RESTOCK_TEST_POSTGRES_URL:-}" ] && { [ -n "${CI:-}" ] || port_open 5432; }; then
  export RESTOCK_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi
if [ -z "${RESTOCK_TEST_MYSQL_URL:-}" ] && { [ -n "${CI:-}" ] || port_open 3306; }; then
  export RESTOCK_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306/test"
fi

cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
