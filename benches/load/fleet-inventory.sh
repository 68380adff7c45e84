#!/usr/bin/env bash
# The fleet inventory at 100,000 credentials: the inventory's memory, and how long writing it to
# a real PostgreSQL takes (first sync, then a sync where every credential changed). Starts its
# own PostgreSQL (initdb + pg_ctl, as the postgres user when run as root) on a free loopback
# port and stops it afterwards. See BENCHMARKS.md.
#
#   bash benches/load/fleet-inventory.sh [COUNT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COUNT=${1:-100000}
cd "$ROOT"
cargo build --release --locked --example certgate-bench 2>&1 | tail -n 1 >&2
HELPER="$ROOT/target/release/examples/certgate-bench"
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
chmod 755 "$DIR"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR"
cleanup() { as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --no-sync >/dev/null
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -qc "CREATE DATABASE certgate" >/dev/null
"$HELPER" inventory --count "$COUNT" --url "postgres://postgres@127.0.0.1:$PORT/certgate"
as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -d certgate -Atc \
  "SELECT 'database: ' || pg_size_pretty(pg_database_size('certgate')) || ', ' || (SELECT count(*) FROM certgate_sightings) || ' sighting rows'"
