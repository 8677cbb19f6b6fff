#!/usr/bin/env bash
# Search latencies on a realistic data set: generates N patients with `medkarta generate`
# (about 63 resources each), loads them as transaction bundles over HTTP into SQLite and
# PostgreSQL (reporting the load rate), then runs bench/search.py's clinician query set.
# Usage: bench/search.sh [patients] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-2000}; reps=${2:-30}
. bench/lib.sh
gen="${MEDKARTA_CACHE:-$HOME/.cache/medkarta}/synth-$patients"
[ -f "$gen/bundle-00001.json" ] || "$bin" generate --patients "$patients" --out "$gen"

run_backend() {
  local name=$1; shift
  start_server "$name" "$@"
  local start=$SECONDS n=0 token token_at=-1000
  for f in "$gen"/bundle-*.json; do
    if ((SECONDS - token_at > 240)); then token=$(bench_token); token_at=$SECONDS; fi
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/fhir+json' \
      -H "Authorization: Bearer $token" --data-binary @"$f" "$base")
    [ "$code" = 200 ] || { echo "loading $f failed: HTTP $code" >&2; kill $pid; exit 1; }
    n=$((n + $(python3 -c 'import json,sys;print(len(json.load(open(sys.argv[1]))["entry"]))' "$f")))
  done
  local secs=$((SECONDS - start))
  echo "== $name: loaded $n resources in ${secs}s ($((n / (secs > 0 ? secs : 1))) resources/s, transaction bundles of 20 patients over HTTP)"
  python3 bench/search.py "$base" "$reps" "$(bench_token)"
  echo "== $name: resident memory: $(ps -o rss= -p $pid | awk '{printf "%.0f MB", $1/1024}')"
  stop_server
}

run_both
