#!/usr/bin/env bash
# Load benchmark: certgate, nginx and haproxy side by side, on this machine, with one PKI, one
# upstream and one load generator (oha). Prints a table and writes it to BENCHMARKS.md.
#
#   bash benches/load/run.sh            # full run (several minutes)
#   bash benches/load/run.sh --quick    # smoke mode (what CI runs), a few seconds per scenario
#   bash benches/load/run.sh --rsa      # RSA-2048 certificates instead of ECDSA P-256
#   bash benches/load/run.sh --out FILE # write the report elsewhere
#   CERTGATE_BIN=target/pgo/certgate bash benches/load/run.sh   # another build (benches/load/pgo.sh)
#
# Fairness: every proxy requires and verifies the client certificate against the same CA and
# CRL, speaks TLS 1.2/1.3, keeps connections to the upstream alive, adds an identity header, and
# writes no access log. Each proxy is pinned to CPU 0 (one worker), the load generator and the
# upstream to CPU 1. Scenarios alternate between proxies, round after round, so drift hits all.
# All traffic stays on 127.0.0.1; every load run is bounded in time.
set -euo pipefail

QUICK=0
KEY=ec
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="$ROOT/BENCHMARKS.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --rsa) KEY=rsa ;;
    --out) OUT=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  DURATION=2s ROUNDS=1 IDLE=300 RATE=1000
else
  DURATION=10s ROUNDS=3 IDLE=10000 RATE=5000
fi
if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=0 LOAD_CPU=1; else PROXY_CPU=0 LOAD_CPU=0; fi

# --- tools -------------------------------------------------------------------------------
need=()
for t in nginx haproxy openssl curl python3 taskset; do
  command -v "$t" >/dev/null 2>&1 || need+=("$t")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for t in "${need[@]}"; do
    case "$t" in
      nginx) pkgs+=(nginx-light) ;;
      taskset) pkgs+=(util-linux) ;;
      *) pkgs+=("$t") ;;
    esac
  done
  echo "installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null 2>&1 || cargo install oha --locked
cd "$ROOT"
cargo build --release --locked --bin certgate --example certgate-bench 2>&1 | tail -n 1 >&2
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
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Every proxy must hold IDLE client connections (haproxy reserves two descriptors per connection).
FDLIM=$(ulimit -n)
if [ "$IDLE" -gt $(( (FDLIM - 1000) / 2 )) ]; then IDLE=$(( (FDLIM - 1000) / 2 )); fi
MAXCONN=$(( IDLE + 200 ))

# --- PKI (openssl) ------------------------------------------------------------------------
cd "$WORK"
# shellcheck source=benches/load/pki.sh
source "$ROOT/benches/load/pki.sh"
make_pki

# An ES256 access token bound to the client certificate, for certgate's token route.
TOKEN=$("$HELPER" mint --cert client.pem --jwks jwks.json --issuer https://idp.bench --audience https://api.bench)

UP=127.0.0.1:19080 CG=127.0.0.1:19443 NG=127.0.0.1:19444 HA=127.0.0.1:19445 ADMIN=127.0.0.1:19901

# The idle-connection scenario holds IDLE connections of one client certificate (bench_config
# sets no per-identity cap).
# The listener is "optional" so API-key clients (no certificate) reach the /key route; every
# other route still requires the certificate by its allow rule (verified the same way).
cat > certgate.toml <<EOF
$(bench_config "${CG##*:}" "${ADMIN##*:}" "$UP" "max_connections = $MAXCONN" optional)
$(token_and_limit_routes)
$(api_key_route)
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOF

# One issued key (printed once), for the API-key scenario (j).
API_KEY=$("$CERTGATE" keys new --config certgate.toml --owner bench --sunset 2099-12-31 --routes key)

# shellcheck source=benches/load/peers.sh
source "$ROOT/benches/load/peers.sh"
write_nginx_conf "$NG" "$UP" $(( MAXCONN + 200 ))
write_haproxy_cfg "$HA" "$UP" "$MAXCONN"

# --- processes ------------------------------------------------------------------------------
taskset -c "$LOAD_CPU" "$HELPER" upstream --bind "$UP" & PIDS+=($!)
TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$CERTGATE" --log-format json run --config certgate.toml >certgate.log 2>&1 & PIDS+=($!)
CG_PID=$!
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" >/dev/null 2>&1 & PIDS+=($!)
taskset -c "$PROXY_CPU" haproxy -f "$WORK/haproxy.cfg" >haproxy.log 2>&1 & PIDS+=($!)
HA_PID=$!
for addr in "$CG" "$NG" "$HA"; do
  for _ in $(seq 1 100); do
    if curl -sf --cacert ca.pem --cert client.pem --key client-key.pem "https://localhost:${addr##*:}/ready" >/dev/null; then break; fi
    sleep 0.1
  done
  curl -sf --cacert ca.pem --cert client.pem --key client-key.pem "https://localhost:${addr##*:}/ready" >/dev/null \
    || { echo "proxy on $addr does not answer" >&2; cat certgate.log nginx-error.log haproxy.log >&2; exit 1; }
done
NG_PID=$(pgrep -f "nginx: worker process" | head -n 1)
NG_MASTER=$(cat "$WORK/nginx.pid")

# --- measuring --------------------------------------------------------------------------------
declare -A RESULT
oha_run() { # $1 = url, rest = oha options; prints "rps p50_ms p99_ms ok_share requests"
  local url=$1; shift
  taskset -c "$LOAD_CPU" oha -z "$DURATION" --no-tui --output-format json "$@" "$url" 2>/dev/null \
  | python3 "$ROOT/benches/load/report.py" oha
}
tls_opts=(--cacert "$WORK/ca.pem" --cert "$WORK/client.pem" --key "$WORK/client-key.pem")
record() { # $1 = key, $2 = value; keeps the best rps / lowest latency over rounds
  local k=$1 v=$2
  RESULT[$k]="${RESULT[$k]:-} $v"
  echo "round $round $k $v" >&2
}
# shellcheck source=benches/load/cpu.sh
source "$ROOT/benches/load/cpu.sh"
split_cpu() { # $1 = key prefix, $2 = requests, $3 = ticks before, $4 = ticks after; user / kernel ns per request
  local u0 k0 u1 k1
  read -r u0 k0 <<<"$3"; read -r u1 k1 <<<"$4"
  record "$1.usr" "$(( (u1 - u0) * TICK_NS / ($2 > 0 ? $2 : 1) ))"
  record "$1.sys" "$(( (k1 - k0) * TICK_NS / ($2 > 0 ? $2 : 1) ))"
}
rss_kib() { # sum of VmRSS (or, with FIELD=RssAnon, another /proc/PID/status line) of the pids
  local sum=0
  for p in "$@"; do sum=$((sum + $(awk -v f="${FIELD:-VmRSS}:" '$1 == f {print $2}' "/proc/$p/status"))); done
  echo "$sum"
}

PEERS=(certgate nginx haproxy)
declare -A PIDSET=([certgate]="$CG_PID" [nginx]="$NG_MASTER $NG_PID" [haproxy]="$HA_PID")
declare -A URL=([certgate]="https://localhost:${CG##*:}" [nginx]="https://localhost:${NG##*:}" [haproxy]="https://localhost:${HA##*:}")
for round in $(seq 1 "$ROUNDS"); do
  for peer in "${PEERS[@]}"; do
    u="${URL[$peer]}/bench"
    # shellcheck disable=SC2086
    c0=$(cpu_ns ${PIDSET[$peer]}); t0=$(cpu_ticks ${PIDSET[$peer]})
    read -r rps p50 p99 ok n <<<"$(oha_run "$u" -c 64 "${tls_opts[@]}")";         record "$peer.a" "$rps/$p50/$p99/$ok"
    # shellcheck disable=SC2086
    c1=$(cpu_ns ${PIDSET[$peer]}); t1=$(cpu_ticks ${PIDSET[$peer]})
    record "$peer.cpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"; split_cpu "$peer.a" "$n" "$t0" "$t1"
    read -r rps p50 p99 ok _ <<<"$(oha_run "$u" -c 16 -q "$RATE" "${tls_opts[@]}")"; record "$peer.b" "$rps/$p50/$p99/$ok"
    # shellcheck disable=SC2086
    c0=$(cpu_ns ${PIDSET[$peer]}); t0=$(cpu_ticks ${PIDSET[$peer]})
    read -r rps p50 p99 ok n <<<"$(oha_run "$u" -c 8 -p 16 --http2 "${tls_opts[@]}")"; record "$peer.c" "$rps/$p50/$p99/$ok"
    # shellcheck disable=SC2086
    c1=$(cpu_ns ${PIDSET[$peer]}); t1=$(cpu_ticks ${PIDSET[$peer]})
    record "$peer.ccpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"; split_cpu "$peer.c" "$n" "$t0" "$t1"
    read -r rps p50 p99 ok _ <<<"$(oha_run "$u" -c 16 --disable-keepalive "${tls_opts[@]}")"; record "$peer.d" "$rps/$p50/$p99/$ok"
  done
  # (i) certgate with a per-identity rate limit that never triggers: the same scenario as (a).
  c0=$(cpu_ns "$CG_PID")
  read -r rps p50 p99 ok n <<<"$(oha_run "${URL[certgate]}/rl" -c 64 "${tls_opts[@]}")"; record "rl.a" "$rps/$p50/$p99/$ok"
  c1=$(cpu_ns "$CG_PID"); record "rl.acpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"
  # (j) certgate with an API key instead of a client certificate: the same scenario as (a).
  c0=$(cpu_ns "$CG_PID")
  read -r rps p50 p99 ok n <<<"$(oha_run "${URL[certgate]}/key" -c 64 -H "x-api-key: $API_KEY" --cacert "$WORK/ca.pem")"; record "key.a" "$rps/$p50/$p99/$ok"
  c1=$(cpu_ns "$CG_PID"); record "key.acpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"
  # (g, h) certgate with a bound ES256 token on every request: the same scenarios as (a) and (c).
  auth=(-H "Authorization: Bearer $TOKEN")
  # The same requests, Authorization header included, on the route without a token: what the
  # header's bytes cost by themselves (HTTP/2 clients never index Authorization in HPACK, so
  # every request carries the whole token).
  c0=$(cpu_ns "$CG_PID")
  read -r rps p50 p99 ok n <<<"$(oha_run "${URL[certgate]}/bench" -c 64 "${auth[@]}" "${tls_opts[@]}")"; record "hdr.a" "$rps/$p50/$p99/$ok"
  c1=$(cpu_ns "$CG_PID"); record "hdr.acpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"
  c0=$(cpu_ns "$CG_PID")
  read -r rps p50 p99 ok n <<<"$(oha_run "${URL[certgate]}/bench" -c 8 -p 16 --http2 "${auth[@]}" "${tls_opts[@]}")"; record "hdr.c" "$rps/$p50/$p99/$ok"
  c1=$(cpu_ns "$CG_PID"); record "hdr.ccpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"
  c0=$(cpu_ns "$CG_PID")
  read -r rps p50 p99 ok n <<<"$(oha_run "${URL[certgate]}/tok" -c 64 "${auth[@]}" "${tls_opts[@]}")"; record "token.a" "$rps/$p50/$p99/$ok"
  c1=$(cpu_ns "$CG_PID"); record "token.acpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"
  c0=$(cpu_ns "$CG_PID")
  read -r rps p50 p99 ok n <<<"$(oha_run "${URL[certgate]}/tok" -c 8 -p 16 --http2 "${auth[@]}" "${tls_opts[@]}")"; record "token.c" "$rps/$p50/$p99/$ok"
  c1=$(cpu_ns "$CG_PID"); record "token.ccpu" "$(( (c1 - c0) / (n > 0 ? n : 1) ))"
  read -r rps p50 p99 ok _ <<<"$(oha_run "http://$UP/bench" -c 64)"; record "direct.a" "$rps/$p50/$p99/$ok"
  read -r rps p50 p99 ok _ <<<"$(oha_run "http://$UP/bench" -c 16 -q "$RATE")"; record "direct.b" "$rps/$p50/$p99/$ok"
done

# (e) idle keep-alive mTLS connections: RSS growth per connection.
for peer in "${PEERS[@]}"; do
  # shellcheck disable=SC2086
  before=$(rss_kib ${PIDSET[$peer]})
  # shellcheck disable=SC2086
  anon=$(FIELD=RssAnon rss_kib ${PIDSET[$peer]})
  port=${URL[$peer]##*:}
  taskset -c "$LOAD_CPU" "$HELPER" idle --connect "127.0.0.1:$port" --count "$IDLE" \
    --ca ca.pem --cert client.pem --key client-key.pem --hold 600 >"idle-$peer.out" 2>&1 &
  idle_pid=$!
  for _ in $(seq 1 600); do grep -q '^ready' "idle-$peer.out" 2>/dev/null && break; sleep 0.2; done
  sleep 1
  # shellcheck disable=SC2086
  after=$(rss_kib ${PIDSET[$peer]})
  kill "$idle_pid" 2>/dev/null || true; wait "$idle_pid" 2>/dev/null || true
  opened=$(sed -n 's/^ready //p' "idle-$peer.out")
  record "$peer.e" "${before}/${after}/${opened:-0}/${anon}"
  sleep 1
done

# --- report -----------------------------------------------------------------------------------
VERSIONS="certgate $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')${CERTGATE_BIN:+ (binary: $CERTGATE_BIN)}, $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "haproxy " $3}'), $(oha --version), $(rustc --version | awk '{print $1 " " $2}')"
MACHINE="$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(free -g | awk '/Mem:/ {print $2}') GiB; Linux $(uname -r)"
{
  for k in "${!RESULT[@]}"; do echo "$k=${RESULT[$k]}"; done
} > results.txt
python3 "$ROOT/benches/load/report.py" write "$OUT" "$QUICK" "$KEY" "$DURATION" "$RATE" "$IDLE" "$VERSIONS" "$MACHINE" results.txt
