# Sourced (after `set -euo pipefail`) by soak.sh, profile.sh and instructions.sh: a release build
# of certgate and its helper (CERTGATE, HELPER; CERTGATE_BIN=PATH measures another certgate binary,
# such as benches/load/pgo.sh's target/pgo/certgate), a work directory that is entered and removed on
# exit together with every process listed in PIDS (WORK, PIDS), the CPU split (certgate on
# PROXY_CPU, clients and upstream on LOAD_CPU), the throwaway PKI functions of pki.sh, and
# wait_ready ADMIN_ADDR LOG.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
(cd "$ROOT" && cargo build --release --locked --bin certgate --example certgate-bench 2>&1 | tail -n 1 >&2)
CERTGATE=$(realpath "${CERTGATE_BIN:-$ROOT/target/release/certgate}")
HELPER="$ROOT/target/release/examples/certgate-bench"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=0 LOAD_CPU=1; else PROXY_CPU=0 LOAD_CPU=0; fi
cd "$WORK"
# shellcheck source=benches/load/pki.sh
source "$ROOT/benches/load/pki.sh"

# Waits (up to 10 s) until the admin listener at $1 says ready; otherwise shows log $2, fails.
wait_ready() {
  for _ in $(seq 100); do curl -sf "http://$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$2" >&2
  exit 1
}
