#!/usr/bin/env bash
# Checks docker-compose.temporal.yml (or the file given) without a Docker engine: validates it
# against the Compose Specification's JSON schema and the project's rules (see
# scripts/check-compose.py). Prints one OK line, or every problem and exits 1.
#
#   scripts/check-compose.sh [FILE]
#
# The schema is compose-spec's schema/compose-spec.json as vendored by the PyPI package
# check-jsonschema (pinned below, so a run is reproducible), validated with jsonschema and read
# with ruamel.yaml (YAML 1.2, as Compose reads it). They are installed into the project's venv
# (.venv, shared with scripts/install-temporal.sh) on first use; later runs install nothing.
# Idempotent; needs no stdin.
set -euo pipefail

# The schema's carrier, pinned exactly: a newer release may vendor a newer schema. Then
# jsonschema and ruamel.yaml, pinned to the ranges check-jsonschema 0.39 supports.
REQUIREMENTS=('check-jsonschema==0.39.0' 'jsonschema>=4.18,<5' 'ruamel.yaml>=0.18.10,<0.20')

log() { printf 'check-compose: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
python="$venv/bin/python"
file=${1:-$repo/docker-compose.temporal.yml}
[ -f "$file" ] || die "$file: no such file"

# Succeeds when the venv has every requirement at a matching version.
installed() {
  [ -x "$python" ] || return 1
  "$python" - "${REQUIREMENTS[@]}" 2>/dev/null <<'EOF'
import importlib.metadata as md, re, sys
def key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
for req in sys.argv[1:]:
    name, rest = re.match(r"([A-Za-z0-9_.-]+)(.*)", req).groups()
    have = key(md.version(name))
    for op, want in re.findall(r"(==|>=|<)([0-9.]+)", rest):
        w = key(want)
        if (op == "==" and have != w) or (op == ">=" and have < w) or (op == "<" and have >= w):
            sys.exit(1)
EOF
}

if ! installed; then
  mkdir -p "$venv"
  # The same lock as scripts/install-temporal.sh: one installer in the venv at a time.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv/.install-temporal.lock"
    flock 9
  fi
  if ! installed; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3 (3.11 or newer)"
    if [ ! -x "$python" ]; then
      log "creating $venv"
      python3 -m venv "$venv" </dev/null >&2 \
        || die "python3 -m venv $venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    log "installing ${REQUIREMENTS[*]} into $venv"
    if ! pip_out=$("$python" -m pip install --quiet --no-input --disable-pip-version-check \
        "${REQUIREMENTS[@]}" </dev/null 2>&1); then
      printf '%s\n' "$pip_out" >&2
      die "pip install failed (see above); is PyPI reachable? check-jsonschema 0.39 needs Python 3.11 or newer"
    fi
    installed || die "the requirements are still missing after pip install"
  fi
  if command -v flock >/dev/null 2>&1; then
    exec 9>&-
  fi
fi

exec "$python" "$repo/scripts/check-compose.py" "$file" </dev/null
