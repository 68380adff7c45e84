#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisories kept in audit/advisory-db, without network:
# cargo-deny reads an advisory database only from a git checkout at a path of its own choosing
# (under deny.toml's db-path), so this script builds that checkout from the snapshot, then runs
# `cargo deny check advisories` offline. A snapshot older than 90 days gets a loud warning
# (refresh it with audit/refresh.sh; see README "Development").
set -euo pipefail
cd "$(dirname "$0")/.."
snapshot_date=$(sed -n 's/^date=//p' audit/SNAPSHOT)
age_days=$(( ( $(date -u +%s) - $(date -u -d "$snapshot_date" +%s) ) / 86400 ))
echo "advisories: RustSec snapshot of $snapshot_date ($age_days days old), $(find audit/advisory-db/crates -name '*.md' | wc -l) advisories"
if [ "$age_days" -gt 90 ]; then
  echo "WARNING: the advisory snapshot is $age_days days old: run audit/refresh.sh with a fresh advisory-db checkout" >&2
fi
# Where cargo-deny looks for the database (it names the directory after a hash of the URL).
db=$({ cargo deny -L debug --locked --offline check advisories 2>&1 || true; } \
  | sed -n "s/.*Opening advisory database at '\(.*\)'.*/\1/p" | head -n 1)
[ -n "$db" ] || { echo "audit/check.sh: cargo deny did not say where it reads the advisory database" >&2; exit 1; }
rm -rf "$db"
mkdir -p "$db"
cp -r audit/advisory-db/crates "$db/"
git -C "$db" init -q
git -C "$db" add crates
# Committed now, so cargo-deny's own staleness limit measures this copy; the snapshot's real age
# is checked above.
git -C "$db" -c user.name=certgate -c user.email=certgate@localhost commit -q -m "snapshot of $snapshot_date"
# Self-test: an advisory planted against every version of bytes (in our lock) must fail the check,
# or the check cannot fail at all.
cat > "$db/crates/planted.md" <<'EOT'
```toml
[advisory]
id = "RUSTSEC-9999-0001"
package = "bytes"
date = "2026-01-01"
url = "https://example.invalid/planted"
[versions]
patched = [">= 9999.0.0"]
```
# Planted by audit/check.sh to prove the check reports what it finds
EOT
if cargo deny --locked --offline check advisories >/dev/null 2>&1; then
  echo "audit/check.sh: a planted advisory against bytes was not reported: the check is broken" >&2
  exit 1
fi
rm "$db/crates/planted.md"
cargo deny --locked --offline check advisories
