#!/usr/bin/env bash
# Refreshes audit/advisory-db from a checkout of the RustSec advisory database: keeps the
# advisories of every crate named in Cargo.lock and fuzz/Cargo.lock (so the snapshot stays small)
# and records the database commit and its date in audit/SNAPSHOT.
#
#   git clone https://github.com/rustsec/advisory-db /tmp/advisory-db
#   bash audit/refresh.sh /tmp/advisory-db
#
# Run it after adding a dependency too: a crate missing from the snapshot is not checked.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:?usage: audit/refresh.sh PATH-TO-ADVISORY-DB-CHECKOUT}
[ -d "$SRC/crates" ] || { echo "$SRC has no crates/ directory: not an advisory-db checkout" >&2; exit 1; }
OUT="$ROOT/audit/advisory-db"
rm -rf "$OUT"
mkdir -p "$OUT/crates"
kept=0
for name in $(sed -n 's/^name = "\(.*\)"$/\1/p' "$ROOT/Cargo.lock" "$ROOT/fuzz/Cargo.lock" | sort -u); do
  if [ -d "$SRC/crates/$name" ]; then
    cp -r "$SRC/crates/$name" "$OUT/crates/"
    kept=$((kept + 1))
  fi
done
commit=$(git -C "$SRC" log -1 --format=%H 2>/dev/null || echo unknown)
date=$(git -C "$SRC" log -1 --format=%cs 2>/dev/null || date -u +%F)
cat > "$ROOT/audit/SNAPSHOT" <<EOT
source=https://github.com/rustsec/advisory-db
commit=$commit
date=$date
EOT
echo "audit/advisory-db: $(find "$OUT/crates" -name '*.md' | wc -l) advisories for $kept of our crates, database of $date ($commit)"
