#!/usr/bin/env bash
# Bulk figures on generated data, SQLite and PostgreSQL: `medkarta import` of N patients
# (NDJSON), then over HTTP Patient/$everything, the accurate _total of all observations,
# and a system $export with downloads; peak memory of the import and of the server.
# Usage: bench/bulk.sh [patients] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-500}; reps=${2:-20}
. bench/lib.sh
gen="${MEDKARTA_CACHE:-$HOME/.cache/medkarta}/synth-ndjson-$patients"
[ -f "$gen/Patient.ndjson" ] || "$bin" generate --patients "$patients" --format ndjson --out "$gen" >/dev/null 2>&1

run_backend() {
  local name=$1; shift
  echo "== $name: import of $patients patients"
  /usr/bin/time -f "peak RSS of the import: %M KB" "$bin" import "$@" "$gen" 2>&1 | grep -E "^Imported|peak RSS"
  start_server "$name" "$@"
  python3 bench/bulk.py "$base" "$(bench_token)" "$reps"
  echo "== $name: server resident memory after: $(ps -o rss= -p "$pid" | awk '{printf "%.0f MB", $1/1024}')"
  stop_server
}

run_both
