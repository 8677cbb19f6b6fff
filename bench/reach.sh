#!/usr/bin/env bash
# The path the guard restricts: the demo doctor's requests (reads and searches within their
# organisation's care, consents loaded per request, a record out of care refused) with wrk
# for a while; prints wrk's throughput and latency. Run two builds in turn to compare them.
# Usage: bench/reach.sh [seconds] [connections]
#   MEDKARTA_BIN=path/to/medkarta bench/reach.sh   (default: the release build of this tree)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; connections=${2:-8}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
bin=${MEDKARTA_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q
  bin=${CARGO_TARGET_DIR:-target}/release/medkarta
fi
data=$(mktemp -d); log=$(mktemp)
"$bin" serve --demo --listen 127.0.0.1:0 --data "$data" >"$log" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$log"' EXIT
for _ in $(seq 1 300); do grep -q listening "$log" && break; sleep 0.1; done
base=$(grep -o 'http://[^ ]*/fhir' "$log" | head -1)
token=$("$bin" admin --data "$data" token --user demo-doctor --base-url "$base" 2>/dev/null)
wrk -t2 -c"$connections" -d"$secs"s -s bench/reach.lua "$base" -- "$token" "$base" 2>&1 |
  grep -E 'Requests/sec|Latency|requests in|Non-2xx'
