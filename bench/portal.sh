#!/usr/bin/env bash
# Portal page times (summary, results, health, inbox) for one patient with about 2,000 resources, on
# SQLite and PostgreSQL: bench/portal.py loads the record and times the pages.
# Usage: bench/portal.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
. bench/lib.sh

run_backend() {
  local name=$1; shift
  local password="bench password for the portal"
  "$bin" admin "$@" user add --username bench-patient --role patient --patient Patient/p-bench \
    --password-stdin <<<"$password" >/dev/null
  MEDKARTA_RATE_LIMIT_ACCOUNT=0 start_server "$name" "$@"
  echo "== $name"
  python3 bench/portal.py "$base" "$(bench_token)" bench-patient "$password" "$n"
  stop_server
}
run_both
