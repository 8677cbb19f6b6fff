#!/usr/bin/env bash
# The regression benchmark of the PostgreSQL tail (issue 16): reads leave audit entries
# behind them (one per request, through the audit journal), and the writes that follow
# must not pay for them. On each backend: a fresh database loaded with generated
# transaction bundles over HTTP, then read by id at 8 connections, then the CRUD mix at
# 1 and at 8 connections, straight after one another; prints p50 / p95 / p99 / max of
# each phase. Before the fix every write first moved the journal's backlog into the
# database and a background ANALYZE of the whole database (audit log included) took
# seconds of both cores: CRUD p99 over 450 ms, reads over 100 ms on PostgreSQL.
# Usage: bench/tail.sh [patients] [seconds per phase]
#   MEDKARTA_BIN=path/to/medkarta bench/tail.sh   (default: the release build of this tree)
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-300}; secs=${2:-10}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
source bench/lib.sh
cache="${MEDKARTA_CACHE:-$HOME/.cache/medkarta}"
bundles="$cache/synth-bundles-$patients"
[ -f "$bundles/bundle-00001.json" ] || "$bin" generate --patients "$patients" --out "$bundles" >/dev/null 2>&1

post() {
  curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/fhir+json' -H 'Prefer: return=minimal' --data-binary "@$1" "$base"
}
export -f post

phase() { # NAME SCRIPT CONNECTIONS [PATH]
  local out
  out=$(PATIENTS=$patients BASE_PATH=/fhir BENCH_DIR="$PWD/bench" wrk -t"$(( $3 < 2 ? $3 : 2 ))" -c"$3" \
    -d"${secs}s" --timeout 10s -H "Authorization: Bearer $tok" -s "bench/$2" "${base%/fhir}${4:-/}" | tail -1)
  python3 -c 'import json,sys; r=json.loads(sys.argv[2]); print("| {} | {} | {:,.0f} | {:.1f} / {:.1f} / {:.1f} | {} |".format(sys.argv[3], sys.argv[1], r["rps"], r["p50"], r["p95"], r["p99"], r["errors"]))' \
    "$1" "$out" "$backend"
}

run_backend() {
  backend=$1; shift
  start_server tail "$@" 2>/dev/null
  tok=$(bench_token)
  export tok base
  post "$bundles/bundle-00001.json" >/dev/null
  find "$bundles" -name 'bundle-*.json' ! -name bundle-00001.json | sort | xargs -P2 -I{} bash -c 'post {}' |
    grep -vc '^200$' | sed 's/^/bundles failed: /' >&2 || true
  phase "read by id, 8 connections" stats.lua 8 /fhir/Patient/pat-7
  phase "CRUD mix, 1 connection" crud.lua 1
  phase "CRUD mix, 8 connections" crud.lua 8
  stop_server
}

echo "| backend | phase | req/s | p50 / p95 / p99 ms | errors |"
echo "|---|---|---|---|---|"
run_both
