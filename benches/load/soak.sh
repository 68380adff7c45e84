#!/usr/bin/env bash
# Soak: certgate under bounded mixed traffic for SECONDS (default 600) — HTTP/1.1 keep-alive
# clients (GET and 1 KiB POST), HTTP/2 connections with 8 streams each, WebSocket echo clients,
# and 40 slowloris connections (half trickling bytes before the TLS handshake, half inside a
# request head) — while the admin listener is asked to reload every 10 s and the CRL file is
# replaced with a new one (one more revoked certificate) every 30 s, picked up by the file
# watcher. Every 10 s: the gateway's RSS and descriptors and what each client saw; at the end a
# Markdown table (also written to target/soak.md). Exit status 1 when a well-behaved client saw
# an error or a reload failed. Loopback only; not part of CI.
#
#   bash benches/load/soak.sh [SECONDS]
set -euo pipefail
SECONDS_TOTAL=${1:-600}
# shellcheck source=benches/load/common.sh
source "$(dirname "$0")/common.sh"
make_pki

UP=127.0.0.1:19180 WS=127.0.0.1:19181 CG=127.0.0.1:19543 ADMIN=127.0.0.1:19591
cat > certgate.toml <<EOF
[listener]
bind = "$CG"
cert = "server.pem"
key = "server-key.pem"
handshake_timeout = "5s"
header_read_timeout = "5s"
max_connections_per_identity = 0
[client_auth]
mode = "require"
trust_store = ["ca.pem"]
crls = ["ca.crl"]
[admin]
bind = "$ADMIN"
[log]
level = "warn"
[reload]
watch = true
[expiry]
warning_window = "1d"
[upstreams.app]
url = "http://$UP"
[upstreams.ws]
url = "http://$WS"
[[routes]]
name = "ws"
path_prefix = "/ws"
upstream = "ws"
allow = [{ uri = "spiffe://bench/loadgen" }]
[[routes]]
name = "soak"
path_prefix = "/soak"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOF

taskset -c "$LOAD_CPU" "$HELPER" upstream --bind "$UP" --ws-bind "$WS" & PIDS+=($!)
taskset -c "$PROXY_CPU" "$CERTGATE" run --config certgate.toml > certgate.log 2>&1 & GW=$!; PIDS+=($GW)
wait_ready "$ADMIN" certgate.log

# A new CRL every 30 s: one more (unused) certificate revoked, the file replaced atomically.
(
  for i in $(seq $(( SECONDS_TOTAL / 30 ))); do
    sleep 30
    issue "victim$i" "/CN=victim$i" "extendedKeyUsage=clientAuth\n"
    openssl ca -config ca.cnf -cert ca.pem -keyfile ca-key.pem -revoke "victim$i.pem" 2>/dev/null
    openssl ca -config ca.cnf -cert ca.pem -keyfile ca-key.pem -gencrl -out ca.crl.new 2>/dev/null
    mv ca.crl.new ca.crl
    echo "CRL update $i: $(grep -c '^R' index.txt) revoked" >&2
  done
) & PIDS+=($!)

set +e
taskset -c "$LOAD_CPU" "$HELPER" soak --connect "$CG" --admin "$ADMIN" --pid "$GW" \
  --ca ca.pem --cert client.pem --key client-key.pem --seconds "$SECONDS_TOTAL" | tee soak.out
status=${PIPESTATUS[0]}
set -e
{
  echo "Soak of ${SECONDS_TOTAL} s ($(date -u +%F), $(nproc) cores, certgate pinned to CPU $PROXY_CPU):"
  echo
  sed -n '/^| t (s)/,$p' soak.out
  echo
  echo "The gateway's reloads (admin and CRL file watcher), its limit hits and handshake failures:"
  echo
  curl -s "http://$ADMIN/metrics" | grep -E '^certgate_(config_reloads_total|limit_hits_total|tls_handshakes_total)' \
    | grep -v ' 0$' | sed 's/^/    /' || true
  echo
  echo "gateway WARN/ERROR lines: $(grep -c '"level":"\(WARN\|ERROR\)"' certgate.log || true)"
  grep -o '"message":"[^"]*"' certgate.log | sort | uniq -c | sort -rn | head -n 10 | sed 's/^/    /' || true
} > "$ROOT/target/soak.md"
cat "$ROOT/target/soak.md"
exit "$status"
