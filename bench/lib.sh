# Shared by the bench scripts: start the release server on a fresh port with an OAuth
# client registered for the benchmark, and get access tokens for it.
# start_server NAME STORE-ARGS...  sets: base (FHIR base URL), pid, client_id, client_secret
# bench_token                      prints a fresh access token (system/*.cruds, 5 minutes)

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
