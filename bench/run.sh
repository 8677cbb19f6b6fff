#!/usr/bin/env bash
# Quick HTTP figures for the record core: create (POST Patient) and read by id, on SQLite
# and PostgreSQL, with wrk (Debian package) against the release binary on this machine.
# Usage: bench/run.sh [seconds] [connections]. The full benchmark harness (ingest, search
# mixes, peers) is the subject of the bulk & performance issue.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; conns=${2:-16}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
. bench/lib.sh

run_backend() {
  local name=$1; shift
  start_server "$name" "$@"
  local auth; auth="Authorization: Bearer $(bench_token)"
  echo "== $name: create (POST Patient), $conns connections, ${secs}s"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "$auth" -s bench/create-patient.lua "$base/Patient" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  local id; id=$(curl -s -X POST -H 'Content-Type: application/fhir+json' -H "$auth" --data-binary '{"resourceType":"Patient","name":[{"family":"Чтение"}]}' "$base/Patient" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  echo "== $name: read by id (GET Patient/$id), $conns connections, ${secs}s"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "$auth" "$base/Patient/$id" | grep -E 'Requests/sec|50%|99%|Non-2xx'
  echo "== $name: resident memory after the run: $(ps -o rss= -p $pid | awk '{printf "%.0f MB", $1/1024}')"
  stop_server
}

run_both
