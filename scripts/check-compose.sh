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
# shellcheck source=scripts/lib/venv.sh
. "$repo/scripts/lib/venv.sh"
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
  # The same lock as scripts/install-temporal.sh: one installer in the venv at a time.
  venv_lock "$venv"
  if ! installed; then
    venv_pip_install "$venv" "check-jsonschema 0.39 needs Python 3.11 or newer" "${REQUIREMENTS[@]}"
    installed || die "the requirements are still missing after pip install"
  fi
  venv_unlock
fi

exec "$python" "$repo/scripts/check-compose.py" "$file" </dev/null
