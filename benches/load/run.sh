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
cat > certgate.toml <<EOF
$(bench_config "${CG##*:}" "${ADMIN##*:}" "$UP" "max_connections = $MAXCONN")
$(token_and_limit_routes)
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOF

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
  | python3 -c '
import json, sys
d = json.load(sys.stdin)
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0); total = sum(codes.values()) or 1
print("%.0f %.3f %.3f %.4f %d" % (s["requestsPerSec"], (p.get("p50") or 0) * 1e3, (p.get("p99") or 0) * 1e3, ok / total, total))'
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
python3 - "$OUT" "$QUICK" "$KEY" "$DURATION" "$RATE" "$IDLE" "$VERSIONS" "$MACHINE" results.txt <<'PY'
import sys, datetime
out, quick, key, duration, rate, idle, versions, machine, path = sys.argv[1:10]
res = {}
for line in open(path):
    k, _, v = line.strip().partition("=")
    res[k] = [x.split("/") for x in v.split()]
def best(k, i, fn):  # over rounds
    vals = [float(r[i]) for r in res.get(k, []) if len(r) > i]
    return fn(vals) if vals else float("nan")
peers = ["certgate", "nginx", "haproxy"]
rows = []
def ratio(v, base, higher_is_better=True):
    if base != base or v != v or base == 0: return ""
    return " (%.2fx)" % (v / base)
def row(name, unit, get, better_high=True, fmt="%.0f"):
    vals = {p: get(p) for p in peers}
    cells = [fmt % vals[p] + unit + ratio(vals[p], vals["nginx"]) for p in peers]
    rows.append("| %s | %s |" % (name, " | ".join(cells)))
row("(a) keep-alive HTTP/1.1, max req/s", "", lambda p: best(p + ".a", 0, max))
row("(a) p50 latency", " ms", lambda p: best(p + ".a", 1, min), fmt="%.3f")
row("(a) p99 latency", " ms", lambda p: best(p + ".a", 2, min), fmt="%.3f")
row("(a) proxy CPU time per request (lower is better)", " µs", lambda p: best(p + ".cpu", 0, min) / 1000, fmt="%.1f")
def median(vals):
    vals = sorted(vals)
    return vals[(len(vals) - 1) // 2] if vals else float("nan")
def median_row(name, key):  # the median round's value; the ratio is the median of each round's own
    vals = {p: [float(r[0]) for r in res.get(p + key, [])] for p in peers}
    cells = []
    for p in peers:
        ratios = [v / b for v, b in zip(vals[p], vals["nginx"]) if b]
        cells.append("%.1f µs" % (median(vals[p]) / 1000) + (" (%.2fx)" % median(ratios) if ratios else ""))
    rows.append("| %s | %s |" % (name, " | ".join(cells)))
median_row("(a) proxy CPU time per request, median round", ".cpu")
median_row("(a) of which user space (median round, from utime)", ".a.usr")
median_row("(a) of which kernel (median round, from stime)", ".a.sys")
row("(b) p50 at %s req/s" % rate, " ms", lambda p: best(p + ".b", 1, min), fmt="%.3f")
row("(b) p99 at %s req/s" % rate, " ms", lambda p: best(p + ".b", 2, min), fmt="%.3f")
row("(c) HTTP/2, 8 conns x 16 streams, req/s", "", lambda p: best(p + ".c", 0, max))
row("(c) p99 latency", " ms", lambda p: best(p + ".c", 2, min), fmt="%.3f")
row("(c) proxy CPU time per request (lower is better)", " µs", lambda p: best(p + ".ccpu", 0, min) / 1000, fmt="%.1f")
median_row("(c) proxy CPU time per request, median round", ".ccpu")
median_row("(c) of which user space (median round, from utime)", ".c.usr")
median_row("(c) of which kernel (median round, from stime)", ".c.sys")
row("(d) new connection per request (full mTLS handshake), req/s", "", lambda p: best(p + ".d", 0, max))
def idle_stat(p, which):
    r = res.get(p + ".e", [])
    if not r: return float("nan")
    before, after, n, anon = (float(x) for x in r[0])
    if which == "base": return before / 1024
    if which == "anon": return anon / 1024
    return (after - before) / n if n else float("nan")
row("(e) RSS before the idle connections", " MiB", lambda p: idle_stat(p, "base"), fmt="%.1f")
row("(e) of which anonymous memory (heap, stacks; the rest is mapped code and data files)", " MiB", lambda p: idle_stat(p, "anon"), fmt="%.1f")
row("(e) RSS per idle keep-alive mTLS connection", " KiB", lambda p: idle_stat(p, "per"), fmt="%.1f")
ok_rates = {p: min((best(p + s, 3, min) for s in ".a .b .c .d".split()), default=1) for p in peers}
direct_rps = best("direct.a", 0, max)
direct_p50 = best("direct.b", 1, min)
added = {p: (best(p + ".b", 1, min) - direct_p50) * 1000 for p in peers}
rows.append("| (b) added p50 over direct at %s req/s | %s |" % (rate, " | ".join("%.0f µs" % added[p] for p in peers)))
rows.append("| share of 200 answers (lowest scenario) | %s |" % " | ".join("%.4f" % ok_rates[p] for p in peers))
# Access tokens: certgate only (the peers have no RFC 8705 support), same run.
trows = []
def pct(a, b):
    return (b / a - 1) * 100 if a else float("nan")
def change(base_k, k):  # median over rounds of each round's own k / base_k, as a % change
    ch = sorted(pct(float(x[0]), float(y[0])) for x, y in zip(res.get(base_k, []), res.get(k, [])))
    return ch[(len(ch) - 1) // 2] if ch else float("nan")
for label, s in [("(g) keep-alive HTTP/1.1, 64 conns", "a"), ("(h) HTTP/2, 8 conns x 16 streams", "c")]:
    plain_cpu = "certgate.cpu" if s == "a" else "certgate.ccpu"
    r0, rh, rt = best("certgate." + s, 0, max), best("hdr." + s, 0, max), best("token." + s, 0, max)
    c0, ch, ct = (best(k, 0, min) / 1000 for k in (plain_cpu, "hdr.%scpu" % s, "token.%scpu" % s))
    ok = best("token." + s, 3, min)
    hk, tk = "hdr.%scpu" % s, "token.%scpu" % s
    trows.append("| %s | %.0f / %.1f µs | %.0f / %.1f µs (%+.1f%%) | %.0f / %.1f µs (%+.1f%% / %+.1f%%) | %.4f |" % (
        label, r0, c0, rh, ch, change(plain_cpu, hk), rt, ct, change(plain_cpu, tk), change(hk, tk), ok))
rl_c0, rl_c1 = best("certgate.cpu", 0, min) / 1000, best("rl.acpu", 0, min) / 1000
rl_row = "| (i) keep-alive HTTP/1.1, 64 conns, per-identity rate limit that never triggers | %.0f / %.1f µs | %.0f / %.1f µs (%+.1f%%) | %.4f |" % (
    best("certgate.a", 0, max), rl_c0, best("rl.a", 0, max), rl_c1, change("certgate.cpu", "rl.acpu"), best("rl.a", 3, min))
mode = "smoke (--quick): numbers are indicative only" if quick == "1" else "full"
text = f"""# Benchmarks

Generated by `bash benches/load/run.sh{' --quick' if quick == '1' else ''}{' --rsa' if key == 'rsa' else ''}` on {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} ({mode}).

- Machine: {machine}
- Versions: {versions}
- Setup: {('ECDSA P-256' if key == 'ec' else 'RSA-2048')} certificates from one CA with a CRL; every proxy requires
  and verifies the client certificate (CA + CRL), TLS 1.2/1.3, keep-alive to the upstream, adds an
  identity header, no access log. Each proxy runs one worker pinned to one CPU; oha and the upstream
  (`certgate-bench upstream`, a minimal hyper server) share the other CPU, so at high rates the
  load generator can be the limit. Runs: {duration} per scenario, scenarios alternating between
  proxies; best of the rounds. Idle connections: {idle}.
- (f) direct to the upstream, plain HTTP, same load generator: {direct_rps:.0f} req/s (the ceiling
  of this load generator on its CPU), p50 {direct_p50:.3f} ms at {rate} req/s.
- CPU time per request: the proxy's own CPU time during (a) (all its threads, kernel time
  included, from /proc/PID/task/*/schedstat) divided by the requests it served. It measures cost
  per request whether the proxy or the load generator was the limit, and is steadier than req/s
  on a shared machine. The user-space and kernel rows split the same CPU by the kernel's own
  accounting (utime and stime in /proc/PID/task/*/stat, in clock ticks, so their sum need not
  match the schedstat figure exactly). "Median round" rows give each proxy's median over the
  rounds, and as ratio the median of the rounds' own ratios: a round runs the three proxies one
  after the other within the same minutes, so its ratio does not mix minutes.

| scenario | certgate | nginx | haproxy |
|---|---|---|---|
""" + "\n".join(rows) + "\n\nRatios in parentheses are to nginx in the same run.\n" + """
## Certificate-bound tokens (certgate only)

The same scenarios on a route that requires an ES256 access token bound to the client
certificate (RFC 8705), presented on every request, against the route without a token in the
same run. The token is verified once per connection and taken from the connection's cache after.

Each cell: max req/s / CPU time per request (best of the rounds). "Header only" sends the same
`Authorization` header to the route without a token requirement (it is forwarded, not checked):
the cost of carrying the token's bytes. The last CPU figures compare the token route with no
header, then with the header-only route (certgate's own token work). Percentages are the median
of each round's own ratio (the machine drifts between rounds, so best-of values from different
rounds would compare different minutes).

| scenario | no token | header only | token checked | share of 200 |
|---|---|---|---|---|
""" + "\n".join(trows) + "\n" + """
## Rate limits (certgate only)

The same scenario as (a) on a route with a per-identity rate limit set so high it never
refuses: what checking it costs. Cells: max req/s / CPU time per request (best of the rounds;
the percentage is the median of each round's own ratio).

| scenario | no limit | rate limit checked | share of 200 |
|---|---|---|---|
""" + rl_row + "\n"
# The sections other tools and issues wrote below this script's own stay as they are.
own = ("# Benchmarks", "## Certificate-bound tokens (certgate only)", "## Rate limits (certgate only)")
try:
    lines = open(out).read().split("\n")
except FileNotFoundError:
    lines = []
tail = next((i for i, l in enumerate(lines) if l.startswith("#") and l.strip() not in own), None)
if tail is not None:
    text += "\n" + "\n".join(lines[tail:])
open(out, "w").write(text)
print(text)
PY
