#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of inputs from a fixed seed (so a run here and a
# run in CI try the same inputs), seeded with the corpus in fuzz/corpus/TARGET, and fails on the
# first crash. Needs the nightly toolchain and cargo-fuzz (installed here if missing).
#
#   bash fuzz/run.sh [RUNS]          # default 20000 inputs per target
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20000}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
targets=(config path authority headers identity crl ocsp token)
cargo +nightly fuzz build --release
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  work=$(mktemp -d)
  start=$(date +%s)
  # A copy of the seed corpus: what the run adds is not kept.
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  if ! cargo +nightly fuzz run --release "$t" "$work" -- -seed=1 -runs="$RUNS" -max_len=4096 \
      -rss_limit_mb=2048 -print_final_stats=0 >"$work.log" 2>&1; then
    tail -n 60 "$work.log"
    echo "fuzz target $t FAILED (crash input under fuzz/artifacts/$t)" >&2
    exit 1
  fi
  echo "fuzz $t: $RUNS inputs, $(( $(date +%s) - start )) s, no crash"
  rm -rf "$work" "$work.log"
done
