# Installing Python packages into the project's venv (.venv), shared by
# scripts/install-temporal.sh and scripts/check-compose.sh. Source it after defining `log` and
# `die`.

# venv_lock VENV: waits for, then holds, the venv's install lock, so that scripts (and test
# binaries) running in parallel do not race on it; held until venv_unlock or the shell exits.
venv_lock() {
  mkdir -p "$1"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$1/.install-temporal.lock"
    flock 9
  fi
}

venv_unlock() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>&-
  fi
}

# venv_pip_install VENV HINT PACKAGE...: creates VENV if needed and pip-installs the packages
# into it; on failure prints pip's output and dies, with HINT for the person reading.
venv_pip_install() {
  local venv=$1 hint=$2 pip_out
  shift 2
  command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3 ($hint)"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv" </dev/null >&2 \
      || die "python3 -m venv $venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  log "installing $* into $venv"
  if ! pip_out=$("$venv/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
      "$@" </dev/null 2>&1); then
    printf '%s\n' "$pip_out" >&2
    die "pip install $* failed (see above); is PyPI reachable? ($hint)"
  fi
}
