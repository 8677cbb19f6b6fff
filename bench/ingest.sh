#!/usr/bin/env bash
# Ingest benchmark (issue 16): `medkarta import` into SQLite and PostgreSQL of the Synthea
# sample (../shared/data/synthea-r4-sample, when present: 20 real patient bundles with
# Claims, ExplanationOfBenefits and long Encounters) and of generated data (NDJSON, with and
# without `generate --claims`), beside
# each database's raw-insert limit for the same resources; median of several runs, one
# table (see bench/ingest.py).
# Usage: bench/ingest.sh [runs] [patients generated]
#   MEDKARTA_BIN=path/to/medkarta bench/ingest.sh   (default: the release build of this tree)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; patients=${2:-300}
bin=${MEDKARTA_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q
  bin=${CARGO_TARGET_DIR:-target}/release/medkarta
fi
cache="${MEDKARTA_CACHE:-$HOME/.cache/medkarta}"
ndjson="$cache/synth-ndjson-$patients"
[ -f "$ndjson/Patient.ndjson" ] || "$bin" generate --patients "$patients" --format ndjson --out "$ndjson" >/dev/null 2>&1
# the same patients billed as Synthea bills them (Claims, ExplanationOfBenefits): the
# Synthea shape, also where the sample is absent
claims="$cache/synth-ndjson-claims-$patients"
[ -f "$claims/Claim.ndjson" ] || "$bin" generate --patients "$patients" --claims --format ndjson --out "$claims" >/dev/null 2>&1
sources=()
synthea=../shared/data/synthea-r4-sample
[ -d "$synthea" ] && sources+=("Synthea sample=$synthea")
sources+=("generated, $patients patients=$ndjson" "generated with claims (Synthea's shape)=$claims")
exec python3 bench/ingest.py --medkarta "$bin" --pg "${MEDKARTA_TEST_PG:-postgres://postgres@127.0.0.1:5432}" \
  --runs "$runs" "${sources[@]}"
