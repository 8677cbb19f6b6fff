#!/usr/bin/env bash
# Fuzz the REST API with schemathesis (PyPI) against its own OpenAPI document
# (GET /fhir/openapi.json): a demo server on a fresh data directory, a system client's
# token, a bounded number of generated requests per operation for a few resource types
# (their search, create, read, update, delete, history, operations) and the transaction
# endpoint. The check: no answer is a 5xx. Exit status non-zero on any failure.
# Usage: scripts/fuzz.sh [examples per operation] [type regex]
#   MEDKARTA_BIN: the binary to fuzz (default: the debug build the tests use)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-20}
types=${2:-'^(Patient|Observation|Encounter|Condition|MedicationRequest|system)$'}
bin=${MEDKARTA_BIN:-${CARGO_TARGET_DIR:-target}/debug/medkarta}
[ -x "$bin" ] || cargo build -q -p medkarta
command -v schemathesis >/dev/null || python3 -m pip install -q 'schemathesis==4.32.5'
data=$(mktemp -d); log=$(mktemp)
export MEDKARTA_LOG=warn
creds=$("$bin" admin --data "$data" client add "fuzzer" --scope 'system/*.cruds')
"$bin" serve --demo --listen 127.0.0.1:0 --data "$data" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$log"' EXIT
for _ in $(seq 1 300); do grep -q listening "$log" && break; sleep 0.1; done
base=$(grep -o 'http://[^ ]*/fhir' "$log" | head -1)
token=$(python3 - "$creds" "${base%/fhir}/oauth/token" <<'PY'
import json, sys, urllib.parse, urllib.request
c = json.loads(sys.argv[1])
body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": c["client_id"],
                               "client_secret": c["client_secret"]}).encode()
print(json.load(urllib.request.urlopen(sys.argv[2], body))["access_token"])
PY
)
# the document needs a token too
curl -sf -H "Authorization: Bearer $token" "$base/openapi.json" -o "$data/openapi.json"
# tokens live five minutes: the run is bounded well inside that
schemathesis run "$data/openapi.json" --url "$base" -H "Authorization: Bearer $token" \
  --checks not_a_server_error --max-examples "$examples" --include-tag-regex "$types" \
  --seed 1 --workers 2 --max-time 120 --request-timeout 20 --no-shrink --warnings off
