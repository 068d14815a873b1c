#!/usr/bin/env bash
# The console's player libraries (hls.js, dash.js) pinned by package-lock.json, installed into node_modules
# here and served by the API under /console/vendor. Without npm the console still works: its job page says
# the in-page player is not installed. Running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null; then
  echo "framefleet/console/vendor: npm is missing; the console's in-page player stays off" >&2
  exit 0
fi
# npm ci starts from an empty node_modules: only when the lockfile changed since the last install.
if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi
