#!/usr/bin/env bash
# Keep-alive cost of certgate alone, for the before/after of one change (issue 18): CPU time per
# request and req/s on (a) HTTP/1.1 keep-alive, 64 connections and (c) HTTP/2, 8 connections x
# 16 streams — medians of ROUNDS runs of DURATION each — and, with --perf, a `perf record -g`
# profile of (a) whose top functions (self time) land in target/profile-a.txt.
#
#   bash benches/load/profile.sh [--rounds N] [--duration 8s] [--perf] [--threads N]
#
# Same setup as run.sh: ECDSA P-256, CRL loaded, certgate pinned to CPU 0 with one worker thread
# (--threads changes it), oha and the upstream on CPU 1. Loopback only, bounded in time.
set -euo pipefail
ROUNDS=3 DURATION=8s PERF=0 THREADS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --perf) PERF=1 ;;
    --threads) THREADS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
cargo build --release --locked --bin certgate --example certgate-bench 2>&1 | tail -n 1 >&2
CERTGATE="$ROOT/target/release/certgate"
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
make_pki
UP=127.0.0.1:19280 CG=127.0.0.1:19643 ADMIN=127.0.0.1:19691
cat > certgate.toml <<EOF
[listener]
bind = "$CG"
cert = "server.pem"
key = "server-key.pem"
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
watch = false
[expiry]
warning_window = "1d"
[upstreams.app]
url = "http://$UP"
retries = 0
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOF
taskset -c "$LOAD_CPU" "$HELPER" upstream --bind "$UP" & PIDS+=($!)
TOKIO_WORKER_THREADS=$THREADS taskset -c "$PROXY_CPU" "$CERTGATE" run --config certgate.toml > certgate.log 2>&1 & CG_PID=$!; PIDS+=($CG_PID)
for _ in $(seq 100); do curl -sf "http://$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
tls_opts=(--cacert ca.pem --cert client.pem --key client-key.pem)
URL="https://localhost:${CG##*:}/bench"
cpu_ns() { local sum=0 f; for f in /proc/"$CG_PID"/task/*/schedstat; do sum=$((sum + $(cut -d' ' -f1 "$f"))); done; echo "$sum"; }
run() { # $1 = label, rest = oha options; prints "rps cpu_ns_per_request p99_ms"
  local c0 c1 out
  c0=$(cpu_ns)
  out=$(taskset -c "$LOAD_CPU" oha -z "$DURATION" --no-tui --output-format json "$@" "${tls_opts[@]}" "$URL" 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); n=sum(d.get("statusCodeDistribution",{}).values()); print("%.0f %d %.3f" % (d["summary"]["requestsPerSec"], n, (d["latencyPercentiles"].get("p99") or 0)*1e3))')
  c1=$(cpu_ns)
  read -r rps n p99 <<<"$out"
  echo "$rps $(( (c1 - c0) / (n > 0 ? n : 1) )) $p99"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run a -c 64 >/dev/null  # warm-up
declare -a A_RPS A_CPU A_P99 C_RPS C_CPU C_P99
for r in $(seq "$ROUNDS"); do
  read -r rps cpu p99 <<<"$(run a -c 64)"; A_RPS+=("$rps"); A_CPU+=("$cpu"); A_P99+=("$p99")
  read -r rps cpu p99 <<<"$(run c -c 8 -p 16 --http2)"; C_RPS+=("$rps"); C_CPU+=("$cpu"); C_P99+=("$p99")
  echo "round $r: a ${A_RPS[-1]} req/s ${A_CPU[-1]} ns/req; c ${C_RPS[-1]} req/s ${C_CPU[-1]} ns/req" >&2
done
printf '(a) HTTP/1.1 keep-alive x64: %s req/s, %.1f µs CPU/request, p99 %s ms\n' \
  "$(printf '%s\n' "${A_RPS[@]}" | median)" "$(printf '%s\n' "${A_CPU[@]}" | median | awk '{print $1/1000}')" "$(printf '%s\n' "${A_P99[@]}" | median)"
printf '(c) HTTP/2 8x16:             %s req/s, %.1f µs CPU/request, p99 %s ms\n' \
  "$(printf '%s\n' "${C_RPS[@]}" | median)" "$(printf '%s\n' "${C_CPU[@]}" | median | awk '{print $1/1000}')" "$(printf '%s\n' "${C_P99[@]}" | median)"
echo "RSS after load: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$CG_PID/status)"
if [ "$PERF" = 1 ]; then
  perf record -q -g -p "$CG_PID" -o perf.data -- sleep 6 >/dev/null 2>&1 &
  perf_pid=$!
  run a -c 64 >/dev/null
  wait "$perf_pid" || true
  perf report -i perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n 60 > "$ROOT/target/profile-a.txt"
  perf report -i perf.data --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n 80 > "$ROOT/target/profile-a-children.txt"
  echo "profile: target/profile-a.txt (self), target/profile-a-children.txt (inclusive)"
fi
