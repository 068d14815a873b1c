#!/usr/bin/env bash
# Azurite, the Azure Blob emulator of the storage tests, pinned by package-lock.json. `make test-deps` runs
# this; running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null; then
  echo "tests/emulators: npm is missing; it installs Azurite from package-lock.json" >&2
  exit 1
fi
# npm ci starts from an empty node_modules: only when the lockfile changed since the last install.
if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi
