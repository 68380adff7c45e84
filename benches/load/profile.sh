#!/usr/bin/env bash
# Keep-alive cost of certgate alone, for the before/after of one change (issue 18): CPU time per
# request and req/s on (a) HTTP/1.1 keep-alive, 64 connections and (c) HTTP/2, 8 connections x
# 16 streams — medians of ROUNDS runs of DURATION each — and, with --perf, a `perf record -g`
# profile of (a) whose top functions (self time) land in target/profile-a.txt. After the load
# it prints RSS (idle, right after, 12 s and 40 s later) and how much machine code is resident
# (resident.py; by crate in target/resident-SIDE.txt).
#
#   bash benches/load/profile.sh [--rounds N] [--duration 8s] [--perf] [--threads N]
#                                [--baseline PATH] [--env VAR=VALUE] [--baseline-env VAR=VALUE]
#
# --baseline runs a second certgate binary (say, built from the commit before a change) beside
# the one just built, alternating round by round, and prints both with the ratio: a before/after
# from one run, which the machine's drift cannot fake. --env / --baseline-env set an environment
# variable for one side (to compare settings of one binary: --baseline target/release/certgate).
# Same setup as run.sh: ECDSA P-256, CRL loaded, certgate pinned to CPU 0 with one worker thread
# (--threads changes it), oha and the upstream on CPU 1. Loopback only, bounded in time.
set -euo pipefail
ROUNDS=3 DURATION=8s PERF=0 THREADS=1 BASELINE="" NEW_ENV=() BASE_ENV=()
while [ $# -gt 0 ]; do
  case "$1" in
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
cpu_ns() { local sum=0 f; for f in /proc/"$1"/task/*/schedstat; do sum=$((sum + $(cut -d' ' -f1 "$f"))); done; echo "$sum"; }
run() { # $1 = side, rest = oha options; prints "rps cpu_ns_per_request p99_ms"
  local side=$1 c0 c1 out
  shift
  c0=$(cpu_ns "${PID[$side]}")
  out=$(taskset -c "$LOAD_CPU" oha -z "$DURATION" --no-tui --output-format json "$@" "${tls_opts[@]}" "https://localhost:${PORT[$side]}/bench" 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); n=sum(d.get("statusCodeDistribution",{}).values()); print("%.0f %d %.3f" % (d["summary"]["requestsPerSec"], n, (d["latencyPercentiles"].get("p99") or 0)*1e3))')
  c1=$(cpu_ns "${PID[$side]}")
  read -r rps n p99 <<<"$out"
  echo "$rps $(( (c1 - c0) / (n > 0 ? n : 1) )) $p99"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rss() { awk '/^VmRSS/ {t = $2} /^RssAnon/ {a = $2} END {printf "%.1f MB (anonymous %.1f)", t/1024, a/1024}' "/proc/${PID[$1]}/status"; }
declare -A IDLE
for side in "${SIDES[@]}"; do IDLE[$side]=$(rss "$side"); done
declare -A RES
for side in "${SIDES[@]}"; do run "$side" -c 64 >/dev/null; done  # warm-up
for r in $(seq "$ROUNDS"); do
  for side in "${SIDES[@]}"; do
    read -r rps cpu p99 <<<"$(run "$side" -c 64)"; RES[$side.a]+=" $rps/$cpu/$p99"
    echo "round $r $side (a): $rps req/s, $cpu ns/request, p99 $p99 ms" >&2
  done
  for side in "${SIDES[@]}"; do
    read -r rps cpu p99 <<<"$(run "$side" -c 8 -p 16 --http2)"; RES[$side.c]+=" $rps/$cpu/$p99"
    echo "round $r $side (c): $rps req/s, $cpu ns/request, p99 $p99 ms" >&2
  done
done
field() { tr ' ' '\n' | grep . | cut -d/ -f"$1" | median; }
declare -A MED
for side in "${SIDES[@]}"; do
  for sc in a c; do
    for i in 1 2 3; do MED[$side.$sc.$i]=$(echo "${RES[$side.$sc]}" | field "$i"); done
  done
done
echo
echo "| scenario | side | req/s | CPU per request | p99 |"
echo "|---|---|---:|---:|---:|"
for sc in a c; do
  if [ "$sc" = a ]; then label="(a) HTTP/1.1 keep-alive, 64 conns"; else label="(c) HTTP/2, 8 conns x 16 streams"; fi
  for side in "${SIDES[@]}"; do
    ratio=""
    if [ "$side" = new ] && [ -n "$BASELINE" ]; then
      ratio=$(awk -v n="${MED[new.$sc.2]}" -v b="${MED[base.$sc.2]}" 'BEGIN { printf " (%.2fx)", n / b }')
    fi
    printf '| %s | %s | %s | %.1f µs%s | %s ms |\n' "$label" "$side" "${MED[$side.$sc.1]}" \
      "$(awk -v v="${MED[$side.$sc.2]}" 'BEGIN { print v / 1000 }')" "$ratio" "${MED[$side.$sc.3]}"
  done
done
declare -A AFTER
for side in "${SIDES[@]}"; do AFTER[$side]=$(rss "$side"); done
sleep 12
declare -A LATER
for side in "${SIDES[@]}"; do
  LATER[$side]=$(rss "$side")
  cp "/proc/${PID[$side]}/smaps" "$ROOT/target/smaps-$side.txt"
  python3 "$ROOT/benches/load/resident.py" "${PID[$side]}" > "$ROOT/target/resident-$side.txt"
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
