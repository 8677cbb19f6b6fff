#!/usr/bin/env bash
# Runs every test of Medkarta. On a fresh machine it first installs or starts what the
# tests talk to: PostgreSQL (tests create and drop their own databases), the Python FHIR
# client used as a third-party peer, the official R4 examples (npm package), Chromium and
# Playwright (the portal's browser test), poppler-utils (pdftotext), aiosmtpd (an SMTP
# receiver); after the
# tests, the API is fuzzed against its OpenAPI document (scripts/fuzz.sh, schemathesis).
# Usage: scripts/test.sh [extra arguments for cargo nextest / cargo test]
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${MEDKARTA_CACHE:-$HOME/.cache/medkarta}"
mkdir -p "$cache"
say() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) ---------------------------
export MEDKARTA_TEST_PG="${MEDKARTA_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
  say "Starting PostgreSQL"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nlocal all postgres trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || as_root pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

# --- Official R4 examples (hl7.fhir.r4.examples 4.0.1, CC0) -------------------------------
export MEDKARTA_R4_EXAMPLES="$cache/r4-examples/package"
if [ ! -f "$MEDKARTA_R4_EXAMPLES/Patient-example.json" ]; then
  say "Fetching the R4 examples (npm hl7.fhir.r4.examples@4.0.1, 19 MB)"
  (cd "$cache" && npm pack --silent hl7.fhir.r4.examples@4.0.1 >/dev/null)
  mkdir -p "$cache/r4-examples"
  tar xzf "$cache/hl7.fhir.r4.examples-4.0.1.tgz" -C "$cache/r4-examples"
fi

# --- Third-party FHIR client for the interoperability test --------------------------------
if ! python3 -c 'import fhirclient' 2>/dev/null; then
  say "Installing the Python fhirclient"
  python3 -m pip install -q 'fhirclient==4.4.0'
fi
if ! command -v schemathesis >/dev/null; then
  say "Installing schemathesis (the API fuzzer)"
  python3 -m pip install -q 'schemathesis==4.32.5'
fi

# --- A real browser for the portal's test: Debian's Chromium, driven by Playwright --------
if [ ! -x /usr/bin/chromium ]; then
  say "Installing Chromium (the portal's browser test)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  say "Installing aiosmtpd (the local SMTP receiver of the delivery tests)"
  python3 -m pip install -q 'aiosmtpd==1.4.6'
fi
if ! command -v pdftotext >/dev/null; then
  say "Installing poppler-utils (pdftotext reads the portal's PDFs in the tests)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq poppler-utils >/dev/null
fi
if ! python3 -c 'import playwright' 2>/dev/null; then
  say "Installing Playwright for Python (its driver only; the browser is Debian's)"
  python3 -m pip install -q 'playwright==1.65.2'
fi

# --- Checks and tests -------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "Tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
say "Fuzzing the API (no 5xx on any generated request)"
scripts/fuzz.sh 20
