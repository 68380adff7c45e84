#!/usr/bin/env bash
# What a fleet-wide rate limit (backend = "redis") costs against the local one, in the same run:
# two certgate processes with the same route and a per-identity limit that never triggers, one
# counting locally, one in a real redis-server; HTTP/1.1 keep-alive. Reports req/s, CPU time per
# request (certgate, and Redis' own), and p50/p99 at a fixed rate. See BENCHMARKS.md.
#
#   bash benches/load/redis-limits.sh            # 3 rounds of 10 s per scenario
#   bash benches/load/redis-limits.sh --quick    # 1 round of 2 s
# Needs oha, openssl, curl, redis-server, taskset; run from anywhere. All traffic on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=10s ROUNDS=3 RATE=2000
[ "${1:-}" = --quick ] && DURATION=2s ROUNDS=1
cd "$ROOT"
cargo build --release --locked --bin certgate --example certgate-bench 2>&1 | tail -n 1 >&2
CERTGATE="$ROOT/target/release/certgate"
HELPER="$ROOT/target/release/examples/certgate-bench"
if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=0 LOAD_CPU=1; else PROXY_CPU=0 LOAD_CPU=0; fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
# shellcheck source=benches/load/pki.sh
source "$ROOT/benches/load/pki.sh"
make_pki

UP=127.0.0.1:19180 REDIS_PORT=19379
config() { # $1 = listener port, $2 = admin port, $3 = [limits] body
  cat <<EOT
$(bench_config "$1" "$2" "$UP")
[limits]
$3
[[routes]]
name = "limited"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
rate_limit = { requests = 10000000, per = "1s", key = "identity" }
EOT
}
config 19543 19903 'backend = "local"' > local.toml
config 19544 19904 "backend = \"redis\"
redis_url = \"redis://127.0.0.1:$REDIS_PORT/0\"" > redis.toml

taskset -c "$LOAD_CPU" "$HELPER" upstream --bind "$UP" & PIDS+=($!)
taskset -c "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$WORK" >redis-server.log 2>&1 & PIDS+=($!)
REDIS_PID=$!
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
declare -A PID
for mode in local redis; do
  RUST_LOG=warn,certgate::limits=info TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$CERTGATE" --log-format json run --config "$mode.toml" >"$mode.log" 2>&1 & PIDS+=($!)
  PID[$mode]=$!
done
declare -A PORT=([local]=19543 [redis]=19544)
T=(--cacert ca.pem --cert client.pem --key client-key.pem)
for mode in local redis; do
  for _ in $(seq 1 100); do curl -sf "${T[@]}" "https://localhost:${PORT[$mode]}/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "${T[@]}" "https://localhost:${PORT[$mode]}/ready" >/dev/null || { cat "$mode.log" >&2; exit 1; }
done
grep -q "counters are shared" redis.log || { echo "the redis gateway is not counting in Redis" >&2; cat redis.log >&2; exit 1; }

# shellcheck source=benches/load/cpu.sh
source "$ROOT/benches/load/cpu.sh"
oha_run() { # $1 = url, rest = oha options; prints "rps p50_ms p99_ms ok_share requests"
  local url=$1; shift
  taskset -c "$LOAD_CPU" oha -z "$DURATION" --no-tui --output-format json "$@" "${T[@]}" "$url" 2>/dev/null \
  | python3 -c '
import json, sys
d = json.load(sys.stdin)
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0); total = sum(codes.values()) or 1
print("%.0f %.3f %.3f %.4f %d" % (s["requestsPerSec"], (p.get("p50") or 0) * 1e3, (p.get("p99") or 0) * 1e3, ok / total, total))'
}
: > results.txt
for round in $(seq 1 "$ROUNDS"); do
  for mode in local redis; do
    url="https://localhost:${PORT[$mode]}/bench"
    c0=$(cpu_ns "${PID[$mode]}"); r0=$(cpu_ns "$REDIS_PID")
    read -r rps p50 p99 ok n <<<"$(oha_run "$url" -c 64)"
    c1=$(cpu_ns "${PID[$mode]}"); r1=$(cpu_ns "$REDIS_PID")
    echo "$round $mode a $rps $p50 $p99 $ok $(( (c1 - c0) / n )) $(( (r1 - r0) / n ))" | tee -a results.txt
    read -r rps p50 p99 ok n <<<"$(oha_run "$url" -c 16 -q "$RATE")"
    echo "$round $mode b $rps $p50 $p99 $ok 0 0" | tee -a results.txt
  done
done
errors=$(curl -s http://127.0.0.1:19904/metrics | awk '/^certgate_limit_backend_errors_total/ {s += $2} END {print s + 0}')
python3 - "$RATE" "$errors" results.txt <<'PY'
import sys
rate, errors, path = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [l.split() for l in open(path)]
def best(mode, sc, col, f):
    return f(float(r[col]) for r in rows if r[1] == mode and r[2] == sc)
print()
print("| HTTP/1.1 keep-alive | local | redis | redis / local |")
print("|---|---|---|---|")
for label, sc, col, f, unit in [
    ("max req/s (64 conns)", "a", 3, max, ""),
    ("certgate CPU per request (64 conns)", "a", 7, min, " µs"),
    ("redis-server CPU per request (64 conns)", "a", 8, min, " µs"),
    ("p50 at %s req/s (16 conns)" % rate, "b", 4, min, " ms"),
    ("p99 at %s req/s (16 conns)" % rate, "b", 5, min, " ms"),
]:
    l, r = best("local", sc, col, f), best("redis", sc, col, f)
    scale = 1000.0 if unit == " µs" else 1.0
    l, r = l / scale, r / scale
    fmt = "%.0f" if unit == "" else "%.1f" if unit == " µs" else "%.3f"
    cell = lambda v: (fmt % v) + unit
    print("| %s | %s | %s | %s |" % (label, cell(l), cell(r), ("%.2f×" % (r / l)) if l else "—"))
print("| share of 200 (lowest) | %.4f | %.4f | |" % (best("local", "a", 6, min), best("redis", "a", 6, min)))
print("\nbackend errors counted by the redis gateway: %s" % errors)
PY
