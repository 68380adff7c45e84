#!/usr/bin/env bash
# User-space instructions per keep-alive request under callgrind, for each certgate binary given
# (default: target/release/certgate): (a) HTTP/1.1, 4 connections; (c) HTTP/2, 4 connections x
# 8 streams; 3,000 requests each after a warm-up. Unlike CPU time on a shared machine, the count
# does not drift, so it shows what a change to certgate's own code saves (the kernel's loopback
# TCP, about half the real cost, is not in it). Needs valgrind, oha, openssl, curl.
#
#   bash benches/load/instructions.sh [BINARY...]
# KEEP=DIR keeps each binary's callgrind dumps there (for callgrind_annotate).
set -euo pipefail
BINARIES=()
for b in "$@"; do BINARIES+=("$(realpath "$b")"); done
# shellcheck source=benches/load/common.sh
source "$(dirname "$0")/common.sh"
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=("$CERTGATE")
make_pki
cat > certgate.toml <<EOT
[listener]
bind = "127.0.0.1:19743"
cert = "server.pem"
key = "server-key.pem"
[client_auth]
mode = "require"
trust_store = ["ca.pem"]
crls = ["ca.crl"]
[admin]
bind = "127.0.0.1:19792"
[log]
level = "warn"
[reload]
watch = false
[expiry]
warning_window = "1d"
[upstreams.app]
url = "http://127.0.0.1:19781"
retries = 0
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOT
"$HELPER" upstream --bind 127.0.0.1:19781 & PIDS+=($!)
T=(--cacert ca.pem --cert client.pem --key client-key.pem)
N=3000
URL=https://localhost:19743/bench
echo "| binary | (a) HTTP/1.1 instructions per request | (c) HTTP/2 instructions per request |"
echo "|---|---:|---:|"
for bin in "${BINARIES[@]}"; do
  rm -f cg.*
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p.out" "$bin" run --config certgate.toml > cg.log 2>&1 &
  CG=$!
  for _ in $(seq 1 300); do curl -sf "${T[@]}" "$URL" >/dev/null 2>&1 && break; sleep 0.5; done
  oha -n "$N" -c 4 --no-tui "${T[@]}" "$URL" >/dev/null 2>&1   # warm-up
  oha -n "$N" -c 4 -p 8 --http2 --no-tui "${T[@]}" "$URL" >/dev/null 2>&1
  per_request() { # oha args; prints instructions per request
    callgrind_control -z "$CG" >/dev/null 2>&1
    oha -n "$N" --no-tui "$@" "${T[@]}" "$URL" >/dev/null 2>&1
    callgrind_control -d "$CG" >/dev/null 2>&1
    sleep 1
    local f
    f=$(ls -t cg.*.out.* | head -n 1)
    awk -v n="$N" '/^(summary|totals):/ { printf "%.0f", $2 / n; exit }' "$f"
  }
  a=$(per_request -c 4)
  c=$(per_request -c 4 -p 8 --http2)
  kill "$CG" 2>/dev/null || true
  wait "$CG" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP/$(basename "$bin")" && cp cg.*.out.* "$KEEP/$(basename "$bin")/"; fi
  printf '| %s | %s | %s |\n' "$(basename "$bin")" "$a" "$c"
done
