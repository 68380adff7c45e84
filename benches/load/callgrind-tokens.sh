#!/usr/bin/env bash
# Instructions per request under callgrind: certgate with and without a bound token (see
# BENCHMARKS.md, issue 13), with a per-identity rate limit that never triggers (issue 14), and
# with a legacy API key instead of a client certificate (issue 32: the listener is "optional"
# so the key client needs none). Needs valgrind, oha, openssl, curl; run after a release build of
# the binary and the `certgate-bench` example. Writes into /tmp/cg. ANOMALY=off runs it with
# the anomaly signals switched off ([anomaly] enabled = false), to compare their cost.
# CERTGATE_BIN=PATH measures another certgate binary (such as target/pgo/certgate).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CERTGATE=$(realpath "${CERTGATE_BIN:-$ROOT/target/release/certgate}")
HELPER=$ROOT/target/release/examples/certgate-bench
mkdir -p /tmp/cg && cd /tmp/cg
# shellcheck source=benches/load/pki.sh
source "$ROOT/benches/load/pki.sh"
make_pki
TOKEN=$("$HELPER" mint --cert client.pem --jwks jwks.json --issuer https://idp.bench --audience https://api.bench)
cat > certgate.toml <<EOT
[listener]
bind = "127.0.0.1:19543"
cert = "server.pem"
key = "server-key.pem"
[client_auth]
mode = "optional"
trust_store = ["ca.pem"]
[admin]
bind = "127.0.0.1:19902"
[log]
level = "warn"
[reload]
watch = false
[anomaly]
enabled = $([ "${ANOMALY:-on}" = off ] && echo false || echo true)
[upstreams.app]
url = "http://127.0.0.1:19081"
retries = 0
$(token_and_limit_routes)
$(api_key_route)
[[routes]]
name = "bench"
path_prefix = "/"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOT
KEY=$("$CERTGATE" keys new --config certgate.toml --owner bench --sunset 2099-12-31 --routes key)
"$HELPER" upstream --bind 127.0.0.1:19081 & UP=$!
TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg/cg.%p.out "$CERTGATE" run --config certgate.toml >cg.log 2>&1 & CG=$!
trap 'kill $UP $CG 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf --cacert ca.pem --cert client.pem --key client-key.pem https://localhost:19543/ready >/dev/null && break; sleep 0.5; done
T=(--cacert ca.pem --cert client.pem --key client-key.pem)
N=3000
run() { oha -n "$N" --no-tui "$@" "${T[@]}" >/dev/null 2>&1; }
phase() { # name, oha args
  callgrind_control -z "$CG" >/dev/null   # zero counters
  run "${@:2}"
  callgrind_control -d "$1" "$CG" >/dev/null
  sleep 1
}
run -c 4 https://localhost:19543/bench     # warm-up
run -c 4 -H "Authorization: Bearer $TOKEN" https://localhost:19543/tok
oha -n 300 --no-tui -c 4 -H "x-api-key: $KEY" --cacert ca.pem https://localhost:19543/key >/dev/null 2>&1
phase h1-plain -c 4 https://localhost:19543/bench
phase h1-token -c 4 -H "Authorization: Bearer $TOKEN" https://localhost:19543/tok
phase h1-header -c 4 -H "Authorization: Bearer $TOKEN" https://localhost:19543/bench
phase h1-ratelimit -c 4 https://localhost:19543/rl
# The key client presents no certificate: oha without --cert (T's --cert comes later and
# would add one, so this phase calls oha itself).
callgrind_control -z "$CG" >/dev/null
oha -n "$N" --no-tui -c 4 -H "x-api-key: $KEY" --cacert ca.pem https://localhost:19543/key >/dev/null 2>&1
callgrind_control -d h1-key "$CG" >/dev/null
sleep 1
phase h1-plain-again -c 4 https://localhost:19543/bench
phase h2-plain -c 4 -p 8 --http2 https://localhost:19543/bench
phase h2-token -c 4 -p 8 --http2 -H "Authorization: Bearer $TOKEN" https://localhost:19543/tok
phase h2-header -c 4 -p 8 --http2 -H "Authorization: Bearer $TOKEN" https://localhost:19543/bench
for f in cg.*.out.*; do
  printf '%s ' "$f"; grep -m1 '^desc: Trigger' "$f" | sed 's/desc: Trigger: //'; grep '^summary:\|^totals:' "$f" | head -1
done
