#!/usr/bin/env bash
# The benchmark in one command: Medkarta (SQLite, PostgreSQL) side by side with helios-hfs
# and the raw-insert limit of each database, on the same generated data, in one run;
# prints one table (see bench/compare.py for what each row measures).
# Usage: bench/compare.sh [patients] [seconds per load level] [concurrency levels]
#   e.g. bench/compare.sh 300 10 1,8,32
# Installs what it lacks: wrk (Debian), helios-hfs (`cargo install`, once, into
# ~/.cache/medkarta/peers; MEDKARTA_BENCH_PEER=none leaves the peer out).
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-300}; secs=${2:-10}; levels=${3:-1,8,32}
cache="${MEDKARTA_CACHE:-$HOME/.cache/medkarta}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
bin=${MEDKARTA_BIN:-}  # another build, e.g. to compare two commits (build each in its own target dir)
if [ -z "$bin" ]; then
  cargo build --release -q
  bin=${CARGO_TARGET_DIR:-target}/release/medkarta
fi

hfs=""; hfs_data=""
if [ "${MEDKARTA_BENCH_PEER:-helios}" != none ]; then
  hfs="$cache/peers/bin/hfs"
  if [ ! -x "$hfs" ]; then
    echo "-- installing helios-hfs 0.2.7 (R4, SQLite) into $cache/peers: a long build, once"
    CARGO_TARGET_DIR="$cache/peers/target" cargo install -q --locked helios-hfs@0.2.7 \
      --no-default-features --features R4,sqlite --root "$cache/peers"
  fi
  # hfs reads the R4 search parameters and the patient compartment from a data directory:
  # the same definitions we embed
  hfs_data="$cache/peers/hfs-data"
  mkdir -p "$hfs_data"
  cp ../shared/fhir/r4/search-parameters.json "$hfs_data/search-parameters-r4.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); json.dump({"resourceType":"Bundle","type":"collection","entry":[{"resource":d}]},open(sys.argv[2],"w"))' \
    ../shared/fhir/r4/compartmentdefinition-patient.json "$hfs_data/compartment-definitions-r4.json"
fi

bundles="$cache/synth-bundles-$patients"; ndjson="$cache/synth-ndjson-$patients"
[ -f "$bundles/bundle-00001.json" ] || "$bin" generate --patients "$patients" --out "$bundles" >/dev/null 2>&1
[ -f "$ndjson/Patient.ndjson" ] || "$bin" generate --patients "$patients" --format ndjson --out "$ndjson" >/dev/null 2>&1

exec python3 bench/compare.py --medkarta "$bin" --hfs "$hfs" --hfs-data "$hfs_data" \
  --pg "${MEDKARTA_TEST_PG:-postgres://postgres@127.0.0.1:5432}" \
  --bundles "$bundles" --ndjson "$ndjson" --patients "$patients" --secs "$secs" --levels "$levels"
