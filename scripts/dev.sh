#!/usr/bin/env bash
# One entry point for a fresh clone: `bash scripts/dev.sh demo|test|bench`.
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
    .venv/bin/python -m pip install -q -e '.[test,dev,redis,bench]'
    touch "$stamp"
  fi
}

ensure_debian_package() {
  # ensure_debian_package COMMAND PACKAGE: install PACKAGE when COMMAND is missing (as root).
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
      echo "$1 is missing and cannot be installed here (apt-get install $2)" >&2
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
    ensure_debian_package redis-server redis-server  # the Redis tests start their own server
    shift
    .venv/bin/python -m pytest "$@"
    ;;
  bench)
    ensure_venv
    ensure_debian_package redis-server redis-server
    ensure_debian_package etcd etcd-server
    shift
    .venv/bin/python benchmarks/raft_bench.py "$@"
    .venv/bin/python benchmarks/redis_bench.py
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo | test [pytest args] | bench [raft_bench args]" >&2
    exit 2
    ;;
esac
