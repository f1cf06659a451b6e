#!/usr/bin/env bash
# One entry point for a fresh clone: `bash scripts/dev.sh demo` or `bash scripts/dev.sh test`.
# Creates .venv if missing, installs the project with its test and dev extras, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # Reinstall only when the packaging metadata changed since the last install.
  local stamp=.venv/.dref-installed
  if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,dev,redis]'
    touch "$stamp"
  fi
}

ensure_redis_server() {
  # The Redis tests start their own redis-server; install the Debian package when absent.
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "redis-server is missing and cannot be installed here; Redis tests will be skipped" >&2
    fi
  fi
}

case "${1:-}" in
  demo)
    ensure_venv
    .venv/bin/python examples/quickstart.py
    ;;
  test)
    ensure_venv
    ensure_redis_server
    shift
    .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test [pytest args]" >&2
    exit 2
    ;;
esac
