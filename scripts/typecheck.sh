#!/usr/bin/env bash
# Type-check the installed layout: mypy cannot follow setuptools' editable finder, so build
# a tree of symlinks where wire/ is dref/wire, storage/ is dref/storage, and so on.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree/dref"
for entry in dref/*; do ln -s "$PWD/$entry" "$tree/dref/$(basename "$entry")"; done
for folder in actors storage wire compat; do ln -s "$PWD/$folder" "$tree/dref/$folder"; done
cd "$tree" && ../../.venv/bin/mypy --config-file ../../pyproject.toml -p dref "$@"
