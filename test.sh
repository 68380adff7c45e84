#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests talk to (curl, openssl,
# redis-server, postgresql, python3 — Debian packages; the tests start their own servers on free
# loopback ports, PostgreSQL as the `postgres` user),
# then runs `cargo test` with any arguments given (e.g. ./test.sh fleet_limits).
set -euo pipefail
cd "$(dirname "$0")"

need=()
for tool in curl:curl openssl:openssl redis-server:redis-server python3:python3; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends ca-certificates "${need[@]}"
  # Debian starts the packaged servers as services; the tests do not use them.
  if command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable --now redis-server postgresql >/dev/null 2>&1 || true
  fi
fi

# The benchmark report's statistics (benches/load/report.py) have tests of their own.
python3 -m unittest discover -q -s benches/load -p 'test_*.py'
exec cargo test "$@"
