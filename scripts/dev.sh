#!/usr/bin/env bash
# Brings the system up on this machine on embedded defaults: the schema and the demo catalogue
# on a SQLite file (.restock/restock.db), then the gateway in the foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p restock
target/debug/restock migrate --demo
exec target/debug/restock gateway
