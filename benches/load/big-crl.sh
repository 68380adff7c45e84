#!/usr/bin/env bash
# A CRL with COUNT entries against one with 10: how long certgate takes to start, its RSS, and
# what a new mTLS connection costs (curl, 20 sequential connections, one request each: the
# server verifies the client certificate, CRL included, before it answers). Loopback only.
#
#   bash benches/load/big-crl.sh [--pending] [COUNT]        # default 1000000
# Prints, for each CRL size: time until /ready answers, RSS after start (and its peak), the mean
# new-connection time, and what `certgate check` takes (time, peak RSS). With --pending the CRL
# is an intermediate's that only the client presents (trust store: the root; crls: the root's
# and the intermediate's), so it is verified on the first handshake instead of at load.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PENDING=()
CRLS='"ca.crl"'
if [ "${1:-}" = "--pending" ]; then
  PENDING=(--pending)
  CRLS='"root.crl", "ca.crl"'
  shift
fi
COUNT=${1:-1000000}
cd "$ROOT"
cargo build --release --locked --bin certgate --example certgate-bench 2>&1 | tail -n 1 >&2
CERTGATE="$ROOT/target/release/certgate"
HELPER="$ROOT/target/release/examples/certgate-bench"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$HELPER" upstream --bind 127.0.0.1:19845 & PIDS+=($!)
for n in 10 "$COUNT"; do
  dir="$WORK/crl-$n"
  "$HELPER" crl --dir "$dir" --count "$n" "${PENDING[@]}" >&2
  cat > "$dir/c.toml" <<EOT
[listener]
bind = "127.0.0.1:19843"
cert = "server.pem"
key = "server-key.pem"
[client_auth]
mode = "require"
trust_store = ["ca.pem"]
crls = [$CRLS]
[admin]
bind = "127.0.0.1:19844"
[log]
level = "warn"
[reload]
watch = false
[upstreams.app]
url = "http://127.0.0.1:19845"
[[routes]]
name = "all"
path_prefix = "/"
upstream = "app"
allow = [{ any = true }]
EOT
  cd "$dir"
  T=(--cacert ca.pem --cert client.pem --key client-key.pem)
  start=$(date +%s.%N)
  "$CERTGATE" run --config c.toml > run.log 2>&1 & pid=$!
  for _ in $(seq 1 400); do curl -sf -o /dev/null "${T[@]}" https://localhost:19843/ready && break; sleep 0.05; done
  ready=$(python3 -c "import time; print('%.2f' % (time.time() - $start))")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  total=0
  for _ in $(seq 1 20); do
    t=$(curl -s -o /dev/null -w "%{time_total}" "${T[@]}" https://localhost:19843/x)
    total=$(python3 -c "print($total + $t)")
  done
  echo "CRL entries $n: serving after ${ready} s, RSS $((rss / 1024)) MB (peak $((hwm / 1024)) MB), new connection + request $(python3 -c "print('%.1f' % ($total / 20 * 1000))") ms (mean of 20)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  /usr/bin/time -f "%e %M" -o check.time "$CERTGATE" check --config c.toml > /dev/null 2>&1 || true
  read -r secs kb < check.time
  echo "CRL entries $n: certgate check ${secs} s, peak RSS $((kb / 1024)) MB"
  cd "$ROOT"
done
