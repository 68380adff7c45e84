#!/usr/bin/env bash
# User-space instructions per keep-alive request under callgrind, for each certgate binary given
# (default: target/release/certgate): (a) HTTP/1.1, 4 connections; (c) HTTP/2, 4 connections x
# 8 streams; 3,000 requests each after a warm-up. Unlike CPU time on a shared machine, the count
# does not drift, so it shows what a change to certgate's own code saves (the kernel's loopback
# TCP, about half the real cost, is not in it). Needs valgrind, oha, openssl, curl.
#
#   bash benches/load/instructions.sh [--peers] [--syscalls] [--cache] [BINARY...]
# --peers measures nginx and HAProxy the same way (one process each, configured as in run.sh:
# client certificate required and checked against the CA and its CRL, identity headers added,
# keep-alive to the same upstream): a drift-free comparison of the work each does per request;
# and `certgate-bench floor` (examples/certgate-bench/floor.rs), a bare proxy on certgate's stack
# that does nothing per request but forward with one identity header: the stack's own floor.
# --syscalls counts system calls instead (strace -c attached for 6,000 HTTP/1.1 requests on 4
# connections, then 6,000 HTTP/2 requests on 8 connections x 16 streams), printing each table.
# --cache adds callgrind's simulated caches: each cell becomes "instructions / L1i + L1d misses /
# last-level misses" per request (a model of this CPU's caches, not a measurement: for comparing
# programs where no hardware counters exist); the L1 misses are split into code and data misses.
# KEEP=DIR keeps each binary's callgrind dumps there (for callgrind_annotate).
set -euo pipefail
BINARIES=() PEERS=0 SYSCALLS=0 CACHE=()
for b in "$@"; do
  case "$b" in
    --peers) PEERS=1 ;;
    --syscalls) SYSCALLS=1 ;;
    --cache) CACHE=(--cache-sim=yes) ;;
    *) BINARIES+=("$(realpath "$b")") ;;
  esac
done
# shellcheck source=benches/load/common.sh
source "$(dirname "$0")/common.sh"
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=("$CERTGATE")
make_pki
cat > certgate.toml <<EOT
$(bench_config 19743 19792 127.0.0.1:19781)
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOT
"$HELPER" upstream --bind 127.0.0.1:19781 & PIDS+=($!)
T=(--cacert ca.pem --cert client.pem --key client-key.pem)
N=3000
measure() { # $1 = label, $2 = port, rest = the program and its arguments
  local label=$1 url="https://localhost:$2/bench" cg a c
  shift 2
  rm -f cg.*
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind "${CACHE[@]}" --callgrind-out-file="$WORK/cg.%p.out" "$@" > cg.log 2>&1 &
  cg=$!
  for _ in $(seq 1 300); do curl -sf "${T[@]}" "$url" >/dev/null 2>&1 && break; sleep 0.5; done
  oha -n "$N" -c 4 --no-tui "${T[@]}" "$url" >/dev/null 2>&1   # warm-up
  oha -n "$N" -c 4 -p 8 --http2 --no-tui "${T[@]}" "$url" >/dev/null 2>&1
  per_request() { # oha args; prints instructions (and with --cache, misses) per request
    callgrind_control -z "$cg" >/dev/null 2>&1
    oha -n "$N" --no-tui "$@" "${T[@]}" "$url" >/dev/null 2>&1
    callgrind_control -d "$cg" >/dev/null 2>&1
    sleep 1
    local f
    f=$(ls -t cg.*.out.* | head -n 1)
    # Events: Ir, then with the cache model Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
    awk -v n="$N" '/^(summary|totals):/ {
      if (NF >= 10) printf "%.0f / %.0f + %.0f / %.0f", $2 / n, $5 / n, ($6 + $7) / n, ($8 + $9 + $10) / n
      else printf "%.0f", $2 / n
      exit }' "$f"
  }
  a=$(per_request -c 4)
  c=$(per_request -c 4 -p 8 --http2)
  kill "$cg" 2>/dev/null || true
  wait "$cg" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP/$label" && cp cg.*.out.* "$KEEP/$label/"; fi
  printf '| %s | %s | %s |\n' "$label" "$a" "$c"
}
count_syscalls() { # $1 = label, $2 = port, rest = the program and its arguments
  local label=$1 url="https://localhost:$2/bench" pid
  shift 2
  TOKIO_WORKER_THREADS=1 "$@" > st.log 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do curl -sf "${T[@]}" "$url" >/dev/null 2>&1 && break; sleep 0.5; done
  oha -n "$N" -c 4 --no-tui "${T[@]}" "$url" >/dev/null 2>&1   # warm-up
  traced() { # $1 = what, rest = oha args
    local what=$1 st
    shift
    strace -f -c -p "$pid" -o "$WORK/st.txt" 2>/dev/null &
    st=$!
    sleep 1
    oha -n 6000 --no-tui "$@" "${T[@]}" "$url" >/dev/null 2>&1
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    echo "== $label: system calls during 6000 $what"
    head -n 12 "$WORK/st.txt"
  }
  traced "HTTP/1.1 requests on 4 connections" -c 4
  traced "HTTP/2 requests on 8 connections x 16 streams" -c 8 -p 16 --http2
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
if [ "$SYSCALLS" = 1 ]; then
  measure() { count_syscalls "$@"; }
else
  echo "| program | (a) HTTP/1.1 instructions per request | (c) HTTP/2 instructions per request |"
  echo "|---|---:|---:|"
fi
for bin in "${BINARIES[@]}"; do
  measure "$(basename "$bin")" 19743 "$bin" run --config certgate.toml
done
[ "$PEERS" = 1 ] || exit 0
# shellcheck source=benches/load/peers.sh
source "$ROOT/benches/load/peers.sh"
write_nginx_conf 127.0.0.1:19744 127.0.0.1:19781 1024 "master_process off;"
write_haproxy_cfg 127.0.0.1:19745 127.0.0.1:19781 1024
measure "nginx $(nginx -v 2>&1 | sed 's|.*/||')" 19744 nginx -c "$WORK/nginx.conf"
measure "haproxy $(haproxy -v 2>/dev/null | head -n 1 | awk '{print $3}')" 19745 haproxy -db -f "$WORK/haproxy.cfg"
measure "floor (certgate-bench floor)" 19746 "$HELPER" floor --bind 127.0.0.1:19746 --upstream 127.0.0.1:19781 --dir "$WORK"
