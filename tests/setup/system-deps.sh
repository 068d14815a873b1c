#!/usr/bin/env bash
# What `make test` needs from the system, installed when missing: PostgreSQL's server binaries (the suite's
# second pass runs on a throwaway cluster), Prometheus (promtool checks the alert rules; the server scrapes a
# real stack in tests/integration/test_prometheus.py) and haproxy (the load balancer of tests/cluster). Installs with apt-get when run as root; otherwise it says what is
# missing and fails, so the suite never skips a part silently.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "make test needs these system packages: ${missing[*]} (apt-get install ${missing[*]}, as root)" >&2
  exit 1
fi
echo "installing system packages for the test suite: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
