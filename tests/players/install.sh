#!/usr/bin/env bash
# What the browser playback tests (tests/players) need beyond the Python dev extras: Debian's chromium and
# the player libraries pinned by package-lock.json. `make test` runs this; running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "tests/players: installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "tests/players: Debian's chromium (/usr/bin/chromium) is missing; as root: apt-get install chromium" >&2
    exit 1
  fi
fi

if ! command -v npm >/dev/null; then
  echo "tests/players: npm is missing; it installs hls.js, dash.js and shaka-player from package-lock.json" >&2
  exit 1
fi
# npm ci starts from an empty node_modules: only when the lockfile changed since the last install.
if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi
