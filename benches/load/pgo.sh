#!/usr/bin/env bash
# Profile-guided release build of certgate (issue 18, BENCHMARKS.md "Keep-alive cost"): builds an
# instrumented binary, runs it under a training load on loopback — HTTP/1.1 and HTTP/2
# keep-alive, new mTLS connections, request bodies, a bound token and a rate limit, requests the
# policy refuses — merges the counts with the
# toolchain's own llvm-profdata, and builds the release binary again with them, so the compiler
# lays out and inlines the hot path by what it measured. The result is target/pgo/certgate.
#
#   bash benches/load/pgo.sh            # then: bash benches/load/instructions.sh target/pgo/certgate
#
# Needs the llvm-tools component of the project's toolchain (`rustup component add llvm-tools`;
# its llvm-profdata must match rustc's LLVM), oha, openssl, curl. Two release builds in their own
# target directories (target/pgo-gen, target/pgo-use): about 15 minutes on 2 cores. The profile
# is made from this tree and used at once; none is committed (a profile is tied to the compiler's
# LLVM version and to the code it was taken from).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SYSROOT=$(rustc --print sysroot)
PROFDATA=$(ls "$SYSROOT"/lib/rustlib/*/bin/llvm-profdata 2>/dev/null | head -n 1 || true)
if [ -z "$PROFDATA" ]; then
  echo "pgo.sh: no llvm-profdata in $SYSROOT; run: rustup component add llvm-tools" >&2
  exit 1
fi
# shellcheck source=benches/load/common.sh
source "$(dirname "$0")/common.sh"
PROFILES="$ROOT/target/pgo-profiles"
rm -rf "$PROFILES" && mkdir -p "$PROFILES"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (which would otherwise
# be instrumented too and leave their own profiles behind).
HOST=$(rustc -vV | sed -n 's/^host: //p')
build() { # $1 = target directory, $2 = RUSTFLAGS
  echo "pgo.sh: building in $1 with RUSTFLAGS=$2" >&2
  (cd "$ROOT" && RUSTFLAGS="$2" cargo build --release --locked --bin certgate --target "$HOST" \
    --target-dir "$1" 2>&1 | tail -n 1 >&2)
}
build "$ROOT/target/pgo-gen" "-Cprofile-generate=$PROFILES"

make_pki
TOKEN=$("$HELPER" mint --cert client.pem --jwks jwks.json --issuer https://idp.bench --audience https://api.bench)
issue other "/O=Bench/CN=other" "subjectAltName=URI:spiffe://bench/other\nextendedKeyUsage=clientAuth\n"
UP=127.0.0.1:19880
cat > certgate.toml <<EOF
$(bench_config 19843 19891 "$UP")
$(token_and_limit_routes)
[[routes]]
name = "bench"
path_prefix = "/bench"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
EOF
"$HELPER" upstream --bind "$UP" & PIDS+=($!)
"$ROOT/target/pgo-gen/$HOST/release/certgate" run --config certgate.toml > gen.log 2>&1 &
GEN=$!
PIDS+=("$GEN")
wait_ready 127.0.0.1:19891 gen.log
T=(--cacert ca.pem --cert client.pem --key client-key.pem)
URL=https://localhost:19843/bench
# The training load, bounded in count: mostly kept-alive requests, as in production.
oha -n 40000 -c 16 --no-tui "${T[@]}" "$URL" >/dev/null
oha -n 40000 -c 4 -p 16 --http2 --no-tui "${T[@]}" "$URL" >/dev/null
oha -n 2000 -c 8 --disable-keepalive --no-tui "${T[@]}" "$URL" >/dev/null
oha -n 2000 -c 4 --no-tui -m POST -d "$(head -c 16384 /dev/zero | tr '\0' x)" "${T[@]}" "$URL" >/dev/null
# The capabilities of the earlier issues: bound tokens and a rate limit.
oha -n 5000 -c 16 --no-tui -H "Authorization: Bearer $TOKEN" "${T[@]}" https://localhost:19843/tok >/dev/null
oha -n 5000 -c 16 --no-tui "${T[@]}" https://localhost:19843/rl >/dev/null
# Refusals (wrong identity, no route) stay in the profile too, at their real, small share.
oha -n 500 -c 2 --no-tui --cacert ca.pem --cert other.pem --key other-key.pem "$URL" >/dev/null
oha -n 500 -c 2 --no-tui "${T[@]}" https://localhost:19843/elsewhere >/dev/null
kill -TERM "$GEN"
wait "$GEN" || true   # a clean exit writes the profile
ls "$PROFILES"/*.profraw >/dev/null
"$PROFDATA" merge -o "$PROFILES/certgate.profdata" "$PROFILES"/*.profraw
build "$ROOT/target/pgo-use" "-Cprofile-use=$PROFILES/certgate.profdata"
mkdir -p "$ROOT/target/pgo"
cp "$ROOT/target/pgo-use/$HOST/release/certgate" "$ROOT/target/pgo/certgate"
echo "pgo.sh: target/pgo/certgate (profile: target/pgo-profiles/certgate.profdata)"
