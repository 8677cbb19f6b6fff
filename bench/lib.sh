# Shared by the bench scripts: builds the release binary (`bin`; MEDKARTA_BIN=path names
# another build instead, e.g. to compare two commits), names the PostgreSQL
# server (`pg`), and starts the server on a fresh port with an OAuth client registered
# for the benchmark.
# start_server NAME STORE-ARGS...  sets: base (FHIR base URL), pid, client_id, client_secret
# bench_token                      prints a fresh access token (system/*.cruds, 5 minutes)
# run_both                         the caller's run_backend on a fresh SQLite directory, then
#                                  on a fresh PostgreSQL database (with its own --data)

bin=${MEDKARTA_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q
  bin=${CARGO_TARGET_DIR:-target}/release/medkarta
fi
pg=${MEDKARTA_TEST_PG:-postgres://postgres@127.0.0.1:5432}

start_server() {
  local name=$1; shift
  local creds; creds=$("$bin" admin "$@" client add "benchmark $name" --scope 'system/*.cruds')
  client_id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_id"])' "$creds")
  client_secret=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_secret"])' "$creds")
  server_log=$(mktemp)
  "$bin" serve --listen 127.0.0.1:0 "$@" >"$server_log" 2>/dev/null &
  pid=$!
  for _ in $(seq 1 50); do grep -q listening "$server_log" && break; sleep 0.1; done
  base=$(grep -o 'http://[^ ]*' "$server_log")
}

bench_token() {
  curl -s -X POST -d grant_type=client_credentials -d "client_id=$client_id" \
    --data-urlencode "client_secret=$client_secret" "${base%/fhir}/oauth/token" |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])'
}

stop_server() {
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$server_log"
}

run_both() {
  local data db="medkarta_bench_$$"
  data=$(mktemp -d)
  run_backend "SQLite" --data "$data"
  echo "== SQLite database size: $(du -sh "$data" | cut -f1)"
  rm -rf "$data"
  data=$(mktemp -d)
  run_backend "PostgreSQL" --database "$pg/$db" --data "$data"
  rm -rf "$data"
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
}
