#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver (for the console's browser tests), and a
# Korean font for the demo catalogue's names, when any is missing. Idempotent; needs no stdin. Nothing else is downloaded:
# the browser comes from Debian's package archive, never from a browser vendor's site.
#
# Needs root or passwordless sudo. Without either (and outside CI) it says so and exits 1;
# the browser tests then print SKIPPED unless CI is set.
set -euo pipefail

log() { printf 'install-chromium: %s\n' "$*" >&2; }

packages=(chromium chromium-driver fonts-nanum)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "${missing[*]} not installed, and this user cannot install Debian packages (no root, no sudo)"
  log "install them yourself: apt-get install ${missing[*]}"
  exit 1
fi
log "installing Debian's ${missing[*]} (a minute or two the first time)"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq </dev/null >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2
/usr/bin/chromium --version >&2
