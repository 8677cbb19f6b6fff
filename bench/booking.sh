#!/usr/bin/env bash
# Booking at a city's scale on SQLite and PostgreSQL (bench/booking.py): 500,000 slots of
# 1,000 practitioners over four weeks; $find p50/p95, bookings per second at 1/8/32
# connections, and 200 attempts at one slot.
# Usage: bench/booking.sh [find-requests]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
. bench/lib.sh

run_backend() {
  local name=$1; shift
  MEDKARTA_RATE_LIMIT_ACCOUNT=0 start_server "$name" "$@"
  echo "== $name"
  python3 bench/booking.py "$base" "$client_id" "$client_secret" "$n"
  stop_server
}
run_both
