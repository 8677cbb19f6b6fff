#!/usr/bin/env bash
# The front door under abuse (bench/abuse.py): an honest client's latency alone, then while
# sign-in floods and large unauthenticated bodies come in; once with the deployment's
# defaults (rate limits on, password hashing bounded to half the cores), once with the
# rate limits off (the hashing pool alone holds), once with both off (64 hashes at once:
# the server as it was before the front-door work).
# Usage: bench/abuse.sh [seconds] [flood threads] [body threads]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; flood=${2:-100}; bodies=${3:-4}
source bench/lib.sh
for config in "defaults" "no rate limits:--rate-limit-address 0 --rate-limit-account 0" \
  "no limits at all:--rate-limit-address 0 --rate-limit-account 0 --password-hash-threads 64"; do
  name=${config%%:*}; flags=${config#*:}; [ "$flags" = "$config" ] && flags=""
  data=$(mktemp -d)
  creds=$("$bin" admin --data "$data" client add "benchmark abuse" --scope 'system/*.cruds')
  client_id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_id"])' "$creds")
  client_secret=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["client_secret"])' "$creds")
  server_log=$(mktemp)
  # shellcheck disable=SC2086
  "$bin" serve --listen 127.0.0.1:0 --data "$data" $flags >"$server_log" 2>/dev/null &
  pid=$!
  for _ in $(seq 1 50); do grep -q listening "$server_log" && break; sleep 0.1; done
  base=$(grep -o 'http://[^ ]*' "$server_log")
  app=$("$bin" admin --data "$data" client add "abuse bench" --public --redirect-uri https://app.example/cb \
    --scope 'patient/*.rs' | python3 -c 'import json,sys;print(json.load(sys.stdin)["client_id"])')
  "$bin" admin --data "$data" user add --username demo-doctor --role doctor --organization Organization/org-1 \
    --practitioner Practitioner/pr-1 >/dev/null
  echo "== $name ${flags:+($flags)}"
  python3 bench/abuse.py "$base" "$(bench_token)" "$app" "$secs" "$flood" "$bodies"
  stop_server
  rm -rf "$data"
done
