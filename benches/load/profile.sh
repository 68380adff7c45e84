#!/usr/bin/env bash
# Keep-alive cost of certgate alone, for the before/after of one change (issue 18): CPU time per
# request and req/s on (a) HTTP/1.1 keep-alive, 64 connections and (c) HTTP/2, 8 connections x
# 16 streams — medians of ROUNDS runs of DURATION each — and, with --perf, a `perf record -g`
# profile of (a) whose top functions (self time) land in target/profile-a.txt. After the load
# it prints RSS (idle, right after, 12 s and 40 s later) and how much machine code is resident
# (resident.py; by crate in target/resident-SIDE.txt).
#
#   bash benches/load/profile.sh [--rounds N] [--duration 8s] [--perf] [--threads N] [--peers]
#                                [--baseline PATH] [--env VAR=VALUE] [--baseline-env VAR=VALUE]
#
# --baseline runs a second certgate binary (say, built from the commit before a change) beside
# the one just built, alternating round by round, and prints both with the ratio: a before/after
# from one run, which the machine's drift cannot fake. --env / --baseline-env set an environment
# variable for one side (to compare settings of one binary: --baseline target/release/certgate).
# --peers adds three sides, each pinned like certgate: nginx and HAProxy configured as in run.sh,
# and "floor", `certgate-bench floor` (examples/certgate-bench/floor.rs): a bare mTLS proxy on
# certgate's own stack (tokio, hyper, rustls) that does nothing per request but forward with
# one identity header, so what certgate's stack costs before any of certgate's work. Ratios are
# then against nginx, and the CPU is split into user space and kernel.
# Same setup as run.sh: ECDSA P-256, CRL loaded, certgate pinned to CPU 0 with one worker thread
# (--threads changes it), oha and the upstream on CPU 1. Loopback only, bounded in time.
set -euo pipefail
ROUNDS=3 DURATION=8s PERF=0 THREADS=1 BASELINE="" NEW_ENV=() BASE_ENV=() PEERS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) PEERS=1 ;;
    --baseline) BASELINE=$(realpath "$2"); shift ;;
    --env) NEW_ENV+=("$2"); shift ;;
    --baseline-env) BASE_ENV+=("$2"); shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --perf) PERF=1 ;;
    --threads) THREADS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=benches/load/common.sh
source "$(dirname "$0")/common.sh"
make_pki
UP=127.0.0.1:19280
config() { # $1 = listener port, $2 = admin port
cat <<EOF
$(bench_config "$1" "$2" "$UP")
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOF
}
taskset -c "$LOAD_CPU" "$HELPER" upstream --bind "$UP" & PIDS+=($!)
declare -A PID PORT
start() { # $1 = side, $2 = binary, $3 = port, $4 = admin port, rest = VAR=VALUE
  local side=$1 bin=$2 port=$3 admin=$4
  shift 4
  config "$port" "$admin" > "$side.toml"
  env TOKIO_WORKER_THREADS="$THREADS" "$@" taskset -c "$PROXY_CPU" "$bin" run --config "$side.toml" > "$side.log" 2>&1 &
  PID[$side]=$!; PORT[$side]=$port; PIDS+=($!)
  wait_ready "127.0.0.1:$admin" "$side.log"
}
SIDES=(new)
start new "$CERTGATE" 19643 19691 "${NEW_ENV[@]}"
if [ -n "$BASELINE" ]; then
  start base "$BASELINE" 19644 19692 "${BASE_ENV[@]}"
  SIDES=(base new)
fi
tls_opts=(--cacert ca.pem --cert client.pem --key client-key.pem)
if [ "$PEERS" = 1 ]; then
  # shellcheck source=benches/load/peers.sh
  source "$ROOT/benches/load/peers.sh"
  write_nginx_conf 127.0.0.1:19645 "$UP" 1024 "master_process off;"
  write_haproxy_cfg 127.0.0.1:19646 "$UP" 1024
  peer() { # $1 = side, $2 = port, rest = the command
    local side=$1 port=$2
    shift 2
    taskset -c "$PROXY_CPU" "$@" > "$side.log" 2>&1 &
    PID[$side]=$!; PORT[$side]=$port; PIDS+=($!)
    for _ in $(seq 100); do curl -sf "${tls_opts[@]}" "https://localhost:$port/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
    cat "$side.log" >&2; exit 1
  }
  peer floor 19647 "$HELPER" floor --bind 127.0.0.1:19647 --upstream "$UP" --dir "$WORK"
  peer nginx 19645 nginx -c "$WORK/nginx.conf"
  peer haproxy 19646 haproxy -f "$WORK/haproxy.cfg"
  SIDES+=(floor nginx haproxy)
fi
# shellcheck source=benches/load/cpu.sh
source "$ROOT/benches/load/cpu.sh"
run() { # $1 = side, rest = oha options; prints "rps cpu_ns_per_request p99_ms user_ns kernel_ns"
  local side=$1 c0 c1 t0 t1 out u0 k0 u1 k1
  shift
  c0=$(cpu_ns "${PID[$side]}"); t0=$(cpu_ticks "${PID[$side]}")
  out=$(taskset -c "$LOAD_CPU" oha -z "$DURATION" --no-tui --output-format json "$@" "${tls_opts[@]}" "https://localhost:${PORT[$side]}/bench" 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); n=sum(d.get("statusCodeDistribution",{}).values()); print("%.0f %d %.3f" % (d["summary"]["requestsPerSec"], n, (d["latencyPercentiles"].get("p99") or 0)*1e3))')
  c1=$(cpu_ns "${PID[$side]}"); t1=$(cpu_ticks "${PID[$side]}")
  read -r rps n p99 <<<"$out"
  read -r u0 k0 <<<"$t0"; read -r u1 k1 <<<"$t1"
  n=$((n > 0 ? n : 1))
  echo "$rps $(( (c1 - c0) / n )) $p99 $(( (u1 - u0) * TICK_NS / n )) $(( (k1 - k0) * TICK_NS / n ))"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss() { awk '/^VmRSS/ {t = $2} /^RssAnon/ {a = $2} END {printf "%.1f MB (anonymous %.1f)", t/1024, a/1024}' "/proc/${PID[$1]}/status"; }
declare -A IDLE
for side in "${SIDES[@]}"; do IDLE[$side]=$(rss "$side"); done
declare -A RES
for side in "${SIDES[@]}"; do run "$side" -c 64 >/dev/null; done  # warm-up
for r in $(seq "$ROUNDS"); do
  for side in "${SIDES[@]}"; do
    read -r rps cpu p99 usr sys <<<"$(run "$side" -c 64)"; RES[$side.a]+=" $rps/$cpu/$p99/$usr/$sys"
    echo "round $r $side (a): $rps req/s, $cpu ns/request (user $usr, kernel $sys), p99 $p99 ms" >&2
  done
  for side in "${SIDES[@]}"; do
    read -r rps cpu p99 usr sys <<<"$(run "$side" -c 8 -p 16 --http2)"; RES[$side.c]+=" $rps/$cpu/$p99/$usr/$sys"
    echo "round $r $side (c): $rps req/s, $cpu ns/request (user $usr, kernel $sys), p99 $p99 ms" >&2
  done
done
field() { tr ' ' '\n' | grep . | cut -d/ -f"$1" | median; }
declare -A MED
for side in "${SIDES[@]}"; do
  for sc in a c; do
    for i in 1 2 3 4 5; do MED[$side.$sc.$i]=$(echo "${RES[$side.$sc]}" | field "$i"); done
  done
done
# Ratios against the baseline, or with --peers against nginx (CPU, then its user and kernel parts).
REF=""
if [ -n "$BASELINE" ]; then REF=base; fi
if [ "$PEERS" = 1 ]; then REF=nginx; fi
echo
echo "| scenario | side | req/s | CPU per request | user space | kernel | p99 |"
echo "|---|---|---:|---:|---:|---:|---:|"
for sc in a c; do
  if [ "$sc" = a ]; then label="(a) HTTP/1.1 keep-alive, 64 conns"; else label="(c) HTTP/2, 8 conns x 16 streams"; fi
  for side in "${SIDES[@]}"; do
    cells=()
    for i in 2 4 5; do
      cell=$(awk -v v="${MED[$side.$sc.$i]}" 'BEGIN { printf "%.1f µs", v / 1000 }')
      if [ -n "$REF" ] && [ "$side" != "$REF" ]; then
        cell+=$(awk -v n="${MED[$side.$sc.$i]}" -v b="${MED[$REF.$sc.$i]}" 'BEGIN { if (b > 0) printf " (%.2fx)", n / b }')
      fi
      cells+=("$cell")
    done
    printf '| %s | %s | %s | %s | %s | %s | %s ms |\n' "$label" "$side" "${MED[$side.$sc.1]}" \
      "${cells[0]}" "${cells[1]}" "${cells[2]}" "${MED[$side.$sc.3]}"
  done
done
declare -A AFTER
for side in "${SIDES[@]}"; do AFTER[$side]=$(rss "$side"); done
sleep 12
declare -A LATER
for side in "${SIDES[@]}"; do
  LATER[$side]=$(rss "$side")
  cp "/proc/${PID[$side]}/smaps" "$ROOT/target/smaps-$side.txt"
  python3 "$ROOT/benches/load/resident.py" "${PID[$side]}" > "$ROOT/target/resident-$side.txt" || true
done
# Idle upstream connections left by the load are closed half at a time every 5 s.
sleep 28
for side in "${SIDES[@]}"; do
  echo "RSS ($side): idle ${IDLE[$side]}, after load ${AFTER[$side]}, 12 s later ${LATER[$side]}, 40 s later $(rss "$side")"
  echo "  $(head -n 1 "$ROOT/target/resident-$side.txt")"
done
echo "where the RSS is (12 s after load): $(printf 'target/smaps-%s.txt ' "${SIDES[@]}"), resident code by crate: $(printf 'target/resident-%s.txt ' "${SIDES[@]}")"
if [ "$PERF" = 1 ]; then
  perf record -q --call-graph dwarf,32768 -p "${PID[new]}" -o "$ROOT/target/perf-a.data" -- sleep 3 >/dev/null 2>&1 &
  perf_pid=$!
  run new -c 64 >/dev/null
  wait "$perf_pid" || true
  { perf report -i "$ROOT/target/perf-a.data" --no-children --sort symbol --stdio 2>/dev/null || true; } \
    | grep -E '^ +[0-9]' | head -n 60 > "$ROOT/target/profile-a.txt" || true
  { perf report -i "$ROOT/target/perf-a.data" --children --sort symbol --stdio -g none 2>/dev/null || true; } \
    | grep -E '^ +[0-9]' | head -n 100 > "$ROOT/target/profile-a-children.txt" || true
  echo "profile: target/profile-a.txt (self), target/profile-a-children.txt (inclusive), target/perf-a.data"
fi
